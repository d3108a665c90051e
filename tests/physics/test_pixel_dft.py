"""Pixel-integrated patterns from the exit wave's exact transform (sim_devices.pixel_dft)."""

from __future__ import annotations

import numpy as np
import pytest

from sim_devices import Beam, Detector
from sim_devices.cbed_exact import ExactCBED, MultisliceSettings
from sim_devices.disk_positions import fit_lattice, measure_disk_positions
from sim_devices.pixel_dft import fourier_intensity, pixel_integrated_pattern
from sim_devices.rebin import rebin_pattern
from sim_devices.validation import bright_disks


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


def _lattice_positions(fast, pattern, strain, guide):
    """Lattice-fit disk positions (as a strain measurement reads them), disks from ``guide``."""
    guesses, hk, weights = bright_disks(fast, strain, guide)
    origin, basis = fit_lattice(
        measure_disk_positions(pattern, guesses, fast.alpha / fast.pixel), hk, weights
    )
    return origin + hk @ basis.T


def test_pixel_integration_makes_the_disk_positions_independent_of_the_block(fast_model):
    """A 3.2 nm block samples the 200 kV pattern every 0.78 mrad, 2.2 pixels: rebinned, the
    disk lattice moves with the block; integrated over the pixels from the exact transform of
    the same exit waves, it barely does."""
    strain, tilt, thickness = (0.005, -0.003, 0.002), (0.8, -0.5), 4.0
    cheap = {"sampling_a": 0.1, "slices_per_cell": 2}

    def pattern(box_nm: float, subsamples: int) -> np.ndarray:
        model = ExactCBED(
            "Si",
            "110",
            fast_model.beam,
            fast_model.detector,
            MultisliceSettings(box_nm=box_nm, **cheap),
            pixel_subsamples=subsamples,
        )
        return model.thickness_series(strain, tilt, [thickness])[0].astype(np.float64)

    descriptors = {
        **dict(zip(("exx", "eyy", "exy"), strain, strict=True)),
        "tilt_x_mrad": tilt[0],
        "tilt_y_mrad": tilt[1],
        "thickness_nm": thickness,
    }
    guide = fast_model.patterns(descriptors)[0]

    def shift(a: np.ndarray, b: np.ndarray) -> float:
        pa, pb = (_lattice_positions(fast_model, p, strain, guide) for p in (a, b))
        return float(np.hypot(*(pa - pb).T).max())

    rebinned = shift(pattern(3.2, 0), pattern(4.8, 0))
    integrated = shift(pattern(3.2, 2), pattern(4.8, 2))
    assert integrated < 0.5 * rebinned
    # the same electrons, spread differently: totals agree
    assert pattern(3.2, 2).sum() == pytest.approx(pattern(3.2, 0).sum(), rel=0.01)


def test_rebinned_detection_is_abtems_diffraction_pattern_rebinned():
    import abtem

    beam, detector = Beam(voltage_kv=80, convergence_mrad=2.0), Detector(pixels=48)
    model = ExactCBED("Si", "110", beam, detector, MultisliceSettings(sampling_a=0.1, box_nm=3.2))
    waves, sampling = model.exit_waves((0.01, 0.0, 0.0), (1.0, 0.0), [2.0, 4.0])
    assert waves.shape[0] == 2 and np.iscomplexobj(waves)
    ours = model.detect(waves, sampling)
    array = np.stack(
        [
            abtem.Waves(wave, energy=beam.energy_ev, sampling=sampling)
            .diffraction_patterns(max_angle="full", fftshift=True, renormalize=False)
            .array
            for wave in waves
        ]
    ).astype(np.float64)
    gpts = waves.shape[1:]
    d = [beam.wavelength_nm * 10e3 / (n * s) for n, s in zip(gpts, sampling, strict=True)]
    source = tuple((np.arange(n) - n // 2) * di for n, di in zip(waves.shape[1:], d, strict=True))
    theirs = rebin_pattern(array, source, tuple(d), detector.angles_mrad(), detector.mrad_per_pixel)
    np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-6 * theirs.max())
