"""The predictor's out-of-distribution checks: what each measures, when it fails, what it says.

The checks run in a fixed order and a flagged frame's reason names the first that failed. Each
check measures one number per frame on the device (stacked with the results, so one copy comes
back per batch), tests it vectorised on the host, and words it only for the frames it flags.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from .lattice import MAX_LATTICE_STRAIN
from .preprocess import NetworkInput

#: Frames with fewer counts than this are blank.
MIN_COUNTS = 100.0
#: Predicted strain sigma beyond this is no reading.
MAX_STRAIN_SIGMA = 0.01


@dataclass(frozen=True)
class OODCheck:
    """One check: ``measure(inputs, std)`` per frame, ``fails(values)``, ``reason(value)``."""

    name: str
    measure: Callable[[NetworkInput, torch.Tensor], torch.Tensor]
    fails: Callable[[np.ndarray], np.ndarray]
    reason: Callable[[float], str]


def ood_checks(max_residual_px: float, min_peak: float) -> tuple[OODCheck, ...]:
    """The checks in the order they are reported, with the model's own thresholds.

    Parameters
    ----------
    max_residual_px : float
        Largest distance of the disks from the fitted lattice a readable frame has.
    min_peak : float
        Smallest match of the disk edges with the aperture's a readable frame has.
    """
    return (
        OODCheck(
            "blank",
            lambda inputs, std: inputs.total_counts,
            lambda v: v < MIN_COUNTS,
            lambda v: f"blank frame ({v:.0f} counts)",
        ),
        OODCheck(
            "saturated",
            lambda inputs, std: inputs.saturated.to(torch.float32),
            lambda v: v > 0,
            lambda v: f"saturated ({v:.0f} pixels at the detector maximum)",
        ),
        OODCheck(
            "lattice_strain",
            lambda inputs, std: inputs.fit.strain.abs().amax(1),
            lambda v: ~(v <= MAX_LATTICE_STRAIN),  # NaN fails
            lambda v: (
                f"not the expected lattice (needs {100 * v:.0f} % strain to fit, "
                f"limit {100 * MAX_LATTICE_STRAIN:.0f} %)"
            ),
        ),
        OODCheck(
            "lattice_residual",
            lambda inputs, std: inputs.fit.residual_px,
            lambda v: ~(v <= max_residual_px),
            lambda v: (
                f"not the expected lattice (disks {v:.2f} px off the fitted lattice, "
                f"limit {max_residual_px:.2f})"
            ),
        ),
        OODCheck(
            "edge_match",
            lambda inputs, std: inputs.fit.peak,
            lambda v: ~(v >= min_peak),
            lambda v: f"no disk edges like the aperture's (match {v:.2f})",
        ),
        OODCheck(
            "strain_sigma",
            lambda inputs, std: std[:, :3].amax(1),
            lambda v: v > MAX_STRAIN_SIGMA,
            lambda v: f"strain uncertainty {100 * v:.2f} % exceeds {100 * MAX_STRAIN_SIGMA:.0f} %",
        ),
    )


def measure(checks: tuple[OODCheck, ...], inputs: NetworkInput, std: torch.Tensor) -> torch.Tensor:
    """``(N, checks)`` values of every check, on the device of ``inputs``."""
    return torch.stack([check.measure(inputs, std) for check in checks], 1)


def reasons(checks: tuple[OODCheck, ...], values: np.ndarray) -> list[str]:
    """Why each frame is out of distribution ('' if it is not), the first failed check's words."""
    with np.errstate(invalid="ignore"):
        failed = np.column_stack([check.fails(values[:, i]) for i, check in enumerate(checks)])
    out = [""] * len(values)
    for i in np.flatnonzero(failed.any(1)).tolist():
        first = int(np.argmax(failed[i]))
        out[i] = checks[first].reason(float(values[i, first]))
    return out
