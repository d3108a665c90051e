"""Crystals oriented on their zone axis, in the scan frame used by the simulated microscope.

Each zone-axis cell is orthorhombic with ``z`` along the zone axis (the beam) and ``x``, ``y``
along the scan directions, so an in-plane strain in the scan frame acts on the cell's ``x, y``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from ase import Atoms
from ase.lattice.cubic import Diamond, SimpleCubicFactory


class _PerovskiteFactory(SimpleCubicFactory):
    """ABO3 perovskite (Pm-3m) as a five-atom cubic basis."""

    atomic_basis = np.array(
        [[0.0, 0.0, 0.0], [0.5, 0.5, 0.5], [0.5, 0.5, 0.0], [0.5, 0.0, 0.5], [0.0, 0.5, 0.5]]
    )
    element_basis = (0, 1, 2, 2, 2)
    bravais_basis = atomic_basis


_Perovskite = _PerovskiteFactory()


@dataclass(frozen=True)
class ZoneAxisCrystal:
    """A material viewed down one zone axis.

    Parameters
    ----------
    material : str
        Chemical name, e.g. ``"Si"``.
    zone_axis : str
        Beam direction in Miller indices, e.g. ``"110"``.
    lattice_constant_a : float
        Cubic lattice constant in Angstrom (room-temperature experimental value).
    x_direction, y_direction : tuple of int
        Crystal directions along the scan x and y axes.
    """

    material: str
    zone_axis: str
    lattice_constant_a: float
    x_direction: tuple[int, int, int]
    y_direction: tuple[int, int, int]

    @property
    def z_direction(self) -> tuple[int, int, int]:
        """Crystal direction of the beam (right-handed with x and y)."""
        return tuple(int(v) for v in np.cross(self.x_direction, self.y_direction))  # type: ignore[return-value]

    def unit_cell(self) -> Atoms:
        """The orthorhombic zone-axis cell, unstrained, periodic in x, y, z."""
        directions = [list(self.x_direction), list(self.y_direction), list(self.z_direction)]
        if self.material == "Si":
            atoms = Diamond(
                directions=directions, symbol="Si", latticeconstant=self.lattice_constant_a
            )
        elif self.material == "SrTiO3":
            atoms = _Perovskite(
                directions=directions,
                symbol=("Sr", "Ti", "O"),
                latticeconstant=self.lattice_constant_a,
            )
        else:  # pragma: no cover - guarded by zone_axis_crystal
            raise ValueError(self.material)
        atoms.wrap()
        return atoms

    @property
    def cell_lengths_a(self) -> np.ndarray:
        """Lengths (Angstrom) of the zone-axis cell along x, y, z."""
        return np.asarray(self.unit_cell().cell.lengths())


CRYSTALS: dict[tuple[str, str], ZoneAxisCrystal] = {
    # x = [-110], y = [001], beam = [110]
    ("Si", "110"): ZoneAxisCrystal("Si", "110", 5.431, (-1, 1, 0), (0, 0, 1)),
    # x = [100], y = [010], beam = [001]
    ("SrTiO3", "001"): ZoneAxisCrystal("SrTiO3", "001", 3.905, (1, 0, 0), (0, 1, 0)),
}


def zone_axis_crystal(material: str, zone_axis: str) -> ZoneAxisCrystal:
    """Look up a supported material and zone axis.

    Raises
    ------
    ValueError
        For a combination that is not in :data:`CRYSTALS`.
    """
    try:
        return CRYSTALS[(material, zone_axis)]
    except KeyError:
        known = ", ".join(f"{m} [{z}]" for m, z in CRYSTALS)
        raise ValueError(
            f"unsupported material/zone axis {material} [{zone_axis}]; known: {known}"
        ) from None
