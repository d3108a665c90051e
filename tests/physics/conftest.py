"""Physics fixtures: the default fast model (its library is built once and cached)."""

from __future__ import annotations

import pytest

from sim_devices import Beam, Detector
from sim_devices.cbed_fast import FastCBED


@pytest.fixture(scope="session")
def fast_model() -> FastCBED:
    """The microscope's default fast forward model (Si [110], 200 kV, 3 mrad, 128 px)."""
    return FastCBED.for_conditions("Si", "110", Beam(), Detector())
