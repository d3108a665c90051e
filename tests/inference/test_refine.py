"""Thickness refinement by the fast model (Si [110], 200 kV: the beam library CI builds).

The frames are rendered by the physics the refiner scans (strained-cell contents, 3x3 edges),
so these tests check the scan, not the physics; the held-out exact set measures the physics
(``stem-loop bench inference --refine-thickness``).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sim_devices.cbed_fast import FastCBED
from stem_loop.inference import BeamConditions, Predictor
from stem_loop.inference.predictor import Prediction
from stem_loop.inference.refine import (
    CHUNK_ENTRIES,
    CHUNK_FRAMES,
    ThicknessRefiner,
    batch_deviance,
    disk_entries,
    poisson_deviance,
    refine_doubtful,
    series_deviance,
)

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


@pytest.fixture(scope="module")
def unstrained_frames():
    """Frames of the unstrained contents (what the live refiner renders), off its grid."""
    conditions = BeamConditions()
    fast = FastCBED.for_conditions(
        "Si",
        "110",
        conditions.beam,
        conditions.detector((-0.7, 0.9)),
        strain_contents=False,
        edge_subpixels=3,
    )
    n = 5
    truth = dict(
        exx=np.full(n, 0.003),
        eyy=np.full(n, 0.001),
        exy=np.full(n, -0.002),
        thickness_nm=np.array([14.3, 27.9, 45.2, 63.6, 77.1]),
        tilt_x_mrad=np.full(n, -0.5),
        tilt_y_mrad=np.full(n, 1.2),
    )
    frames = np.minimum(np.random.default_rng(8).poisson(fast.patterns(truth) * 1e5), 65535)
    frames = frames.astype(np.uint16)
    return conditions, frames, Predictor().predict(frames, conditions), truth["thickness_nm"]


def test_the_live_refiner_reads_between_its_grid_points(unstrained_frames):
    conditions, frames, reading, truth = unstrained_frames
    refiner = ThicknessRefiner(conditions, contents="unstrained", step_nm=1.0)
    refined = refiner.refine(frames, reading)
    # the grid is 10, 11, ...: the parabola through the least three lands between them
    assert np.abs(refined.thickness_nm - truth).max() <= 0.5
    assert not np.isin(np.round(refined.thickness_nm, 3), refiner.thickness_nm).all()
    # sigma: the model's part (stored step and grid step over sqrt 12) at least
    assert refiner.model_std_nm == pytest.approx(np.sqrt((1.92**2 + 1.0**2) / 12), rel=0.01)
    assert np.all(refined.std_nm >= refiner.model_std_nm)
    assert np.all(refined.std_nm <= 2 * refiner.model_std_nm)


def test_the_coarse_to_fine_search_finds_what_the_full_scan_finds(unstrained_frames):
    conditions, frames, reading, _ = unstrained_frames
    # also from readings far off (the coarse pass must find the right minimum on its own)
    far = Prediction(
        values=dict(reading.values, thickness_nm=np.array([80.0, 10.0, 70.0, 20.0, 40.0])),
        std=reading.std,
        ood=reading.ood,
        origin_px=reading.origin_px,
    )
    for prediction in (reading, far):
        full, fast = (
            ThicknessRefiner(conditions, contents="unstrained", search=search).refine(
                frames, prediction
            )
            for search in ("full", "coarse-to-fine")
        )
        # the same least; both read the grid through float32 patterns
        np.testing.assert_allclose(fast.thickness_nm, full.thickness_nm, atol=1e-3)
        np.testing.assert_allclose(fast.deviance, full.deviance, rtol=1e-5)
        np.testing.assert_allclose(fast.network_deviance, full.network_deviance, rtol=1e-5)
    with pytest.raises(ValueError, match="search"):
        ThicknessRefiner(conditions, contents="unstrained", search="random")


def test_chunks_are_sized_by_disk_entries_and_do_not_change_the_result(unstrained_frames):
    conditions, frames, reading, _ = unstrained_frames
    refiner = ThicknessRefiner(conditions, contents="unstrained")
    model = refiner.model
    disks = model.disk_pixels(np.zeros((1, 3)), np.zeros((1, 2)), np.array([(63.5, 63.5)]))
    assert disk_entries(model) == int(disks.mask.sum()) > 0
    lo, hi = CHUNK_FRAMES
    assert lo <= refiner.chunk <= hi
    assert refiner.chunk == min(max(CHUNK_ENTRIES // disk_entries(model), lo), hi)
    whole = refiner.refine(frames, reading)
    refiner.chunk = 2  # five frames: chunks of two, two and one
    # a chunk's padding changes only the float32 sums' order
    np.testing.assert_allclose(
        refiner.refine(frames, reading).thickness_nm, whole.thickness_nm, rtol=0, atol=1e-4
    )


def test_the_batch_deviance_is_each_frames_series_deviance(unstrained_frames):
    """The refiner's batched deviance against the one-frame form, at every stored thickness
    (far from the least too, where its terms are largest)."""
    conditions, frames, reading, _ = unstrained_frames
    model = ThicknessRefiner(conditions, contents="unstrained").model
    read = {k: np.asarray(v, dtype=float) for k, v in reading.values.items()}
    strain = np.stack([read["exx"], read["eyy"], read["exy"]], axis=1)
    tilt = np.stack([read["tilt_x_mrad"], read["tilt_y_mrad"]], axis=1)
    disks = model.disk_pixels(strain, tilt, reading.origin_px)
    counts = torch.as_tensor(frames.reshape(len(frames), -1)).to(torch.float32)
    batch = batch_deviance(counts, disks, disks.stored())
    for i in range(len(frames)):
        series = model.thickness_series(
            {k: v[i] for k, v in read.items()},
            disks.stored_thickness_nm,
            centre_px=tuple(reading.origin_px[i]),
        )
        one = series_deviance(frames[i], series)
        # float32 patterns: 1e-6 to 1e-5 of the deviance; neighbouring stored thicknesses
        # differ by hundreds near the least
        np.testing.assert_allclose(batch[i], one, rtol=2e-5)
        assert np.argmin(batch[i]) == np.argmin(one)


def test_only_doubtful_frames_are_refined(unstrained_frames):
    conditions, frames, reading, truth = unstrained_frames
    refiner = ThicknessRefiner(conditions, contents="unstrained")
    std = dict(reading.std, thickness_nm=np.array([0.5, 2.5, np.nan, 1.9, 4.0]))
    ood = np.array([0, 0, 0, 0, 1], bool)
    doubtful = Prediction(values=reading.values, std=std, ood=ood, reason=["", "", "", "", "blank"])
    before = {k: v.copy() for k, v in doubtful.values.items()}
    out, refined = refine_doubtful(refiner, frames, doubtful, threshold_nm=2.0)
    # over the threshold or without a sigma, and in distribution
    np.testing.assert_array_equal(refined, [False, True, True, False, False])
    kept = ~refined
    np.testing.assert_array_equal(
        out.values["thickness_nm"][kept], doubtful.values["thickness_nm"][kept]
    )
    assert np.abs(out.values["thickness_nm"][refined] - truth[refined]).max() <= 0.5
    assert np.all(out.std["thickness_nm"][refined] >= refiner.model_std_nm)
    for k in before:  # the input is left as it was; only the thickness changes
        np.testing.assert_array_equal(doubtful.values[k], before[k])
        if k != "thickness_nm":
            np.testing.assert_array_equal(out.values[k], before[k])
    assert out.reason == doubtful.reason
    with pytest.raises(ValueError, match="threshold_nm"):
        refine_doubtful(refiner, frames, doubtful, threshold_nm=-1.0)
    with pytest.raises(ValueError, match="contents"):
        ThicknessRefiner(conditions, contents="bloch")


def test_out_of_distribution_frames_get_no_thickness(frames_and_reading):
    conditions, frames, reading = frames_and_reading
    flagged = Prediction(values=reading.values, std=reading.std, ood=np.array([1, 0, 0, 0], bool))
    refiner = ThicknessRefiner(conditions, step_nm=2.0)
    refined = refiner.refine(frames, flagged)
    assert np.isnan(refined.thickness_nm[0]) and np.isfinite(refined.thickness_nm[1:]).all()
    none = Prediction(values=reading.values, std=reading.std, ood=np.ones(4, bool))
    assert np.isnan(refiner.refine(frames, none).thickness_nm).all()


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


def test_the_live_refiner_reads_exact_physics_apart_from_the_heldout_set():
    """The converged exact reference of the fast model's validation (Si [110], 200 kV, strain
    at the +-2 % corners, 3 mrad tilt; never used to tune the refiner): measured 0.00 to 0.81
    nm off (0.42 nm rms); the networks read the same draws 0.1 to 1.7 nm off (0.81 nm rms)."""
    from sim_devices.validation import (
        VALIDATION_CORNERS,
        VALIDATION_THICKNESSES_NM,
        load_exact_reference,
    )

    patterns, _ = load_exact_reference()
    patterns = patterns.reshape(-1, *patterns.shape[-2:]).astype(np.float64)
    counts = np.random.default_rng(0).poisson(patterns * 1e5).astype(np.uint16)
    truth = np.tile(VALIDATION_THICKNESSES_NM, len(VALIDATION_CORNERS))
    conditions = BeamConditions()
    reading = Predictor().predict(counts, conditions)
    refined = ThicknessRefiner(conditions, contents="unstrained").refine(counts, reading)
    error = refined.thickness_nm - truth
    assert np.abs(error).max() <= 1.0
    assert np.sqrt(np.mean(error**2)) <= 0.6


def test_a_least_at_the_edge_of_the_searched_window_stays_on_the_grid():
    from stem_loop.inference.refine import _least

    grid = np.arange(10.0, 20.01, 0.5)
    deviance = np.full(len(grid), np.inf)
    deviance[4:9] = [50.0, 40.0, 30.0, 20.0, 10.0]  # least at the window's last point
    thickness, std, j = _least(deviance, grid, 100, 0.57)
    assert (thickness, std, j) == (grid[8], 0.57, 8)


def test_a_missing_library_is_refused_with_its_build_command_when_asked(monkeypatch):
    monkeypatch.setattr("stem_loop.inference.refine.stored_library", lambda spec: None)
    with pytest.raises(FileNotFoundError, match="build-library --material Si --zone-axis 110"):
        ThicknessRefiner(BeamConditions(), contents="unstrained", build_library=False)
