"""Building blocks: area-conserving rebinning and sub-pixel disk registration."""

from __future__ import annotations

import numpy as np
import pytest

from sim_devices.disk_positions import disk_template, lattice_deformation, measure_disk_positions
from sim_devices.rebin import overlap_matrix, rebin_pattern


def test_overlap_matrix_conserves_intensity():
    src = (np.arange(50) - 25) * 0.2
    dst = (np.arange(20) - 10) * 0.35
    m = overlap_matrix(src, 0.2, dst, 0.35)
    inside = (src - 0.1 >= dst[0] - 0.175) & (src + 0.1 <= dst[-1] + 0.175)
    np.testing.assert_allclose(m.sum(0)[inside], 1.0)
    assert m.sum(0)[~inside].max() < 1.0


def test_rebin_identity_and_total():
    rng = np.random.default_rng(0)
    pattern = rng.random((16, 16))  # [x, y]
    axis = np.arange(16) - 8.0
    same = rebin_pattern(pattern, (axis, axis), (1.0, 1.0), (axis, axis), 1.0)
    np.testing.assert_allclose(same, pattern.T)  # detector order is [row = y, col = x]
    coarse = rebin_pattern(pattern, (axis, axis), (1.0, 1.0), (np.arange(8) * 2 - 7.5,) * 2, 2.0)
    assert coarse.sum() == pytest.approx(pattern.sum())


@pytest.mark.parametrize("centre", [(30.0, 31.0), (30.37, 29.81), (31.5, 30.5)])
@pytest.mark.parametrize(("texture", "bound_px"), [(0.0, 0.02), (0.3, 0.15)])
def test_disk_registration_is_sub_pixel(centre, texture, bound_px):
    """A flat disk is located to 0.02 px; texture (CBED-like fringes) costs at most 0.15 px."""
    y, x = np.mgrid[:64, :64]
    radius = 8.57
    aperture = np.clip(radius - np.hypot(x - centre[0], y - centre[1]) + 0.5, 0, 1)
    content = 1.0 + texture * np.sin((x - centre[0]) * 0.9 + 0.3) * np.cos((y - centre[1]) * 0.4)
    found = measure_disk_positions(aperture * content, np.array([[31.0, 31.0]]), radius)[0]
    assert np.hypot(*(found - centre)) < bound_px


def test_disk_registration_skips_disks_at_the_edge():
    frame = np.zeros((40, 40))
    assert np.isnan(measure_disk_positions(frame, np.array([[2.0, 20.0]]), 8.0)).all()


def test_template_is_a_disk():
    t = disk_template(5.0)
    assert t.max() == 1.0 and t.min() == 0.0
    assert t.sum() == pytest.approx(np.pi * 25, rel=0.02)


def test_lattice_deformation_reads_the_strain_back():
    reference = np.array([[30.0, -12.0], [4.0, 25.0]])
    strain = np.array([[0.004, -0.0015], [-0.0015, -0.002]])
    strained = np.linalg.inv(np.eye(2) + strain).T @ reference
    np.testing.assert_allclose(lattice_deformation(strained, reference), strain, atol=2e-5)
    np.testing.assert_allclose(lattice_deformation(reference, reference), 0.0, atol=1e-15)
