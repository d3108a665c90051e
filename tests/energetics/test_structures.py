"""The structure builder: orientation, plane stress, internal strain, input checks (no DFT)."""

from __future__ import annotations

import numpy as np
import pytest

from stem_loop.energetics import (
    MATERIALS,
    build_structure,
    crystal_strain,
    get_material,
    rotate_stiffness,
    scan_frame_strain,
)
from stem_loop.energetics.elastic import stress

SI = get_material("Si")
A = 5.47


def _zero(material="Si", a=A):
    return build_structure({"exx": 0, "eyy": 0, "exy": 0}, material, lattice_constant_a=a)


def test_orientation_matches_the_simulated_microscope():
    from sim_devices.materials import CRYSTALS

    for model in MATERIALS.values():
        crystal = CRYSTALS[(model.name, model.zone_axis)]
        assert model.x_direction == crystal.x_direction
        assert model.y_direction == crystal.y_direction
        assert model.z_direction == crystal.z_direction
    assert np.allclose(SI.rotation @ SI.rotation.T, np.eye(3))
    assert np.allclose(SI.rotation[2] * np.sqrt(2), [1, 1, 0])  # beam along [110]


def test_zero_strain_is_the_reference_crystal():
    atoms = _zero()
    assert atoms.get_volume() == pytest.approx(A**3 / 4)
    d = atoms.get_distance(0, 1, mic=True)
    assert d == pytest.approx(A * np.sqrt(3) / 4)
    assert np.allclose(atoms.info["scan_frame_strain"], 0)
    # Cartesian axes are the scan frame: the cubic axis [001] is the scan y axis.
    cubic = atoms.cell[:] @ SI.rotation  # back to crystal axes
    assert np.allclose(cubic, 0.5 * A * np.array([[0, 1, 1], [1, 0, 1], [1, 1, 0]]))


def test_exx_on_si110_is_a_crystal_shear_plus_expansion():
    exx = 0.01
    e = crystal_strain(exx, 0, 0, "Si")
    ezz = scan_frame_strain(exx, 0, 0, "Si")[2, 2]
    # x = [-110]/sqrt2, z = [110]/sqrt2: e_c = exx x x^T + ezz z z^T
    assert e[0, 0] == pytest.approx((exx + ezz) / 2)
    assert e[1, 1] == pytest.approx(e[0, 0])
    assert e[0, 1] == pytest.approx((ezz - exx) / 2)
    assert e[2, 2] == pytest.approx(0, abs=1e-15)
    assert np.allclose([e[0, 2], e[1, 2]], 0)


def test_plane_stress_leaves_no_traction_on_the_foil_surfaces():
    c = rotate_stiffness(SI.elastic.tensor(), SI.rotation)
    for strain in [(0.01, 0, 0), (0, 0.01, 0), (0, 0, 0.01), (0.004, -0.007, 0.003)]:
        e = scan_frame_strain(*strain, "Si")
        s = stress(e, c)
        assert np.allclose(s[:, 2], 0, atol=1e-9)
        assert np.abs(s[:2, :2]).max() > 0.5  # GPa: the in-plane stress is real
    # Poisson contraction along the beam for a tensile strain, and the known [110] ratio.
    c11, c12, c44 = SI.elastic.c11, SI.elastic.c12, SI.elastic.c44
    nu = ((c11 + c12) / 2 - c44) / ((c11 + c12) / 2 + c44)
    assert scan_frame_strain(0.01, 0, 0, "Si")[2, 2] == pytest.approx(-nu * 0.01)
    assert scan_frame_strain(0, 0.01, 0, "Si")[2, 2] == pytest.approx(
        -c12 / ((c11 + c12) / 2 + c44) * 0.01
    )


def test_in_plane_shear_on_si110_has_no_out_of_plane_response():
    e = scan_frame_strain(0, 0, 0.01, "Si")
    assert np.allclose(e[2, :], 0, atol=1e-15)
    assert e[0, 1] == pytest.approx(0.01)


def test_srtio3_001_plane_stress():
    sto = get_material("SrTiO3")
    e = scan_frame_strain(0.01, 0.005, 0, sto)
    assert e[2, 2] == pytest.approx(-sto.elastic.c12 / sto.elastic.c11 * 0.015)
    atoms = build_structure({"exx": 0.01, "eyy": 0.005, "exy": 0}, sto, lattice_constant_a=3.9)
    assert atoms.get_chemical_formula() == "O3SrTi"
    assert np.allclose(np.diag(atoms.cell[:]), 3.9 * (1 + np.diag(e)))


def test_cell_is_the_deformed_reference():
    strain = {"exx": 0.012, "eyy": -0.006, "exy": 0.004, "thickness_nm": 30.0}
    atoms = build_structure(strain, "Si", lattice_constant_a=A)
    e = scan_frame_strain(0.012, -0.006, 0.004, "Si")
    assert np.allclose(atoms.cell[:], _zero().cell[:] @ (np.eye(3) + e).T)
    assert atoms.get_volume() == pytest.approx(A**3 / 4 * np.linalg.det(np.eye(3) + e))


@pytest.mark.parametrize("strain", [(0.01, 0, 0), (0, 0.01, 0), (0.004, -0.007, 0.003)])
def test_internal_relaxation_follows_the_crystal_shear(strain):
    atoms = build_structure(
        dict(zip(("exx", "eyy", "exy"), strain, strict=True)), "Si", lattice_constant_a=A
    )
    homogeneous = _zero().get_scaled_positions()[1] @ atoms.cell[:]
    shift_crystal = (atoms.positions[1] - homogeneous) @ SI.rotation
    e = crystal_strain(*strain, "Si")
    expected = -SI.internal_strain * A / 2 * np.array([e[1, 2], e[0, 2], e[0, 1]])
    assert np.allclose(shift_crystal, expected, atol=1e-12)
    assert np.abs(expected).max() > 1e-4  # every one of these strains shears the crystal


def test_perovskite_basis_follows_the_lattice():
    atoms = build_structure({"exx": 0.01, "eyy": 0.0, "exy": 0.005}, "SrTiO3")
    reference = _zero("SrTiO3", 3.905)
    assert np.allclose(atoms.get_scaled_positions(), reference.get_scaled_positions())


@pytest.mark.parametrize(
    "bad, message",
    [
        ({"exx": 0.2, "eyy": 0, "exy": 0}, "beyond"),
        ({"exx": np.nan, "eyy": 0, "exy": 0}, "finite"),
        ({"exx": 0.0, "eyy": 0}, "lack exy"),
    ],
)
def test_bad_descriptors_are_refused(bad, message):
    with pytest.raises(ValueError, match=message):
        build_structure(bad, "Si")


def test_unknown_material_names_the_known_ones():
    with pytest.raises(ValueError, match="known: Si, SrTiO3"):
        get_material("GaAs")
