"""A list of probe positions for the scan generator's batch (fly) mode."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class ScanPath:
    """Probe positions to visit in order, in nm.

    Parameters
    ----------
    x_nm, y_nm : array_like
        Positions, 1-D and of equal length (converted to float arrays).
    dwell_s : float or None
        Time per position; ``None`` keeps the scan generator's ``dwell_s`` setting.
    """

    x_nm: np.ndarray = field(repr=False)
    y_nm: np.ndarray = field(repr=False)
    dwell_s: float | None = None

    def __post_init__(self) -> None:
        x = np.atleast_1d(np.asarray(self.x_nm, dtype=float))
        y = np.atleast_1d(np.asarray(self.y_nm, dtype=float))
        if x.ndim != 1 or x.shape != y.shape:
            raise ValueError(
                f"x and y positions must be 1-D of equal length, got {x.shape} and {y.shape}"
            )
        if len(x) == 0:
            raise ValueError("a scan path needs at least one position")
        if self.dwell_s is not None and not (np.isfinite(self.dwell_s) and self.dwell_s >= 0):
            raise ValueError(f"dwell_s must be >= 0 s, got {self.dwell_s}")
        object.__setattr__(self, "x_nm", x)
        object.__setattr__(self, "y_nm", y)

    def __len__(self) -> int:
        return len(self.x_nm)
