"""Building the exact held-out set: parallel, resumable, kept apart by numerical settings.

Coarse multislice settings keep this fast; the physics of the exact model is tested in
``tests/physics``.
"""

from __future__ import annotations

import numpy as np
import pytest

from sim_devices.cbed_exact import MultisliceSettings
from stem_loop.inference.evaluation import load_heldout
from stem_loop.inference.heldout import HELDOUT_THICKNESSES_NM, build_heldout, plan_heldout

COARSE = MultisliceSettings(sampling_a=0.1, box_nm=1.6)


@pytest.fixture(scope="module")
def runs():
    return plan_heldout(runs_per_condition=1)[:2]


@pytest.fixture(scope="module")
def built(tmp_path_factory, runs):
    path = tmp_path_factory.mktemp("heldout") / "heldout.npz"
    return build_heldout(path, runs, settings=COARSE, workers=2)


def test_assembles_every_run_with_its_descriptors(built, runs):
    held = load_heldout(built)
    n_t = len(HELDOUT_THICKNESSES_NM)
    assert held["counts"].shape == (2 * n_t, 128, 128)
    assert np.array_equal(held["run_index"], np.repeat([0, 1], n_t))
    for i, run in enumerate(runs):
        rows = held["run_index"] == i
        assert np.allclose(held["exx"][rows], run.strain[0])
        assert np.allclose(held["tilt_y_mrad"][rows], run.tilt_mrad[1])
        assert np.array_equal(held["thickness_nm"][rows], HELDOUT_THICKNESSES_NM)
        assert held["meta"]["runs"][i]["conditions"]["voltage_kv"] == run.conditions.voltage_kv
    assert held["meta"]["settings"]["box_nm"] == COARSE.box_nm
    # real patterns: most electrons land in the frame, and more thickness scatters more out
    totals = held["counts"].astype(np.float64).sum((1, 2)).reshape(2, n_t)
    assert np.all(totals > 0.5e5) and np.all(totals <= 1.0001e5)


def test_resumes_without_recomputing(built, runs):
    parts = sorted(built.parent.glob("*.parts/run*.npy"))
    assert len(parts) == 2 and "box1.6nm" in parts[0].parent.name
    stamps = [p.stat().st_mtime_ns for p in parts]
    build_heldout(built, runs, settings=COARSE, workers=2)
    assert [p.stat().st_mtime_ns for p in parts] == stamps


def test_other_settings_never_reuse_these_runs(built, runs):
    with pytest.raises(FileNotFoundError, match="no held-out runs"):
        other = MultisliceSettings(sampling_a=0.1, box_nm=2.0)
        build_heldout(built, runs, settings=other, partial=True)


def test_a_second_detection_is_added_beside_the_first(built, runs):
    """Runs the set already has are computed again for the missing detection only: the
    rebinned parts are not rewritten, the pixel-integrated ones land in their own set."""
    parts = sorted(built.parent.glob("*nm-0.1A.parts/run*.npy"))
    stamps = [p.stat().st_mtime_ns for p in parts]
    first = build_heldout(built, runs, settings=COARSE, workers=2, pixel_subsamples=(0, 2))
    assert first == built
    assert [p.stat().st_mtime_ns for p in parts] == stamps
    integrated = load_heldout(built.with_name("heldout-px2.npz"))
    rebinned = load_heldout(built)
    assert integrated["meta"]["pixel_subsamples"] == 2
    assert rebinned["meta"]["pixel_subsamples"] == 0
    assert len(sorted(built.parent.glob("*-px2.parts/run*.npy"))) == 2
    a = integrated["counts"].astype(np.float64)
    b = rebinned["counts"].astype(np.float64)
    assert a.shape == b.shape
    np.testing.assert_allclose(a.sum((1, 2)), b.sum((1, 2)), rtol=0.05)
    assert np.abs(a - b).max() > 0.01 * b.max()
    with pytest.raises(ValueError, match="pixel_subsamples"):
        build_heldout(built, runs, settings=COARSE, pixel_subsamples=(-1,))


def test_hard_aperture_runs_are_kept_apart(built, runs):
    hard = build_heldout(built, runs[:1], settings=COARSE, workers=1, soft_aperture=False)
    assert hard == built.with_name("heldout-hard.npz")
    assert len(sorted(built.parent.glob("*0.1A-hard.parts/run*.npy"))) == 1
    held, soft = load_heldout(hard), load_heldout(built)
    assert held["meta"]["soft_aperture"] is False and soft["meta"]["soft_aperture"] is True
    a = held["counts"].astype(np.float64)
    b = soft["counts"][soft["run_index"] == 0].astype(np.float64)
    np.testing.assert_allclose(a.sum((1, 2)), b.sum((1, 2)), rtol=0.05)
    assert np.abs(a - b).max() > 0.001 * b.max()  # the aperture's edge moved electrons
