"""The physics front end: batched disk registration and lattice fit."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sim_devices import Beam, Detector
from sim_devices.cbed_fast import FastCBED
from sim_devices.disk_positions import measure_disk_positions
from stem_loop.inference import BeamConditions
from stem_loop.inference.lattice import DiskLattice, _sqrt_, expected_disks

from .conftest import random_descriptors


def test_expected_disks_are_allowed_beams_nearest_first(si_conditions):
    hk = expected_disks(si_conditions)
    assert tuple(hk[0]) == (0, 0)
    # Si [110] in the (a/sqrt2, a) cell: {111} = (+-1, +-1), {220} = (+-2, 0); (0, 2) = {002}
    # is kinematically forbidden and must not be registered
    assert {tuple(v) for v in hk[1:5]} == {(1, 1), (1, -1), (-1, 1), (-1, -1)}
    assert not any(tuple(v) in {(0, 2), (0, -2), (1, 0), (0, 1)} for v in hk)


def test_batched_registration_agrees_with_the_validation_estimator(si_fast, si_conditions):
    """The front end correlates Sobel gradient vectors (one Fourier filter, fast); the forward
    models' validation correlates gradient magnitudes. Both lock onto the aperture edge."""
    lattice = DiskLattice(si_conditions)
    patterns = si_fast.patterns(random_descriptors(4, seed=3)) * 1e5
    fit, _ = lattice.measure(torch.as_tensor(patterns))
    for frame, found in zip(patterns, fit.positions_px.numpy(), strict=True):
        ref = measure_disk_positions(frame, found, lattice.radius_px)
        bright = fit.weights[0].numpy() > 0.01
        assert np.nanmax(np.abs(ref - found)[bright]) < 0.1


@pytest.mark.parametrize("material", ["Si", "SrTiO3"])
def test_coarse_search_is_the_inverse_fft_at_the_searched_shifts(material):
    """The integer-shift search reads the correlation by matrix DFT at shifts -5..5 only; it is
    the inverse FFT of the filtered window spectrum there (circular shifts, rows y)."""
    conditions = BeamConditions(material, "110" if material == "Si" else "001", 200.0, 2.0)
    lattice = DiskLattice(conditions)
    rng = np.random.default_rng(0)
    windows = torch.as_tensor(
        rng.poisson(50.0, (3, 4, lattice.size, lattice.size)), dtype=torch.float32
    )
    spectrum = torch.fft.rfft2(windows.sqrt()) * lattice.template_spectrum
    full = torch.fft.irfft2(spectrum, s=(lattice.size, lattice.size)) * lattice.size**2
    shifts = lattice.near.numpy()
    want = full[..., shifts[:, None] % lattice.size, shifts[None, :] % lattice.size]
    got = lattice._coarse_score(spectrum)
    assert got.shape == want.shape == (3, 4, len(shifts), len(shifts))
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-4 * float(want.abs().max()))


def test_lattice_follows_strain_and_centre(si_conditions):
    """Strain differences and the optical axis come out of the fit; the content bias cancels
    between two patterns with the same thickness and tilt (it changes with those only)."""
    offset = (1.3, -0.7)
    fast = FastCBED.for_conditions("Si", "110", Beam(), Detector(center_offset_px=offset))
    base = dict(thickness_nm=[30.0] * 2, tilt_x_mrad=[0.5] * 2, tilt_y_mrad=[-0.3] * 2)
    d = dict(exx=[0.0, 0.01], eyy=[0.0, -0.005], exy=[0.0, 0.004], **base)
    fit, crops = DiskLattice(si_conditions).measure(torch.as_tensor(fast.patterns(d) * 1e5))
    delta = (fit.strain[1] - fit.strain[0]).numpy()
    np.testing.assert_allclose(delta, [0.01, -0.005, 0.004], atol=5e-4)
    centre = np.asarray(Detector(center_offset_px=offset).center_px)
    np.testing.assert_allclose(fit.origin_px.numpy(), [centre, centre], atol=0.05)
    assert fit.residual_px.max() < 0.3
    assert crops.shape == (2, len(fit.weights[0]), 24, 24)


