"""Fixtures for the agent tests: the shipped predictor, the microscope's conditions, devices."""

from __future__ import annotations

import pytest

from sim_devices import Microscope, builtin_sample


@pytest.fixture(scope="session")
def predictor():
    """The shipped network (loaded once)."""
    from stem_loop.inference import Predictor

    return Predictor()


@pytest.fixture(scope="session")
def microscope() -> Microscope:
    """The built-in sample under the fast model."""
    return Microscope(builtin_sample(), forward="fast", seed=3)


@pytest.fixture(scope="session")
def conditions(microscope):
    """Beam conditions of ``microscope``'s frames."""
    from stem_loop.inference import BeamConditions

    sample = microscope.sample
    return BeamConditions.from_devices(
        sample.material, sample.zone_axis, microscope.beam, microscope.detector
    )
