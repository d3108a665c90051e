"""Pixel-integrated patterns from the exit wave's exact transform (sim_devices.pixel_dft)."""

from __future__ import annotations

import numpy as np
import pytest

from sim_devices import Beam, Detector
from sim_devices.cbed_exact import ExactCBED, MultisliceSettings
from sim_devices.pixel_dft import fourier_intensity, pixel_integrated_pattern
from sim_devices.rebin import rebin_pattern


def test_the_transform_is_the_fft_on_the_fft_grid():
    rng = np.random.default_rng(0)
    waves = (rng.normal(size=(2, 24, 30)) + 1j * rng.normal(size=(2, 24, 30))).astype(np.complex64)
    step = (0.2, 0.15)
    k = tuple(np.fft.fftfreq(n, d) for n, d in zip(waves.shape[1:], step, strict=True))
    got = fourier_intensity(waves, step, k)
    want = np.abs(np.fft.fft2(waves.astype(np.complex128))) ** 2
    np.testing.assert_allclose(got, want, rtol=2e-4, atol=2e-4 * want.max())


def _gaussian_waves(n: int, step: float, width_a: float, tilt_k: float) -> np.ndarray:
    """A Gaussian wave (smooth pattern) at the middle of an ``n x n`` grid, tilted along x."""
    x = (np.arange(n) - n / 2) * step
    xx, yy = np.meshgrid(x, x, indexing="ij")
    return (np.exp(-(xx**2 + yy**2) / (2 * width_a**2)) * np.exp(2j * np.pi * tilt_k * xx))[None]


def test_a_smooth_pattern_integrates_as_the_rebinned_fft_does():
    """Where the pattern is smooth on a pixel's scale both routes give the same pixel values,
    on the same scale, in the detector's (rows=y, cols=x) order."""
    step, wavelength_a, n = 0.5, 0.0418, 2048  # FFT bins of 0.04 mrad
    waves = _gaussian_waves(n, step, width_a=3.0, tilt_k=0.05)  # 2.1 mrad off axis along x
    pixel = 0.35
    angles = ((np.arange(32) - 15.5) * pixel, (np.arange(32) - 15.5) * pixel)
    fine = pixel_integrated_pattern(waves, (step, step), wavelength_a, angles, pixel, 4)[0]
    d = wavelength_a * 1e3 / (n * step)
    source = tuple((np.arange(n) - n // 2) * d for _ in range(2))
    fft = np.fft.fftshift(np.abs(np.fft.fft2(waves[0])) ** 2)
    coarse = rebin_pattern(fft, source, (d, d), angles, pixel)
    np.testing.assert_allclose(fine, coarse, rtol=0.02, atol=1e-3 * coarse.max())
    row, col = np.unravel_index(np.argmax(fine), fine.shape)
    assert col > row  # the tilt moved the peak along x, i.e. along columns


def test_bad_subsamples_or_a_detector_past_nyquist_are_refused():
    waves = _gaussian_waves(64, 0.5, 2.0, 0.0)
    angles = (np.arange(8) * 0.35, np.arange(8) * 0.35)
    with pytest.raises(ValueError, match="subsamples"):
        pixel_integrated_pattern(waves, (0.5, 0.5), 0.0418, angles, 0.35, 0)
    far = (np.arange(8) * 20.0, np.arange(8) * 0.35)  # 140 mrad at 1 / (2 x 0.5 A) = 42 mrad
    with pytest.raises(ValueError, match="Nyquist"):
        pixel_integrated_pattern(waves, (0.5, 0.5), 0.0418, far, 20.0, 2)
    with pytest.raises(ValueError, match="pixel_subsamples"):
        ExactCBED("Si", "110", Beam(), Detector(), pixel_subsamples=-1)


def _probe_wave(n: int, step: float, wavelength_a: float, alpha_mrad: float) -> np.ndarray:
    """A probe (hard aperture) on an ``n x n`` grid, at its middle."""
    k = np.fft.fftfreq(n, step) * wavelength_a * 1e3  # mrad
    aperture = (k[:, None] ** 2 + k[None, :] ** 2 <= alpha_mrad**2).astype(np.complex128)
    return np.fft.fftshift(np.fft.ifft2(aperture)).astype(np.complex64)[None]


def test_the_integrated_pattern_does_not_depend_on_the_block_around_the_same_wave():
    """The same wave zero-padded into a 1.5x larger block: the FFT samples move, so the rebinned
    disk changes; the pixels integrated from the exact transform do not. (Both are on the
    scale of ``|fft2|^2``, which sums to ``n^2`` times the wave's norm: divided by that, each
    pixel is the fraction of the electrons it gets.)"""
    step, wavelength_a, alpha, pixel = 0.5, 0.0418, 3.0, 0.35  # FFT bins: 0.33 / 0.22 mrad
    small = _probe_wave(256, step, wavelength_a, alpha)
    large = np.zeros((1, 384, 384), np.complex64)
    large[:, 64:320, 64:320] = small
    angles = ((np.arange(32) - 15.5) * pixel, (np.arange(32) - 15.5) * pixel)

    def fraction(wave):
        return wave.shape[-1] ** 2 * float(np.sum(np.abs(wave.astype(np.complex128)) ** 2))

    def integrated(wave):
        pattern = pixel_integrated_pattern(wave, (step, step), wavelength_a, angles, pixel, 8)
        return pattern[0] / fraction(wave)

    def rebinned(wave):
        n = wave.shape[-1]
        d = wavelength_a * 1e3 / (n * step)
        source = tuple((np.arange(n) - n // 2) * d for _ in range(2))
        fft = np.fft.fftshift(np.abs(np.fft.fft2(wave[0])) ** 2).astype(np.float64)
        return rebin_pattern(fft, source, (d, d), angles, pixel) / fraction(wave)

    a, b = integrated(small), integrated(large)
    np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-4 * a.max())
    ra, rb = rebinned(small), rebinned(large)
    assert np.abs(ra - rb).max() > 0.02 * ra.max()
    # the same electrons either way
    assert a.sum() == pytest.approx(ra.sum(), rel=0.01)


def test_exact_model_detects_both_ways_from_one_multislice():
    beam, detector = Beam(voltage_kv=80, convergence_mrad=2.0), Detector(pixels=48)
    settings = MultisliceSettings(sampling_a=0.1, box_nm=3.2)
    model = ExactCBED("Si", "110", beam, detector, settings, pixel_subsamples=4)
    waves, sampling = model.exit_waves((0.0, 0.0, 0.0), (0.0, 0.0), [2.0])
    integrated = model.thickness_series((0.0, 0.0, 0.0), (0.0, 0.0), [2.0])
    np.testing.assert_allclose(integrated, model.detect(waves, sampling, 4), rtol=1e-5)
    rebinned = model.detect(waves, sampling)
    assert integrated.shape == rebinned.shape == (1, 48, 48)
    assert integrated.sum() == pytest.approx(rebinned.sum(), rel=0.01)
    assert np.abs(integrated - rebinned).max() > 0.01 * rebinned.max()
