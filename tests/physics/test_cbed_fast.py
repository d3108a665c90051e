"""Fast forward model: geometry, normalisation, refusals (physics vs. exact: elsewhere)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sim_devices import Beam, Detector
from sim_devices.cbed_fast import FastCBED
from sim_devices.disk_positions import fit_lattice, measure_disk_positions
from sim_devices.validation import bright_disks


def _descriptors(n=1, **kw):
    base = dict(exx=0.0, eyy=0.0, exy=0.0, thickness_nm=30.0, tilt_x_mrad=0.0, tilt_y_mrad=0.0)
    base.update(kw)
    return {k: np.full(n, v, dtype=float) for k, v in base.items()}


def test_patterns_are_fractions_of_the_beam(fast_model):
    p = fast_model.patterns(
        _descriptors(3, thickness_nm=[10.0, 40.0, 80.0])
        | {"thickness_nm": np.array([10.0, 40.0, 80.0])}
    )
    assert p.shape == (3, 128, 128) and p.dtype == np.float32
    assert (p >= 0).all()
    totals = p.sum((1, 2))
    assert (totals <= 1.0).all() and (totals > 0.6).all()
    assert totals[0] > totals[2]  # more scattering out of the detector in thicker crystal


def test_mirror_symmetry_of_si_110(fast_model):
    """Si [110] has 2mm projection symmetry: the untilted pattern is symmetric in x and y."""
    p = fast_model.patterns(_descriptors(thickness_nm=50.0))[0]
    np.testing.assert_allclose(p, p[:, ::-1], atol=2e-3 * p.max())
    np.testing.assert_allclose(p, p[::-1, :], atol=2e-3 * p.max())


@pytest.mark.parametrize("strain", [(0.015, 0.0, 0.0), (0.0, -0.02, 0.0), (0.004, 0.01, 0.012)])
def test_strained_disks_sit_at_the_strained_reciprocal_lattice(fast_model, strain):
    """Measured disk centres follow lambda (I + e)^-T g (lattice fit, sub-pixel)."""
    p = fast_model.patterns(_descriptors(exx=strain[0], eyy=strain[1], exy=strain[2]))[0]
    guesses, hk, _ = bright_disks(fast_model, strain, p)
    found = measure_disk_positions(p, guesses, fast_model.alpha / fast_model.pixel)
    assert len(guesses) >= 8
    origin, basis = fit_lattice(found, hk)
    assert np.hypot(*(origin + hk @ basis.T - guesses).T).max() < 0.1
    # and that lattice is the strained one, not the unstrained one
    unstrained = fast_model.disk_centres_px(np.zeros(3))[0].numpy()
    ref_origin, ref_basis = fit_lattice(unstrained, fast_model.hk)
    deformation = np.array([[1 + strain[0], strain[2]], [strain[2], 1 + strain[1]]])
    expected = np.linalg.inv(deformation).T @ ref_basis  # g' = (I + e)^-T g
    np.testing.assert_allclose(basis, expected, atol=0.05)
    assert np.abs(basis - ref_basis).max() > 0.2
    np.testing.assert_allclose(origin, ref_origin, atol=0.05)


def test_tilt_moves_the_content_not_the_disks(fast_model):
    flat, tilted = fast_model.patterns(
        _descriptors(2, tilt_x_mrad=0.0) | {"tilt_x_mrad": np.array([0.0, 2.0])}
    )
    assert np.corrcoef(flat.ravel(), tilted.ravel())[0, 1] < 0.995
    guesses = bright_disks(fast_model, (0.0, 0.0, 0.0), flat)[0]
    radius = fast_model.alpha / fast_model.pixel
    a, b = (
        measure_disk_positions(flat, guesses, radius),
        measure_disk_positions(tilted, guesses, radius),
    )
    assert np.nanmedian(np.hypot(*(a - b).T)) < 0.1


def test_refuses_outside_its_validity(fast_model):
    with pytest.raises(ValueError, match="thickness outside"):
        fast_model.patterns(_descriptors(thickness_nm=200.0))
    with pytest.raises(ValueError, match="crystal tilt beyond"):
        fast_model.patterns(_descriptors(tilt_x_mrad=6.0))
    with pytest.raises(ValueError, match="disks overlap"):
        FastCBED(fast_model.library, Beam(convergence_mrad=4.5), Detector())
    with pytest.raises(ValueError, match="library is for 200"):
        FastCBED(fast_model.library, Beam(voltage_kv=300), Detector())


def test_smaller_convergence_angle_crops_the_disks(fast_model):
    narrow = FastCBED(fast_model.library, Beam(convergence_mrad=1.5), Detector())
    p = narrow.patterns(_descriptors())[0]
    rows = np.flatnonzero(p[:, 64] > 1e-3 * p.max())
    centre_run = rows[(rows > 50) & (rows < 78)]
    assert 7 <= len(centre_run) <= 10  # 2 * 1.5 mrad / 0.35 mrad per px ~ 8.6 px


def _true_area(fast: FastCBED, q_mrad: torch.Tensor, n: int = 64) -> torch.Tensor:
    """Brute-force fraction of each pixel (centre ``q_mrad``) inside the aperture, n x n points."""
    u = (torch.arange(n, dtype=torch.float64) + 0.5) / n - 0.5
    grid = torch.cartesian_prod(u, u) * fast.pixel
    inside = ((q_mrad[..., None, :] + grid).norm(dim=-1) <= fast.alpha).to(torch.float64)
    return inside.mean(-1)


def test_pixels_are_weighted_by_their_area_inside_the_aperture(fast_model):
    """Sub-pixel weights follow the circle's area within a pixel; one central ramp does not."""
    rng = np.random.default_rng(3)
    narrow = (fast_model.library, Beam(convergence_mrad=1.5), Detector())
    fine = FastCBED(*narrow, strain_contents=False, edge_subpixels=3)
    coarse = FastCBED(*narrow, strain_contents=False, edge_subpixels=1)
    frac = torch.as_tensor(rng.uniform(-0.5, 0.5, (8, 2)), dtype=torch.float32)
    q = (fine.offsets_f[None] + frac[:, None]) * fine.pixel  # (8, M, 2) mrad
    truth = _true_area(fine, q.to(torch.float64))
    fine_error = (fine._aperture_area(q).double() - truth).abs().max()
    coarse_error = (coarse._aperture_area(q).double() - truth).abs().max()
    assert fine_error < 0.03
    assert coarse_error > 2 * fine_error
    # every disk carries the aperture's whole area, wherever it sits on the pixel grid
    total = fine._aperture_area(q).sum(-1) * fine.pixel**2
    np.testing.assert_allclose(total.numpy(), np.pi * fine.alpha**2, rtol=2e-3)


