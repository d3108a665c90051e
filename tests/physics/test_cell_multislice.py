"""Multislice of the strained periodic cell: against abTEM where abTEM can hold the cell."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest
import torch

from sim_devices import cell_multislice
from sim_devices.cbed_exact import MultisliceSettings
from sim_devices.cell_multislice import StrainedCellMultislice, strained_cell_multislice
from sim_devices.strain_contents import StrainContents
from sim_devices.validation import stretched_cell_intensities

TILTS = np.random.default_rng(2).uniform(-3.0, 3.0, (12, 2))


@pytest.fixture(scope="module")
def cell_model() -> StrainedCellMultislice:
    return StrainedCellMultislice("Si", "110", 200.0)


def test_zero_strain_is_the_beam_library(cell_model, fast_model):
    """At zero strain it is abTEM's plane-wave multislice of the library (float16 storage).

    Up to 200 slices: Si [110] has atom planes on the slice boundaries, and in the library's
    stacked cell rounding puts one plane into slice 209 instead of 210 (abTEM assigns atoms to
    slices by their z); this model's cell is exactly periodic.
    """
    library = fast_model.library
    k = library.k_mrad
    picks = [(5, 40), (32, 32), (50, 21)]  # (ix, iy) on the library's direction grid
    tilts = np.array([[k[ix], k[iy]] for ix, iy in picks])
    exits = 10 * np.arange(1, 21)
    ours = cell_model.intensities((0.0, 0.0, 0.0), tilts, exits, library.hk)
    stored = np.stack([library.intensity[:20, :, iy, ix] for ix, iy in picks], axis=-1)
    assert ours.shape == stored.shape
    assert np.abs(ours - stored).max() < 1e-3


def test_orthogonal_strain_matches_abtem_on_the_stretched_cell(cell_model):
    """exx, eyy keep the cell orthogonal, so abTEM can compute it directly."""
    strain, thickness_nm = (0.02, -0.015), 38.0
    values, n = stretched_cell_intensities("Si", "110", 200.0, strain, thickness_nm, TILTS)
    nx, ny = values.shape[1:]
    hk = np.array([(h, k) for h in range(-4, 5) for k in range(-4, 5)])
    reference = values[:, hk[:, 0] % nx, hk[:, 1] % ny].T  # (beams, tilts)

    strained = cell_model.intensities((*strain, 0.0), TILTS, [n], hk)[0]
    unstrained = cell_model.intensities((0.0, 0.0, 0.0), TILTS, [n], hk)[0]
    disagreement = np.abs(strained - reference).max()
    assert disagreement < 2e-3
    assert np.abs(unstrained - reference).max() > 20 * disagreement  # the strain mattered


def test_shear_obeys_the_mirror_of_the_projection(cell_model):
    """Si [110] has mirrors x -> -x: shear +exy at tilt (tx, ty) in beam (h, k) is shear -exy
    at tilt (-tx, ty) in beam (-h, k)."""
    hk = np.array([(h, k) for h in range(-3, 4) for k in range(-3, 4)])
    mirrored_hk = hk * np.array([-1, 1])
    mirrored_tilts = TILTS * np.array([-1.0, 1.0])
    plus = cell_model.intensities((0.01, -0.005, 0.015), TILTS, [200], hk)[0]
    minus = cell_model.intensities((0.01, -0.005, -0.015), mirrored_tilts, [200], mirrored_hk)[0]
    np.testing.assert_allclose(plus, minus, atol=1e-4)
    unsheared = cell_model.intensities((0.01, -0.005, 0.0), TILTS, [200], hk)[0]
    assert np.abs(plus - unsheared).max() > 0.01


def test_refuses_bad_exit_planes(cell_model):
    for bad in ([], [0, 5], [10, 5]):
        with pytest.raises(ValueError, match="exit_slices"):
            cell_model.intensities((0.0, 0.0, 0.0), TILTS[:1], bad, np.array([[0, 0]]))


def test_multislice_engine_corrects_the_library_to_the_strained_cell(cell_model, fast_model):
    """``StrainContents(engine="multislice")``: library + correction = the strained cell."""
    library = fast_model.library
    picks = np.arange(24, 41, 2)  # 9 directions per axis near the centre, every second kept
    small = replace(
        library,
        k_mrad=library.k_mrad[picks],
        thickness_nm=library.thickness_nm[:20],  # before the library's slice-209 glitch
        intensity=library.intensity[:20][:, :, picks][:, :, :, picks],
    )
    contents = StrainContents(small, step=0.005, engine="multislice")
    voxel = (2, -3, 1)
    corrected = small.intensity + contents.correction(voxel).numpy()
    k = small.k_mrad[::2]
    tilts = np.stack(np.meshgrid(k, k), -1).reshape(-1, 2)  # [ky, kx] order of the library
    exits = 10 * np.arange(1, 21)
    direct = cell_model.intensities((0.01, -0.015, 0.005), tilts, exits, small.hk)
    direct = direct.reshape(20, len(small.hk), len(k), len(k))
    assert np.abs(corrected[:, :, ::2, ::2] - direct).max() < 2e-3
    assert np.abs(small.intensity[:, :, ::2, ::2] - direct).max() > 0.02


def test_refuses_an_unknown_content_engine(fast_model):
    with pytest.raises(ValueError, match="content engine"):
        StrainContents(fast_model.library, engine="dft")


def test_tabulated_form_factors_are_abtem_s(cell_model):
    """The state keeps each species' form factor as a table in |g|; read between its samples
    it is abTEM's parametrization to 1e-5 wherever the factor matters."""
    from abtem.parametrizations import validate_parametrization

    factor = validate_parametrization("lobato").projected_scattering_factor("Si")
    g = np.random.default_rng(0).uniform(0.0, 1.05 * np.abs(cell_model.g0).max() * 1.4, 5000)
    exact = factor(g**2)
    tabulated = cell_model._factor(0, g)
    matters = exact > 1e-3 * exact.max()
    assert np.abs(tabulated - exact)[matters].max() < 1e-5 * exact.max()


