"""Area-conserving resampling of a diffraction pattern onto a detector grid."""

from __future__ import annotations

import numpy as np


def overlap_matrix(
    source_centres: np.ndarray, source_width: float, target_centres: np.ndarray, target_width: float
) -> np.ndarray:
    """Fraction of each source bin that falls inside each target bin (1-D).

    Parameters
    ----------
    source_centres, target_centres : ndarray
        Bin centres on a common axis (e.g. mrad).
    source_width, target_width : float
        Bin widths.

    Returns
    -------
    ndarray
        ``(len(target), len(source))`` matrix ``M`` such that ``M @ values`` sums source
        intensities into target bins (intensity conserved where the grids overlap).
    """
    s_lo = source_centres - source_width / 2
    s_hi = source_centres + source_width / 2
    t_lo = target_centres[:, None] - target_width / 2
    t_hi = target_centres[:, None] + target_width / 2
    overlap = np.clip(np.minimum(s_hi, t_hi) - np.maximum(s_lo, t_lo), 0.0, None)
    return overlap / source_width


def rebin_pattern(
    pattern: np.ndarray,
    source_angles: tuple[np.ndarray, np.ndarray],
    source_sampling: tuple[float, float],
    target_angles: tuple[np.ndarray, np.ndarray],
    target_sampling: float,
) -> np.ndarray:
    """Integrate a pattern ``[..., x, y]`` (abTEM order) onto a detector ``[..., rows=y, cols=x]``.

    Parameters
    ----------
    pattern : ndarray
        Intensities with the last two axes along x then y, on centred, increasing angle axes.
    source_angles : tuple of ndarray
        Angle of each source bin centre along x and y.
    source_sampling : tuple of float
        Source bin widths along x and y.
    target_angles : tuple of ndarray
        Detector pixel-centre angles along x (columns) and y (rows).
    target_sampling : float
        Detector pixel width (same units).
    """
    mx = overlap_matrix(source_angles[0], source_sampling[0], target_angles[0], target_sampling)
    my = overlap_matrix(source_angles[1], source_sampling[1], target_angles[1], target_sampling)
    # out[..., row, col] = sum_{ix, iy} my[row, iy] * pattern[..., ix, iy] * mx[col, ix]
    return np.einsum("ry,...xy,cx->...rc", my, pattern, mx, optimize=True)
