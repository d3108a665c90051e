"""Electron counting noise."""

from __future__ import annotations

import numpy as np
import torch


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
        Source of randomness (seeds the sampler, so a seeded microscope is reproducible).
    dtype : numpy dtype
        Integer dtype of the detector; counts saturate at its maximum.

    Returns
    -------
    ndarray
        Counts with the shape of ``intensity``.
    """
    rate = torch.as_tensor(np.asarray(intensity, dtype=np.float32)).clamp(min=0.0).mul_(float(dose))
    generator = torch.Generator().manual_seed(int(rng.integers(2**63 - 1)))
    counts = torch.poisson(rate, generator=generator)  # multithreaded, ~3x numpy here
    return counts.clamp_(max=float(np.iinfo(dtype).max)).numpy().astype(dtype)
