"""Inference fixtures: fast-model frames of the default Si [110] conditions.

The frames are those of the shipped network's training data: the fast model with the beam
library's (unstrained) disk contents; the microscope's default, strain-dependent contents are
checked against exact physics through the held-out set instead.
"""

from __future__ import annotations

import numpy as np
import pytest

from sim_devices import Beam, Detector
from sim_devices.cbed_fast import FastCBED
from stem_loop.inference import BeamConditions


@pytest.fixture(scope="session")
def si_conditions() -> BeamConditions:
    return BeamConditions()


@pytest.fixture(scope="session")
def si_fast() -> FastCBED:
    return FastCBED.for_conditions("Si", "110", Beam(), Detector(), strain_contents=False)


def random_descriptors(n: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Descriptors inside the training ranges (seeded)."""
    rng = np.random.default_rng(seed)
    return dict(
        exx=rng.uniform(-0.02, 0.02, n),
        eyy=rng.uniform(-0.02, 0.02, n),
        exy=rng.uniform(-0.02, 0.02, n),
        thickness_nm=rng.uniform(10, 80, n),
        tilt_x_mrad=rng.uniform(-2.5, 2.5, n),
        tilt_y_mrad=rng.uniform(-2.5, 2.5, n),
    )
