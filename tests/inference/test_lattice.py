"""The physics front end: batched disk registration and lattice fit."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sim_devices import Beam, Detector
from sim_devices.cbed_fast import FastCBED
from sim_devices.disk_positions import measure_disk_positions
from stem_loop.inference import BeamConditions
from stem_loop.inference.lattice import DiskLattice, expected_disks

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
