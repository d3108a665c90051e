"""Electron counting noise."""

from __future__ import annotations

import numpy as np


def poisson_counts(
    intensity: np.ndarray, dose: float, rng: np.random.Generator, dtype: type = np.uint16
) -> np.ndarray:
    """Draw detector counts for patterns of fractional intensity at a dose.

    Parameters
    ----------
    intensity : ndarray
        Fraction of the incident electrons landing in each pixel (``>= 0``).
    dose : float
        Incident electrons per frame.
    rng : numpy.random.Generator
        Source of randomness.
    dtype : numpy dtype
        Integer dtype of the detector; counts saturate at its maximum.

    Returns
    -------
    ndarray
        Counts with the shape of ``intensity``.
    """
    lam = np.clip(np.asarray(intensity, dtype=np.float64), 0.0, None) * dose
    counts = rng.poisson(lam)
    return np.minimum(counts, np.iinfo(dtype).max).astype(dtype)