def test_strain_beyond_the_tabulated_factors_is_refused(cell_model):
    with pytest.raises(ValueError, match="beyond the tabulated"):
        cell_model.slice_potentials((-0.5, -0.5, 0.0))


def test_a_saved_state_runs_without_abtem(cell_model, tmp_path):
    """What a GPU node without abTEM does: load the state, propagate, same intensities."""
    path = cell_model.save(tmp_path / "cell.npz")
    hk = np.array([[0, 0], [1, 1], [0, 2]])
    ours = cell_model.intensities((0.01, 0.0, -0.005), TILTS[:3], [40, 80], hk)
    np.save(tmp_path / "tilts.npy", TILTS[:3])
    script = f"""
import sys
sys.modules["abtem"] = None  # any import of abTEM now fails
import numpy as np
from sim_devices.cell_multislice import StrainedCellMultislice
cell = StrainedCellMultislice.load({str(path)!r})
tilts = np.load({str(tmp_path / "tilts.npy")!r})
values = cell.intensities((0.01, 0.0, -0.005), tilts, [40, 80], np.array({hk.tolist()}))
np.save({str(tmp_path / "theirs.npy")!r}, values)
"""
    subprocess.run([sys.executable, "-c", script], check=True, timeout=300)
    np.testing.assert_array_equal(np.load(tmp_path / "theirs.npy"), ours)


@pytest.fixture
def fresh_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("STEM_LOOP_CACHE", str(tmp_path))
    strained_cell_multislice.cache_clear()
    yield tmp_path
    strained_cell_multislice.cache_clear()  # forget the models built on this cache


def test_the_state_is_cached_and_reused(fresh_cache, monkeypatch):
    settings = MultisliceSettings()
    built = strained_cell_multislice("Si", "110", 80.0, settings)
    path = fresh_cache / cell_multislice.cell_filename("Si", "110", 80.0, settings)
    assert path.is_file()
    strained_cell_multislice.cache_clear()

    def no_build(*args, **kwargs):
        raise AssertionError("rebuilt instead of read from the cache")

    monkeypatch.setattr(StrainedCellMultislice, "__init__", no_build)
    loaded = strained_cell_multislice("Si", "110", 80.0, settings)
    assert loaded is not built
    strain = (0.004, -0.002, 0.001)
    np.testing.assert_array_equal(loaded.slice_potentials(strain), built.slice_potentials(strain))


