"""The simulated microscope: position checks, counts, dtype, dose."""

from __future__ import annotations

import numpy as np
import pytest

from sim_devices import Beam, Detector, Microscope, builtin_sample


@pytest.fixture(scope="module")
def microscope(fast_model):
    return Microscope(builtin_sample(), forward=fast_model, seed=3)


@pytest.mark.parametrize(
    ("x", "y", "message"),
    [
        (-0.1, 5.0, "outside the field of view"),
        (5.0, 96.5, "outside the field of view"),
        (np.nan, 5.0, "not finite"),
        (5.0, np.inf, "not finite"),
    ],
)
def test_bad_positions_refused(microscope, x, y, message):
    with pytest.raises(ValueError, match=message):
        microscope.acquire([10.0, x], [10.0, y])


def test_frames_are_uint16_counts_at_the_dose(microscope):
    frames = microscope.acquire(np.full(64, 30.0), np.full(64, 40.0))
    assert frames.dtype == np.uint16 and frames.shape == (64, 128, 128)
    expected = microscope.expected_patterns([30.0], [40.0])[0]
    mean_total = frames.reshape(64, -1).sum(1).mean()
    assert mean_total == pytest.approx(expected.sum() * microscope.detector.dose, rel=0.01)
    # Poisson: variance equals mean pixel by pixel (checked on the bright central disk)
    centre = frames[:, 60:68, 60:68].astype(float)
    assert centre.var(0).mean() == pytest.approx(centre.mean(0).mean(), rel=0.15)


def test_seeded_microscopes_repeat(fast_model):
    a = Microscope(builtin_sample(), forward=fast_model, seed=7).acquire([10.0, 50.0], [20.0, 60.0])
    b = Microscope(builtin_sample(), forward=fast_model, seed=7).acquire([10.0, 50.0], [20.0, 60.0])
    c = Microscope(builtin_sample(), forward=fast_model, seed=8).acquire([10.0, 50.0], [20.0, 60.0])
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_forward_model_must_match_the_sample(fast_model):
    from sim_devices import Sample

    other = Sample(
        "SrTiO3",
        "001",
        1.0,
        {k: np.ones((2, 2)) * (30 if k == "thickness_nm" else 0) for k in builtin_sample().maps},
    )
    with pytest.raises(ValueError, match="forward model is for Si \\[110\\]"):
        Microscope(other, forward=fast_model)


def test_settings_are_checked():
    with pytest.raises(ValueError, match="dose"):
        Detector(dose=0)
    with pytest.raises(ValueError, match="convergence_mrad"):
        Beam(convergence_mrad=-1)
    assert Beam(voltage_kv=200).wavelength_nm == pytest.approx(0.0025079, rel=1e-4)
