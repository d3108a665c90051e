"""Exact model: configuration of material, beam and detector (cheap settings; physics vs. fast
is in test_fast_vs_exact)."""

from __future__ import annotations

import numpy as np
import pytest

from sim_devices import Beam, Detector
from sim_devices.cbed_exact import ExactCBED, MultisliceSettings, strained_block
from sim_devices.materials import zone_axis_crystal
from sim_devices.rebin import rebin_pattern

CHEAP = MultisliceSettings(sampling_a=0.1, box_nm=4.0)


def test_srtio3_001_by_configuration():
    """SrTiO3 [001] at 300 kV, 2 mrad, 64 px: disks on the cubic (100) lattice, 4-fold symmetric."""
    beam, detector = (
        Beam(voltage_kv=300, convergence_mrad=2.0),
        Detector(pixels=64, mrad_per_pixel=0.5),
    )
    model = ExactCBED("SrTiO3", "001", beam, detector, CHEAP)
    pattern = model.thickness_series((0.0, 0.0, 0.0), (0.0, 0.0), [4.0])[0]
    assert pattern.shape == (64, 64) and 0.5 < pattern.sum() <= 1.0
    # (200) at 2 lambda / a = 2 x 1.97 pm / 3.905 A = 10.1 mrad = 20.2 px from the centre;
    # (100) is nearly extinct (f_Sr ~ f_Ti + f_O), so between them the pattern is dark
    centre = (64 - 1) / 2
    spot = pattern[32, int(round(centre + 20.2))]
    gap = pattern[32, int(round(centre + 10.1))]
    assert spot > 100 * gap
    np.testing.assert_allclose(pattern, pattern.T, atol=0.02 * pattern.max())  # 4mm symmetry


def test_thickness_series_matches_single_runs():
    model = ExactCBED("Si", "110", Beam(), Detector(pixels=64, mrad_per_pixel=0.7), CHEAP)
    series = model.thickness_series((0.01, 0.0, 0.0), (1.0, 0.0), [3.0, 6.0])
    single = model.thickness_series((0.01, 0.0, 0.0), (1.0, 0.0), [6.0])[0]
    np.testing.assert_allclose(series[1], single, rtol=1e-4, atol=1e-7)
    assert not np.allclose(series[0], series[1], rtol=0.05)


def test_strained_block_is_strained_about_its_centre():
    crystal = zone_axis_crystal("Si", "110")
    flat = strained_block(crystal, np.array([10, 7]), 4, 2, (0.0, 0.0, 0.0))
    stretched = strained_block(crystal, np.array([10, 7]), 4, 2, (0.02, -0.01, 0.0))
    assert np.allclose(flat.cell.lengths(), stretched.cell.lengths())

    def column_spacing(atoms, axis):
        return np.median(np.diff(np.unique(np.round(atoms.positions[:, axis], 3))))

    # Si [110]: columns every a / (2 sqrt 2) = 1.92 A along x and a / 4 = 1.358 A along y
    assert column_spacing(flat, 0) == pytest.approx(1.9201, abs=1e-3)
    assert column_spacing(stretched, 0) == pytest.approx(1.9201 * 1.02, abs=1e-3)
    assert column_spacing(stretched, 1) == pytest.approx(1.35775 * 0.99, abs=1e-3)
    # the centre stays put: an atom sits at the middle of both blocks
    middle = flat.cell.lengths()[:2] / 2
    for block in (flat, stretched):
        assert np.hypot(*(block.positions[:, :2] - middle).T).min() < 1e-6


def test_unknown_material_refused():
    with pytest.raises(ValueError, match="unsupported material/zone axis GaAs \\[110\\]"):
        ExactCBED("GaAs", "110", Beam(), Detector())


def test_a_wave_larger_than_abtems_chunk_size_is_one_chunk():
    """abTEM refuses a wave larger than its dask chunk size ("cannot be automatically chunked"):
    a 25.6 nm block at 0.05 A did. With the chunk size set far below this cheap block's wave,
    the exact model still runs, and the global setting is left as it was."""
    import abtem

    from sim_devices.cbed_exact import wave_chunk_bytes

    model = ExactCBED("Si", "110", Beam(), Detector(pixels=64, mrad_per_pixel=0.7), CHEAP)
    reference = model.thickness_series((0.0, 0.0, 0.0), (0.0, 0.0), [3.0])
    with abtem.config.set({"dask.chunk-size": "16 kB"}):
        small = model.thickness_series((0.0, 0.0, 0.0), (0.0, 0.0), [3.0])
        assert abtem.config.get("dask.chunk-size") == "16 kB"
        assert wave_chunk_bytes((40, 56)) == 4 * 16 * 40 * 56
    np.testing.assert_allclose(small, reference, rtol=1e-5, atol=1e-9)
    assert wave_chunk_bytes((8, 8)) >= 2**20  # never below the configured default


def test_detection_is_abtems_diffraction_pattern_rebinned():
    """exit_waves then detect: the pattern abTEM's own diffraction_patterns gives, rebinned."""
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