def test_a_state_of_another_format_is_rebuilt(fresh_cache):
    settings = MultisliceSettings()
    path = fresh_cache / cell_multislice.cell_filename("Si", "110", 80.0, settings)
    strained_cell_multislice("Si", "110", 80.0, settings)
    state = dict(np.load(path))
    state["format"] = np.array(cell_multislice.CELL_FORMAT + 1)
    np.savez(path, **state)
    strained_cell_multislice.cache_clear()
    model = strained_cell_multislice("Si", "110", 80.0, settings)
    assert int(model.state()["format"]) == cell_multislice.CELL_FORMAT
    assert int(np.load(path)["format"]) == cell_multislice.CELL_FORMAT  # written again


def test_the_bloch_engine_refuses_a_gpu(fast_model):
    with pytest.raises(ValueError, match="Bloch content engine runs on the CPU"):
        StrainContents(fast_model.library, engine="bloch", device="cuda")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_the_gpu_propagates_like_the_cpu(cell_model):
    hk = np.array([(h, k) for h in range(-3, 4) for k in range(-3, 4)])
    strain = (0.01, -0.005, 0.015)
    cpu = cell_model.intensities(strain, TILTS, [100, 200], hk)
    gpu = cell_model.intensities(strain, TILTS, [100, 200], hk, device="cuda")
    assert np.abs(gpu - cpu).max() < 1e-4


def test_opposite_directions_are_read_from_the_mirror_beam(cell_model):
    """With the two-fold axis, a direction whose opposite is asked for is read as beam -g of
    that one: the same intensities as propagating it, for a sheared crystal too."""
    assert cell_model.two_fold
    assert strained_cell_multislice("SrTiO3", "001", 80.0, MultisliceSettings()).two_fold
    tilts = np.concatenate([TILTS[:4], [[0.0, 0.0]], -TILTS[:4], TILTS[4:6]])
    hk = np.array([[0, 0], [1, 1], [-1, 1], [0, 2], [2, 0]])  # not closed under g -> -g
    strain, exits = (0.012, -0.007, 0.009), np.array([50, 150, 300])
    halved = cell_model.intensities(strain, tilts, exits, hk)
    every = cell_model.intensities(strain, tilts, exits, hk, chunk=256, use_two_fold=False)
    assert halved.shape == every.shape == (3, len(hk), len(tilts))
    np.testing.assert_allclose(halved, every, rtol=0, atol=5e-5)
    # the mirrored beams really differ from the unmirrored ones, so reading the wrong one fails
    assert np.abs(every[:, 1, :4] - every[:, 1, 5:9]).max() > 1e-2


def test_two_fold_axis_is_found_only_where_every_slice_has_one():
    rng = np.random.default_rng(4)
    a = rng.normal(size=(2, 12, 10))
    assert not cell_multislice.two_fold_axis(np.fft.fft2(a))
    # symmetric about a common t = (5, 3) (a half-pixel centre), each slice
    mirror = np.roll(a[:, ::-1, ::-1], (6, 4), axis=(1, 2))  # a(t - r), t = (5, 3)
    symmetric = a + mirror
    assert cell_multislice.two_fold_axis(np.fft.fft2(symmetric))
    # each slice symmetric, but about different axes: not one axis along the beam
    shifted = symmetric.copy()
    shifted[1] = np.roll(shifted[1], 1, axis=0)
    assert not cell_multislice.two_fold_axis(np.fft.fft2(shifted))


def test_each_direction_maps_to_itself_or_its_first_opposite():
    tilts = np.array([[1.0, -2.0], [0.0, 0.0], [-1.0, 2.0], [3.0, 0.5], [1.0, -2.0]])
    np.testing.assert_array_equal(cell_multislice.opposite_directions(tilts), [0, 1, 0, 3, 0])
