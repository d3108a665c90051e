"""Diffraction intensity integrated over detector pixels, from the exit wave's exact transform.

The FFT of an exit wave on a block of side ``L`` samples the pattern every ``lambda / L`` in
angle: 0.33 mrad for a 12.8 nm block at 80 kV, about one 0.35 mrad detector pixel, so rebinning
it (:func:`sim_devices.rebin.rebin_pattern`) puts each disk edge on a coarse staircase that moves
with the block. The exit wave of a probe that stays inside the block (its intensity is nil at
the block's edges) is the wave on an unbounded plane, and its Fourier transform
``F(k) = sum_j psi_j exp(-2 pi i k x_j)`` is exact at any ``k``, not only on the FFT grid.
Evaluating it on ``subsamples`` x ``subsamples`` points in every detector pixel (two complex
matrix products per exit plane, over the detector's angles only) and averaging gives the pixel's
integral of the pattern, as a finer block would, without the finer block's multislice cost.
"""

from __future__ import annotations

import numpy as np


def fourier_matrix(frequencies: np.ndarray, n: int, step: float) -> np.ndarray:
    """``exp(-2 pi i k x_j)`` for each frequency ``k`` (rows) and grid point ``x_j = j * step``.

    The sign and origin are numpy's FFT's: at ``k = m / (n * step)`` the row is the FFT's.
    """
    x = np.arange(n) * step
    return np.exp(-2j * np.pi * np.outer(np.asarray(frequencies, np.float64), x)).astype(
        np.complex64
    )


def fourier_intensity(
    waves: np.ndarray,
    sampling: tuple[float, float],
    frequencies: tuple[np.ndarray, np.ndarray],
) -> np.ndarray:
    """``|F(kx, ky)|^2`` of waves ``[..., x, y]`` on the grid of the given frequencies.

    Parameters
    ----------
    waves : ndarray
        Complex waves, the last two axes along x then y (abTEM's order).
    sampling : tuple of float
        Grid step along x and y (the unit of ``1 / frequencies``).
    frequencies : tuple of ndarray
        Spatial frequencies along x and y.

    Returns
    -------
    ndarray
        ``[..., len(kx), len(ky)]`` float64; equal to ``|fft2(waves)|^2`` where the frequencies
        are the FFT's.
    """
    waves = np.asarray(waves)
    ax = fourier_matrix(frequencies[0], waves.shape[-2], sampling[0])
    ay = fourier_matrix(frequencies[1], waves.shape[-1], sampling[1])
    flat = waves.reshape(-1, *waves.shape[-2:]).astype(np.complex64, copy=False)
    out = np.empty((len(flat), len(ax), len(ay)), dtype=np.float64)
    for i, wave in enumerate(flat):
        amplitude = ax @ wave @ ay.T
        out[i] = amplitude.real.astype(np.float64) ** 2 + amplitude.imag.astype(np.float64) ** 2
    return out.reshape(*waves.shape[:-2], len(ax), len(ay))


def pixel_subsample_angles(centres: np.ndarray, width: float, subsamples: int) -> np.ndarray:
    """Midpoints of ``subsamples`` equal parts of every pixel, pixel after pixel."""
    offsets = ((np.arange(subsamples) + 0.5) / subsamples - 0.5) * width
    return (np.asarray(centres, np.float64)[:, None] + offsets[None, :]).ravel()


def pixel_integrated_pattern(
    waves: np.ndarray,
    sampling_a: tuple[float, float],
    wavelength_a: float,
    target_angles_mrad: tuple[np.ndarray, np.ndarray],
    pixel_mrad: float,
    subsamples: int,
) -> np.ndarray:
    """Detector pattern ``[..., rows=y, cols=x]`` of exit waves ``[..., x, y]``.

    Each pixel is the mean of ``|F|^2`` over its ``subsamples**2`` midpoints times the pixel's
    area in units of the FFT bin, so that the result is on the scale of
    :func:`sim_devices.rebin.rebin_pattern` applied to ``|fft2(waves)|^2`` (the two agree where
    the pattern is smooth on the scale of a pixel).

    Parameters
    ----------
    waves : ndarray
        Complex exit waves, last two axes along x then y.
    sampling_a : tuple of float
        Real-space grid step along x and y, Angstrom.
    wavelength_a : float
        Electron wavelength, Angstrom.
    target_angles_mrad : tuple of ndarray
        Detector pixel-centre angles along x (columns) and y (rows), mrad.
    pixel_mrad : float
        Detector pixel width, mrad.
    subsamples : int
        Points per pixel side (at least 1).

    Raises
    ------
    ValueError
        If ``subsamples`` is below 1 or the detector reaches past the grid's Nyquist angle.
    """
    if subsamples < 1:
        raise ValueError(f"subsamples must be at least 1, got {subsamples}")
    waves = np.asarray(waves)
    to_frequency = 1.0 / (wavelength_a * 1e3)  # k [1/A] = theta [mrad] / (lambda [A] * 1e3)
    frequencies = []
    for axis, (angles, step) in enumerate(zip(target_angles_mrad, sampling_a, strict=True)):
        k = pixel_subsample_angles(angles, pixel_mrad, subsamples) * to_frequency
        nyquist = 0.5 / step
        if np.max(np.abs(k)) > nyquist:
            raise ValueError(
                f"the detector reaches {np.max(np.abs(k)) / to_frequency:.1f} mrad along axis "
                f"{axis}, past the grid's Nyquist angle {nyquist / to_frequency:.1f} mrad"
            )
        frequencies.append(k)
    intensity = fourier_intensity(waves, sampling_a, (frequencies[0], frequencies[1]))
    nx, ny = len(target_angles_mrad[0]), len(target_angles_mrad[1])
    lead = intensity.shape[:-2]
    pixels = intensity.reshape(*lead, nx, subsamples, ny, subsamples).mean(axis=(-3, -1))
    # FFT bin widths in mrad: lambda / (n * step)
    shape = waves.shape[-2:]
    bins = [wavelength_a * 1e3 / (n * step) for n, step in zip(shape, sampling_a, strict=True)]
    pixels *= pixel_mrad**2 / (bins[0] * bins[1])
    return np.swapaxes(pixels, -1, -2)