def test_refuses_a_bad_sub_pixel_count(fast_model):
    for bad in (0, 17, 2.5):
        with pytest.raises(ValueError, match="edge_subpixels"):
            FastCBED(fast_model.library, Beam(), Detector(), edge_subpixels=bad)


@pytest.mark.parametrize("edge_subpixels", [1, 3])
def test_a_thickness_series_is_the_patterns_at_those_thicknesses(edge_subpixels):
    """The series (geometry worked out once, stored thicknesses interpolated for all at once)
    equals rendering each thickness, also with the optical axis moved at render time."""
    offset = (0.6, -0.4)
    kwargs = dict(strain_contents=False, edge_subpixels=edge_subpixels)
    shifted = FastCBED.for_conditions(
        "Si", "110", Beam(), Detector(center_offset_px=offset), **kwargs
    )
    centred = FastCBED.for_conditions("Si", "110", Beam(), Detector(), **kwargs)
    thickness = np.array([10.0, 10.3, 33.7, 61.1, 85.0])
    crystal = dict(exx=0.004, eyy=-0.006, exy=0.001, tilt_x_mrad=0.8, tilt_y_mrad=-1.1)
    one_by_one = shifted.patterns(_descriptors(len(thickness), **crystal, thickness_nm=thickness))
    series = centred.thickness_series(crystal, thickness, centre_px=shifted.detector.center_px)
    np.testing.assert_allclose(series.frames(), one_by_one, rtol=1e-5, atol=1e-9)
    # every pixel with intensity is among the series' pixels
    lit = np.flatnonzero(one_by_one.reshape(len(thickness), -1).max(0) > 0)
    assert np.isin(lit, series.pixels.numpy()).all()
    with pytest.raises(ValueError, match="thickness outside"):
        centred.thickness_series(crystal, np.array([20.0, 500.0]))
