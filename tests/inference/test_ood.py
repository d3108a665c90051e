"""The OOD checks: order, thresholds, NaN handling and wording (values given directly)."""

from __future__ import annotations

import numpy as np

from stem_loop.inference.lattice import MAX_LATTICE_STRAIN
from stem_loop.inference.ood import MAX_STRAIN_SIGMA, MIN_COUNTS, ood_checks, reasons

CHECKS = ood_checks(max_residual_px=0.8, min_peak=0.12)
#: A readable frame: counts, saturated pixels, lattice strain, residual, edge match, sigma.
GOOD = [1e5, 0, 0.01, 0.2, 0.5, 0.001]


def frames(*changes: dict[int, float]) -> np.ndarray:
    rows = np.array([GOOD] * len(changes), dtype=np.float64)
    for row, change in zip(rows, changes, strict=True):
        for column, value in change.items():
            row[column] = value
    return rows


def test_the_checks_run_in_their_documented_order():
    assert [c.name for c in CHECKS] == [
        "blank",
        "saturated",
        "lattice_strain",
        "lattice_residual",
        "edge_match",
        "strain_sigma",
    ]


def test_each_check_flags_its_own_failure_in_its_own_words():
    why = reasons(
        CHECKS,
        frames(
            {},
            {0: MIN_COUNTS / 2},
            {1: 3},
            {2: 2 * MAX_LATTICE_STRAIN},
            {3: 1.5},
            {4: 0.05},
            {5: 2 * MAX_STRAIN_SIGMA},
        ),
    )
    assert why[0] == ""
    assert why[1] == "blank frame (50 counts)"
    assert why[2] == "saturated (3 pixels at the detector maximum)"
    assert why[3] == "not the expected lattice (needs 12 % strain to fit, limit 6 %)"
    assert why[4] == "not the expected lattice (disks 1.50 px off the fitted lattice, limit 0.80)"
    assert why[5] == "no disk edges like the aperture's (match 0.05)"
    assert why[6] == "strain uncertainty 2.00 % exceeds 1 %"


def test_the_first_failed_check_is_named_and_a_failed_fit_counts_as_failed():
    why = reasons(
        CHECKS,
        frames({1: 1, 3: 2.0, 5: 0.5}, {2: np.nan}, {3: np.nan}, {4: np.nan}, {5: np.nan}),
    )
    assert why[0].startswith("saturated")  # saturation comes before the lattice and the sigma
    assert why[1].startswith("not the expected lattice (needs nan")
    assert "px off the fitted lattice" in why[2]
    assert why[3].startswith("no disk edges")
    assert why[4] == ""  # no sigma is no reason on its own: the fit checks decide
