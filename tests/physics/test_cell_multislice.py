"""Multislice of the strained periodic cell: against abTEM where abTEM can hold the cell."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from sim_devices.cell_multislice import StrainedCellMultislice
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
