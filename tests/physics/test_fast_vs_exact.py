"""The fast forward model against exact abTEM multislice (issue #2 acceptance).

Two corners of the validated range (every strain component at +-2 %, tilt of 3 mrad
magnitude), thicknesses 10, 45 and 80 nm. Bounds: pattern correlation >= 0.98, disk positions
(lattice fit) within 0.1 px.

The exact reference converges slowly with the lateral size of its crystal block (the block sets
the exact pattern's angular sampling and how much of the thick crystal's diffracted wave it
holds): from 8 to 19.2 nm the lattice-fit disk positions of an 80 nm crystal move by up to
0.087 px. The converged 19.2 nm reference costs about 15 minutes per corner, so it ships with
the package (``sim_devices/data/exact_corners.npz``, made by ``python -m sim_devices
exact-reference``); CI checks the fast model against it, the ``slow`` test (``make bench``)
recomputes it and checks that the shipped file is what the exact model computes. CI also runs
the exact model live on an 8 nm block.

Lattice-fit disk positions, fast vs exact, at 10 / 45 / 80 nm (first corner; second corner):

==========================  ===============================  ===============================
fast model contents         8 nm block (live in CI)          19.2 nm block (converged)
==========================  ===============================  ===============================
unstrained                  0.079 / 0.082 / 0.199;           0.031 / 0.045 / 0.092;
                            0.024 / 0.053 / 0.118            0.023 / 0.047 / 0.120
strained (default)          0.087 / 0.106 / 0.102;           0.038 / 0.049 / 0.079;
                            0.028 / 0.066 / 0.079            0.027 / 0.051 / 0.075
==========================  ===============================  ===============================
"""

from __future__ import annotations

import numpy as np
import pytest

from sim_devices import Beam, Detector
from sim_devices.cbed_exact import ExactCBED, MultisliceSettings
from sim_devices.validation import (
    MAX_DISK_SHIFT_PX,
    MIN_CORRELATION,
    REFERENCE_BOX_NM,
    VALIDATION_CORNERS,
    VALIDATION_THICKNESSES_NM,
    compare,
    compare_patterns,
    load_exact_reference,
)

#: Disk-position bound against the unconverged 8 nm block used live in CI: the 0.106 px
#: measured there; the block itself is off the converged reference by up to 0.087 px.
LIVE_BLOCK_DISK_SHIFT_PX = 0.12
CORNERS = list(enumerate(VALIDATION_CORNERS))


def _check(cases, disk_bound: float) -> None:
    assert len(cases) == len(VALIDATION_THICKNESSES_NM)
    for case in cases:
        assert case.disks_compared >= 8, case
        assert case.correlation >= MIN_CORRELATION, case
        assert case.max_disk_shift_px <= disk_bound, case


@pytest.mark.parametrize(("index", "corner"), CORNERS)
def test_fast_matches_the_converged_exact_reference(fast_model, index, corner):
    patterns, settings = load_exact_reference()
    assert settings["multislice"]["box_nm"] == REFERENCE_BOX_NM
    strain, tilt = corner
    cases = compare_patterns(
        fast_model, patterns[index], strain, tilt, list(VALIDATION_THICKNESSES_NM)
    )
    _check(cases, MAX_DISK_SHIFT_PX)


def test_strained_contents_are_what_closes_the_thick_corner(fast_model):
    """The unstrained-contents model misses 0.1 px at 80 nm in the second corner (0.120 px)."""
    from sim_devices.cbed_fast import FastCBED

    plain = FastCBED(
        fast_model.library, fast_model.beam, fast_model.detector, strain_contents=False
    )
    patterns, _ = load_exact_reference()
    strain, tilt = VALIDATION_CORNERS[1]
    thick = [80.0]
    before = compare_patterns(plain, patterns[1][-1:], strain, tilt, thick)[0]
    after = compare_patterns(fast_model, patterns[1][-1:], strain, tilt, thick)[0]
    assert before.max_disk_shift_px > MAX_DISK_SHIFT_PX
    assert after.max_disk_shift_px < before.max_disk_shift_px - 0.02
    assert after.correlation > before.correlation


@pytest.fixture(scope="module")
def live_exact_model() -> ExactCBED:
    return ExactCBED("Si", "110", Beam(), Detector(), MultisliceSettings(box_nm=8.0))


@pytest.mark.parametrize(("index", "corner"), CORNERS)
def test_fast_matches_exact_run_live(fast_model, live_exact_model, index, corner):
    strain, tilt = corner
    cases = compare(fast_model, live_exact_model, strain, tilt, list(VALIDATION_THICKNESSES_NM))
    _check(cases, LIVE_BLOCK_DISK_SHIFT_PX)


@pytest.mark.slow
@pytest.mark.parametrize(("index", "corner"), CORNERS)
def test_shipped_reference_is_what_the_exact_model_computes(fast_model, index, corner):
    """Recompute the converged reference (about 15 minutes per corner) and compare."""
    strain, tilt = corner
    exact = ExactCBED("Si", "110", Beam(), Detector(), MultisliceSettings(box_nm=REFERENCE_BOX_NM))
    live = exact.thickness_series(strain, tilt, list(VALIDATION_THICKNESSES_NM))
    shipped, _ = load_exact_reference()
    for now, then in zip(live, shipped[index], strict=True):
        assert np.corrcoef(now.ravel(), then.ravel())[0, 1] > 0.99999
        assert np.abs(now - then).max() < 1e-3 * then.max()
    cases = compare_patterns(fast_model, live, strain, tilt, list(VALIDATION_THICKNESSES_NM))
    _check(cases, MAX_DISK_SHIFT_PX)


def test_pixel_integrated_edges_are_closer_to_exact(fast_model):
    """3x3 sub-pixel disk edges (the training frames') lower chi^2 against the converged
    reference in every case (measured 4 to 26 %)."""
    from sim_devices.cbed_fast import FastCBED

    patterns, _ = load_exact_reference()
    models = [
        FastCBED(fast_model.library, fast_model.beam, fast_model.detector, edge_subpixels=n)
        for n in (1, 3)
    ]
    thicknesses = np.asarray(VALIDATION_THICKNESSES_NM)
    for index, (strain, tilt) in CORNERS:
        descriptors = dict(
            exx=np.full(3, strain[0]),
            eyy=np.full(3, strain[1]),
            exy=np.full(3, strain[2]),
            thickness_nm=thicknesses,
            tilt_x_mrad=np.full(3, tilt[0]),
            tilt_y_mrad=np.full(3, tilt[1]),
        )
        exact = patterns[index].astype(np.float64) * 1e5
        chi2 = []
        for model in models:
            fast = model.patterns(descriptors).astype(np.float64) * 1e5
            chi2.append(((fast - exact) ** 2 / np.maximum(fast, 1.0)).sum((1, 2)))
        assert np.all(chi2[1] < 0.97 * chi2[0]), chi2
