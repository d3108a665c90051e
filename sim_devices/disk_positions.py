"""Sub-pixel CBED disk positions from the disk edge (Sobel-filtered template matching).

Intensity-weighted centroids are biased because the disk contents change with strain,
thickness and tilt; the disk *edge* (the probe aperture) does not. Cross-correlating the
gradient magnitude of sqrt(I) with that of an aperture template locks onto the edge and is
the most robust registration for nanobeam disks (Pekin et al., Ultramicroscopy 176, 2017);
the fast-vs-exact validation uses it.
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import sobel
from scipy.signal import fftconvolve


def disk_template(radius_px: float, size: int | None = None) -> np.ndarray:
    """Anti-aliased disk of ``radius_px`` (1 inside, 0 outside)."""
    size = size or 2 * int(np.ceil(radius_px + 2)) + 1
    c = (size - 1) / 2
    y, x = np.mgrid[:size, :size]
    return np.clip(radius_px - np.hypot(x - c, y - c) + 0.5, 0.0, 1.0)


def edge_map(image: np.ndarray) -> np.ndarray:
    """Sobel gradient magnitude."""
    return np.hypot(sobel(image, axis=0), sobel(image, axis=1))


def _parabolic_peak(values: np.ndarray) -> float:
    """Offset of the vertex of a parabola through three equally spaced samples."""
    a, b, c = values
    denom = a - 2 * b + c
    return 0.0 if denom == 0 else 0.5 * (a - c) / denom


def measure_disk_positions(frame: np.ndarray, guesses_px: np.ndarray, radius_px: float,
                           search_px: int = 3) -> np.ndarray:
    """Refine disk centres near initial guesses.

    Parameters
    ----------
    frame : ndarray
        ``(rows, cols)`` pattern (counts or intensities).
    guesses_px : ndarray
        ``(D, 2)`` initial centres as (x = column, y = row) pixel coordinates.
    radius_px : float
        Disk radius in pixels (convergence semi-angle / pixel size).
    search_px : int
        How far (pixels) from the guess the peak may lie.

    Returns
    -------
    ndarray
        ``(D, 2)`` sub-pixel centres (x, y); NaN for disks too close to the frame edge.
    """
    root = edge_map(np.sqrt(np.clip(np.asarray(frame, dtype=np.float64), 0.0, None)))
    template = edge_map(disk_template(radius_px))
    half = template.shape[0] // 2 + search_px + 1
    out = np.full((len(guesses_px), 2), np.nan)
    rows, cols = root.shape
    for i, (gx, gy) in enumerate(np.asarray(guesses_px, dtype=float)):
        cx, cy = int(round(gx)), int(round(gy))
        if cx - half < 0 or cy - half < 0 or cx + half >= cols or cy + half >= rows:
            continue
        window = root[cy - half : cy + half + 1, cx - half : cx + half + 1]
        score = fftconvolve(window, template[::-1, ::-1], mode="same")
        centre = half
        sub = score[centre - search_px : centre + search_px + 1, centre - search_px : centre + search_px + 1]
        py, px = np.unravel_index(np.argmax(sub), sub.shape)
        py, px = py + centre - search_px, px + centre - search_px
        if 0 < px < score.shape[1] - 1 and 0 < py < score.shape[0] - 1:
            dx = _parabolic_peak(score[py, px - 1 : px + 2])
            dy = _parabolic_peak(score[py - 1 : py + 2, px])
            out[i] = (cx + px - centre + dx, cy + py - centre + dy)
    return out
