"""Thickness refinement by the fast model (Si [110], 200 kV: the beam library CI builds).

The frames are rendered by the physics the refiner scans (strained-cell contents, 3x3 edges),
so these tests check the scan, not the physics; the held-out exact set measures the physics
(``stem-loop bench inference --refine-thickness``).
"""

from __future__ import annotations

import numpy as np
import pytest

from sim_devices.cbed_fast import FastCBED
from stem_loop.inference import BeamConditions, Predictor
from stem_loop.inference.predictor import Prediction
from stem_loop.inference.refine import ThicknessRefiner, poisson_deviance

THICKNESS = np.array([12.0, 35.0, 58.0, 80.0])
#: At a content-strain grid point (1, -1, 0) of the 0.5 % grid: the networks' readings (0.1 %
#: off) stay in its cell, so one strained-cell multislice serves every frame.
STRAIN = (0.005, -0.005, 0.0)


@pytest.fixture(scope="module")
def frames_and_reading():
    conditions = BeamConditions()
    offset = (0.6, -0.4)
    fast = FastCBED.for_conditions(
        "Si",
        "110",
        conditions.beam,
        conditions.detector(offset),
        content_engine="multislice",
        edge_subpixels=3,
    )
    n = len(THICKNESS)
    truth = dict(
        exx=np.full(n, STRAIN[0]),
        eyy=np.full(n, STRAIN[1]),
        exy=np.full(n, STRAIN[2]),
        thickness_nm=THICKNESS,
        tilt_x_mrad=np.full(n, 0.8),
        tilt_y_mrad=np.full(n, -1.1),
    )
    rng = np.random.default_rng(4)
    frames = np.minimum(rng.poisson(fast.patterns(truth) * 1e5), 65535).astype(np.uint16)
    reading = Predictor().predict(frames, conditions)
    return conditions, frames, reading


def _with_thickness(reading: Prediction, thickness: np.ndarray) -> Prediction:
    values = dict(reading.values, thickness_nm=thickness)
    return Prediction(values=values, std=reading.std, ood=reading.ood.copy())


def test_the_scan_finds_the_thickness_whatever_the_networks_read(frames_and_reading):
    conditions, frames, reading = frames_and_reading
    assert not reading.ood.any()
    wrong = np.clip(THICKNESS + 25.0, 10.0, 85.0)[::-1]  # far off, in another order
    refined = ThicknessRefiner(conditions).refine(frames, _with_thickness(reading, wrong))
    assert np.abs(refined.thickness_nm - THICKNESS).max() <= 1.5
    # the refined thickness explains the counts much better than the wrong reading
    assert np.all(refined.network_deviance - refined.deviance > 100)
    np.testing.assert_array_equal(refined.network_nm, wrong)


def test_out_of_distribution_frames_get_no_thickness(frames_and_reading):
    conditions, frames, reading = frames_and_reading
    flagged = Prediction(values=reading.values, std=reading.std, ood=np.array([1, 0, 0, 0], bool))
    refined = ThicknessRefiner(conditions, step_nm=2.0).refine(frames, flagged)
    assert np.isnan(refined.thickness_nm[0]) and np.isfinite(refined.thickness_nm[1:]).all()


def test_frames_and_reading_must_match(frames_and_reading):
    conditions, frames, reading = frames_and_reading
    with pytest.raises(ValueError, match="3 frames but a prediction of 4"):
        ThicknessRefiner(conditions).refine(frames[:3], reading)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(step_nm=0.0), "positive step"),
        (dict(thickness_range_nm=(40.0, 20.0)), "low < high"),
        (dict(thickness_range_nm=(10.0, 200.0)), "leaves the beam library"),
    ],
)
def test_bad_scans_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ThicknessRefiner(BeamConditions(), **kwargs)


def test_poisson_deviance_is_least_at_the_truth():
    rng = np.random.default_rng(0)
    mu = rng.uniform(0.5, 50.0, 4096)
    counts = rng.poisson(mu)
    expected = np.stack([mu * 0.9, mu, mu * 1.1])
    deviance = poisson_deviance(counts, expected)
    assert np.argmin(deviance) == 1
    itself = poisson_deviance(counts, counts[None].astype(float))[0]
    assert 0.0 <= itself <= 2e-3 * (counts == 0).sum() + 1e-9  # zero counts meet mu = 1e-3
