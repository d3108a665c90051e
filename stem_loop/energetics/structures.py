"""Descriptors -> strained crystal: the pure function the DFT jobs start from.

The descriptors give the in-plane strain in the scan frame (``exx``, ``eyy`` and the tensor
shear ``exy``; image plane ``x, y``, beam ``z``). The lamella is a thin foil with free
surfaces, so the out-of-plane strain follows from plane stress (:mod:`.elastic`). The strain
is applied to the primitive cell written in the scan frame, and in diamond-structure crystals
the second sublattice takes its Kleinman internal relaxation. Thickness and tilt describe the
imaging, not the crystal, and do not enter the structure.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from ase import Atoms

from .elastic import plane_stress_strain, rotate_stiffness
from .materials import MaterialModel, get_material

STRAIN_NAMES: tuple[str, str, str] = ("exx", "eyy", "exy")
MAX_STRAIN: float = 0.10
"""Largest accepted strain component (10 %): beyond it the crystal model is meaningless."""


def validate_strain(exx: float, eyy: float, exy: float) -> tuple[float, float, float]:
    """Check an in-plane strain and return it as floats.

    Raises
    ------
    ValueError
        For a non-finite component or one above :data:`MAX_STRAIN` in magnitude.
    """
    values = tuple(float(v) for v in (exx, eyy, exy))
    for name, value in zip(STRAIN_NAMES, values, strict=True):
        if not np.isfinite(value):
            raise ValueError(f"strain {name} is not a finite number: {value}")
        if abs(value) > MAX_STRAIN:
            raise ValueError(
                f"strain {name}={value:g} is beyond ±{MAX_STRAIN:g} (strain is a fraction: "
                "0.01 = 1 %)"
            )
    return values  # type: ignore[return-value]


def scan_frame_strain(
    exx: float, eyy: float, exy: float, material: str | MaterialModel = "Si"
) -> np.ndarray:
    """Full 3x3 strain in the scan frame under plane stress.

    Parameters
    ----------
    exx, eyy, exy : float
        In-plane strain (fractions, tensor shear).
    material : str or MaterialModel
        Gives the orientation and the elastic constants.

    Returns
    -------
    ndarray (3, 3)
        Symmetric strain with the out-of-plane components that make the beam-normal
        tractions vanish.
    """
    model = get_material(material)
    exx, eyy, exy = validate_strain(exx, eyy, exy)
    stiffness = rotate_stiffness(model.elastic.tensor(), model.rotation)
    return plane_stress_strain(np.array([[exx, exy], [exy, eyy]]), stiffness)


def crystal_strain(
    exx: float, eyy: float, exy: float, material: str | MaterialModel = "Si"
) -> np.ndarray:
    """The plane-stress strain of :func:`scan_frame_strain` in the cubic crystal axes."""
    model = get_material(material)
    r = model.rotation
    return r.T @ scan_frame_strain(exx, eyy, exy, model) @ r


def _descriptor_strain(descriptors: Mapping[str, float]) -> tuple[float, float, float]:
    missing = [name for name in STRAIN_NAMES if name not in descriptors]
    if missing:
        raise ValueError(f"descriptors lack {', '.join(missing)}")
    return validate_strain(*(descriptors[name] for name in STRAIN_NAMES))


def build_structure(
    descriptors: Mapping[str, float],
    material: str | MaterialModel = "Si",
    *,
    lattice_constant_a: float | None = None,
) -> Atoms:
    """Build the strained primitive cell for one set of descriptors.

    Parameters
    ----------
    descriptors : mapping
        At least ``exx``, ``eyy``, ``exy``; other descriptors (thickness, tilt) are ignored.
    material : str or MaterialModel
        ``"Si"`` (zone axis [110]) or ``"SrTiO3"`` ([001]).
    lattice_constant_a : float, optional
        Reference (unstrained) lattice constant in Angstrom; default the experimental one.
        Energies must use the DFT-relaxed value of the same settings (:mod:`.reference`).

    Returns
    -------
    ase.Atoms
        Periodic primitive cell with Cartesian axes along the scan frame (``x``, ``y`` in the
        image plane, ``z`` along the beam). ``atoms.info`` records the material, the in-plane
        strain, the full scan-frame strain and the lattice constant.
    """
    model = get_material(material)
    exx, eyy, exy = _descriptor_strain(descriptors)
    a = model.nominal_lattice_a if lattice_constant_a is None else float(lattice_constant_a)
    strain = scan_frame_strain(exx, eyy, exy, model)
    rotation = model.rotation

    atoms = model.primitive_cell(a)
    deformation = np.eye(3) + strain
    # Row vectors: crystal -> scan frame (v R^T), then deform (v F^T).
    cell = atoms.cell[:] @ rotation.T @ deformation.T
    positions = atoms.positions @ rotation.T @ deformation.T
    if model.internal_strain:
        # Kleinman relaxation of the second diamond sublattice, in crystal axes.
        e = rotation.T @ strain @ rotation
        shift = -model.internal_strain * 0.5 * a * np.array([e[1, 2], e[0, 2], e[0, 1]])
        positions[1::2] += shift @ rotation.T
    structure = Atoms(model.symbols, positions=positions, cell=cell, pbc=True)
    structure.info.update(
        material=model.name,
        zone_axis=model.zone_axis,
        strain=[exx, eyy, exy],
        scan_frame_strain=strain.tolist(),
        lattice_constant_a=a,
    )
    return structure
