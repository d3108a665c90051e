"""Materials the energetics know: orientation on the microscope, primitive cell, elasticity.

The scan frame of the microscope is ``x``, ``y`` in the image plane and ``z`` along the beam.
Each material is viewed down one zone axis; :attr:`MaterialModel.rotation` has the scan axes
as rows, written in the cubic crystal axes, so ``v_scan = rotation @ v_crystal`` and a strain
transforms as ``e_scan = rotation @ e_crystal @ rotation.T``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from ase import Atoms

from .elastic import CubicElasticConstants


@dataclass(frozen=True)
class MaterialModel:
    """A cubic material on one zone axis, as the energetics see it.

    Parameters
    ----------
    name : str
        Material name used on the command line and in sample files (``"Si"``).
    zone_axis : str
        Beam direction, Miller indices (``"110"``).
    x_direction, y_direction : tuple of int
        Crystal directions along the scan ``x`` and ``y`` axes (the beam is ``x × y``).
    nominal_lattice_a : float
        Experimental lattice constant (Angstrom): the starting point of the DFT relaxation.
    elastic : CubicElasticConstants
        Used for the plane-stress out-of-plane response.
    internal_strain : float
        Kleinman internal-strain parameter ``zeta`` (diamond structure only, else 0): under a
        crystal shear ``e_jk`` the second sublattice moves by ``-zeta (a/2) e_jk`` along the
        third axis (``zeta = 1`` keeps bond lengths, ``zeta = 0`` follows the lattice).
    symbols : tuple of str
        Chemical symbols of the primitive basis.
    basis : tuple of tuple of float
        Fractional coordinates of the basis in the cubic cell.
    fcc : bool
        Face-centred lattice (primitive cell of ``len(basis)`` atoms) or simple cubic.
    """

    name: str
    zone_axis: str
    x_direction: tuple[int, int, int]
    y_direction: tuple[int, int, int]
    nominal_lattice_a: float
    elastic: CubicElasticConstants
    internal_strain: float
    symbols: tuple[str, ...]
    basis: tuple[tuple[float, float, float], ...]
    fcc: bool

    @property
    def z_direction(self) -> tuple[int, int, int]:
        """Crystal direction of the beam, ``x × y``."""
        return tuple(int(v) for v in np.cross(self.x_direction, self.y_direction))  # type: ignore[return-value]

    @property
    def rotation(self) -> np.ndarray:
        """Rows: unit scan axes ``x, y, z`` in crystal coordinates."""
        rows = [self.x_direction, self.y_direction, self.z_direction]
        return np.array([np.asarray(r, float) / np.linalg.norm(r) for r in rows])

    def primitive_cell(self, lattice_constant_a: float) -> Atoms:
        """The unstrained primitive cell in the cubic crystal axes."""
        a = lattice_constant_a
        if self.fcc:
            cell = 0.5 * a * np.array([[0.0, 1.0, 1.0], [1.0, 0.0, 1.0], [1.0, 1.0, 0.0]])
        else:
            cell = a * np.eye(3)
        positions = a * np.array(self.basis)
        return Atoms(self.symbols, positions=positions, cell=cell, pbc=True)


SILICON = MaterialModel(
    name="Si",
    zone_axis="110",
    x_direction=(-1, 1, 0),
    y_direction=(0, 0, 1),
    nominal_lattice_a=5.431,
    elastic=CubicElasticConstants(
        165.7, 63.9, 79.6, source="McSkimin & Andreatch, J. Appl. Phys. 35, 2161 (1964)"
    ),
    # Zero-force value with the production settings (GPAW PBE, 400 eV, 6x6x6), from the
    # largest force on the atoms of a cell strained by exx = 1 % along [-110]: 0.102 eV/A at
    # zeta = 0, 0.0076 at 0.45, 0.0007 at 0.49, 0.009 at 0.53 and 0.020 at 0.58 (past zero).
    # LDA gives 0.53 (Nielsen & Martin, Phys. Rev. B 32, 3792 (1985)); measured 0.54-0.74.
    internal_strain=0.49,
    symbols=("Si", "Si"),
    basis=((0.0, 0.0, 0.0), (0.25, 0.25, 0.25)),
    fcc=True,
)

STRONTIUM_TITANATE = MaterialModel(
    name="SrTiO3",
    zone_axis="001",
    x_direction=(1, 0, 0),
    y_direction=(0, 1, 0),
    nominal_lattice_a=3.905,
    elastic=CubicElasticConstants(
        317.2, 102.5, 123.5, source="Bell & Rupprecht, Phys. Rev. 129, 90 (1963)"
    ),
    internal_strain=0.0,  # Every atom sits on an inversion centre: no first-order internal strain.
    symbols=("Sr", "Ti", "O", "O", "O"),
    basis=((0.0, 0.0, 0.0), (0.5, 0.5, 0.5), (0.5, 0.5, 0.0), (0.5, 0.0, 0.5), (0.0, 0.5, 0.5)),
    fcc=False,
)

MATERIALS: dict[str, MaterialModel] = {m.name: m for m in (SILICON, STRONTIUM_TITANATE)}


def get_material(name: str | MaterialModel) -> MaterialModel:
    """Look a material up by name (case-insensitive).

    Raises
    ------
    ValueError
        For a material the energetics do not know, naming the known ones.
    """
    if isinstance(name, MaterialModel):
        return name
    for key, material in MATERIALS.items():
        if key.lower() == str(name).lower():
            return material
    raise ValueError(f"unknown material {name!r}; known: {', '.join(MATERIALS)}")
