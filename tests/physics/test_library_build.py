"""The library builder reproduces the default library on a small patch of it.

The default library (built once per machine, or in CI) and a small one built here with the same
settings must agree where they overlap: same beams, incident directions and exit planes, with the
incident directions in the same order (a transposed or mirrored grid would differ by 0.04-0.1).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from sim_devices.cbed_library import LibrarySpec, build_library, load_or_build


def test_small_build_matches_the_default_library():
    default = load_or_build(LibrarySpec())
    spec = dataclasses.replace(LibrarySpec(), k_max_mrad=1.0, thickness_max_nm=20.0)
    small = build_library(spec, workers=1)
    assert np.allclose(small.k_mrad, np.arange(-1.0, 1.01, 0.25))
    t = len(small.thickness_nm)
    assert np.allclose(small.thickness_nm, default.thickness_nm[:t])
    centre = np.flatnonzero(np.isin(np.round(default.k_mrad, 6), np.round(small.k_mrad, 6)))
    index = {tuple(hk): i for i, hk in enumerate(default.hk)}
    common = [i for i, hk in enumerate(small.hk) if tuple(hk) in index]
    assert len(common) >= 20
    ours = small.intensity[:, common]
    theirs = default.intensity[:t][:, [index[tuple(small.hk[i])] for i in common]]
    theirs = theirs[..., centre[:, None], centre[None, :]].astype(np.float32)
    # measured 2.4e-4 (the cache stores float16; slice assignment of atoms on slice boundaries)
    assert np.abs(ours - theirs).max() < 1e-3
    assert np.abs(ours - theirs.swapaxes(-1, -2)).max() > 1e-2
    assert np.abs(ours - theirs[..., ::-1, :]).max() > 1e-2


def test_the_cell_builds_the_same_library_under_its_own_name():
    """``source="cell"``: the strained-cell multislice at zero strain, abTEM's to float16
    storage up to 200 slices (Si [110]'s slice-boundary plane differs past it; 20 nm here)."""
    default = load_or_build(LibrarySpec())
    spec = dataclasses.replace(LibrarySpec(), k_max_mrad=1.0, thickness_max_nm=20.0)
    cell = build_library(dataclasses.replace(spec, source="cell"))
    assert cell.spec.source == "cell"
    assert LibrarySpec(source="cell").key() != LibrarySpec().key()
    assert LibrarySpec().filename() == default.spec.filename()  # abTEM names are unchanged
    t = len(cell.thickness_nm)
    assert np.allclose(cell.k_mrad, np.arange(-1.0, 1.01, 0.25))
    assert np.allclose(cell.thickness_nm, default.thickness_nm[:t])
    index = {tuple(hk): i for i, hk in enumerate(default.hk)}
    assert all(tuple(hk) in index for hk in cell.hk) and len(cell.hk) >= 20
    centre = np.flatnonzero(np.isin(np.round(default.k_mrad, 6), np.round(cell.k_mrad, 6)))
    theirs = default.intensity[:t][:, [index[tuple(hk)] for hk in cell.hk]]
    theirs = theirs[..., centre[:, None], centre[None, :]].astype(np.float32)
    assert np.abs(cell.intensity - theirs).max() < 1e-3
    assert np.abs(cell.intensity - theirs.swapaxes(-1, -2)).max() > 1e-2


def test_an_unknown_library_source_is_refused():
    with pytest.raises(ValueError, match="library source"):
        LibrarySpec(source="bloch")