def test_windows_cut_by_slices_are_those_cut_by_index(si_conditions):
    """Windows all inside the frame are cut as slices; they equal the general path (a pixel
    index per window pixel, the frame's edge repeated past it)."""
    lattice = DiskLattice(si_conditions)
    assert lattice.window_starts is not None
    frames = torch.rand(5, si_conditions.pixels, si_conditions.pixels)
    sliced = lattice._windows(frames)
    lattice.window_starts = None
    torch.testing.assert_close(sliced, lattice._windows(frames), rtol=0, atol=0)
    assert sliced.shape == (5, lattice.n_disks, lattice.size, lattice.size)


def test_front_end_root_is_correctly_rounded():
    values = torch.rand(100_000) * 1e4
    exact = values.double().sqrt().float()
    got = _sqrt_(values.clone())
    assert torch.equal(got, exact)


def _crops_by_hand(frames: np.ndarray, total: np.ndarray, centres: np.ndarray, reach: range):
    """Each disk's crop cut pixel by pixel around its centre pixel (kept on the frame):
    sqrt(900 count / total), zero off the frame; and how many pixels were off the frame."""
    n, d = centres.shape[:2]
    out, off = np.zeros((n, d, len(reach), len(reach))), 0
    rows, cols = frames.shape[1:]
    for i, j in np.ndindex(n, d):
        cx, cy = np.clip(np.round(centres[i, j]).astype(int), 0, [cols - 1, rows - 1])
        for a, dy in enumerate(reach):
            for b, dx in enumerate(reach):
                if 0 <= cy + dy < rows and 0 <= cx + dx < cols:
                    count = max(frames[i, cy + dy, cx + dx], 0.0)
                    out[i, j, a, b] = np.sqrt(count * 900.0 / total[i])
                else:
                    off += 1
    return out, off


@pytest.mark.parametrize("shift_px", [0.0, 12.0, 40.0])
def test_crops_are_the_disks_cut_around_the_fitted_lattice(si_fast, si_conditions, shift_px):
    """Crops inside the frame (the quick path) and crops reaching past its edge (the lattice
    moved 12 or 40 px: the masked path) both read as cut by hand, zero off the frame."""
    lattice = DiskLattice(si_conditions, mirror_margin=True)
    frames = torch.as_tensor(si_fast.patterns(random_descriptors(3, seed=5)) * 1e4).float()
    total = frames.sum((1, 2))
    fit, _ = lattice.measure(frames, total)
    fit.origin_px += shift_px
    crops = lattice.crops(frames, total, fit).numpy()
    centres = fit.origin_px[:, None].numpy() + np.einsum(
        "dj,nij->ndi", lattice.hk.astype(np.float32), fit.basis_px.numpy()
    )
    reach = range(lattice.crop_reach[0], lattice.crop_reach[1] + 1)
    want, off_frame = _crops_by_hand(frames.numpy(), total.numpy(), centres, reach)
    np.testing.assert_allclose(crops, want, rtol=1e-5, atol=1e-6)
    assert (off_frame > 0) == bool(shift_px)


def test_a_different_lattice_does_not_fit(si_fast, si_conditions):
    """Si [110] turned by 90 degrees: the disks are found only by deforming the lattice far
    beyond any strain in the training data (the predictor flags such frames)."""
    frames = torch.as_tensor(si_fast.patterns(random_descriptors(8, seed=1)) * 1e5)
    lattice = DiskLattice(si_conditions)
    right, _ = lattice.measure(frames)
    wrong, _ = lattice.measure(torch.rot90(frames, 1, (1, 2)))
    assert wrong.strain.abs().amax(1).min() > 0.1
    assert right.strain.abs().amax(1).max() < 0.03


def test_conditions_refuse_unknown_material():
    with pytest.raises(ValueError, match="unsupported material"):
        BeamConditions(material="GaAs", zone_axis="110")
