"""Bloch-wave strain contents: against abTEM plane-wave multislice, and in the fast model."""

from __future__ import annotations

import numpy as np
import pytest

from sim_devices.bloch import bloch_waves
from sim_devices.cbed_exact import MultisliceSettings, unit_cell_gpts
from sim_devices.cbed_fast import FastCBED
from sim_devices.materials import zone_axis_crystal
from sim_devices.strain_contents import StrainContents
from sim_devices.validation import stretched_cell_intensities

TILTS = np.random.default_rng(1).uniform(-3.0, 3.0, (16, 2))


def _multislice(strain: tuple[float, float], thickness_nm: float):
    """Beam intensities (tilts, beams) of the (exx, eyy)-strained Si [110] cell, and its beams."""
    settings = MultisliceSettings()
    crystal = zone_axis_crystal("Si", "110")
    gpts = tuple(int(v) for v in unit_cell_gpts(crystal, settings.sampling_a)[0])
    values, n = stretched_cell_intensities("Si", "110", 200.0, strain, thickness_nm, TILTS)
    bloch = bloch_waves("Si", "110", 200.0)
    rows = bloch.hk[:, 0] % gpts[0], bloch.hk[:, 1] % gpts[1]
    thickness = n * crystal.cell_lengths_a[2] / settings.slices_per_cell / 10.0
    return values[:, rows[0], rows[1]], thickness


@pytest.fixture(scope="module")
def bloch():
    return bloch_waves("Si", "110", 200.0)


def test_bloch_waves_conserve_the_beam(bloch):
    values = bloch.intensities((0.02, -0.01, 0.015), TILTS, np.array([10.0, 80.0]))
    assert np.allclose(values.sum(axis=1), 1.0, atol=1e-6)


def test_bloch_waves_agree_with_multislice_of_a_thin_crystal(bloch):
    ms, thickness = _multislice((0.0, 0.0), 10.0)
    bw = bloch.intensities((0.0, 0.0, 0.0), TILTS, np.array([thickness]))[0].T
    assert np.corrcoef(ms.ravel(), bw.ravel())[0, 1] > 0.999  # measured 0.9997


def test_the_correction_captures_most_of_the_strain_change(bloch):
    """45 nm, strain (+2 %, -2 %): multislice of the strained cell is the truth."""
    strain = (0.02, -0.02)
    plain, thickness = _multislice((0.0, 0.0), 45.0)
    truth, _ = _multislice(strain, 45.0)
    t = np.array([thickness])
    delta = (
        bloch.intensities((*strain, 0.0), TILTS, t)[0] - bloch.intensities((0, 0, 0), TILTS, t)[0]
    ).T
    bright = np.argsort(-plain.mean(0))[:10]

    def error(model):
        return np.sqrt(np.mean((model[:, bright] - truth[:, bright]) ** 2))

    # measured: 0.097 -> 0.040 of the mean bright-beam intensity (40 tilts)
    assert error(plain + delta) < 0.6 * error(plain)


def test_content_strains_are_rounded_to_the_grid(fast_model):
    contents = StrainContents(fast_model.library, step=0.005)
    voxels = contents.voxels(np.array([[0.0024, -0.0026, 0.0199], [0.0, 0.0, 0.0]]))
    assert voxels.tolist() == [[0, -1, 4], [0, 0, 0]]
    assert float(contents.correction((0, 0, 0)).abs().max()) == 0.0
    corrected = {tuple(hk) for hk in contents.library.hk[contents.in_basis]}
    assert {tuple(hk) for hk in fast_model.hk} <= corrected  # every rendered disk


def test_strained_contents_change_thick_crystals_only_where_strained(fast_model):
    plain = FastCBED(
        fast_model.library, fast_model.beam, fast_model.detector, strain_contents=False
    )

    def descriptors(strain):
        return dict(
            exx=np.full(2, strain[0]),
            eyy=np.full(2, strain[1]),
            exy=np.full(2, strain[2]),
            thickness_nm=np.array([10.0, 80.0]),
            tilt_x_mrad=np.zeros(2),
            tilt_y_mrad=np.zeros(2),
        )

    unstrained = descriptors((0.001, -0.002, 0.0))  # rounds to the unstrained grid point
    assert np.array_equal(fast_model.patterns(unstrained), plain.patterns(unstrained))
    strained = descriptors((-0.02, 0.02, -0.02))
    a, b = fast_model.patterns(strained), plain.patterns(strained)
    change = np.abs(a - b).sum(axis=(1, 2)) / b.sum(axis=(1, 2))
    # measured 4 % of the pattern at 10 nm, 10 % at 80 nm
    assert change[1] > 0.05 and change[1] > 1.5 * change[0]
    assert a.sum() == pytest.approx(b.sum(), rel=0.02)  # the beam is conserved either way
