"""Cubic elasticity: stiffness tensors, rotations and the plane-stress (thin-foil) condition.

A TEM lamella is thin along the beam and its surfaces are free, so the stress components with
an index along the beam vanish (``sigma_zz = sigma_xz = sigma_yz = 0``, ``z`` = beam). Given
the measured in-plane strain, these three equations fix the three unknown out-of-plane strain
components through the stiffness tensor expressed in the scan frame.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class CubicElasticConstants:
    """Elastic constants of a cubic crystal in GPa (Voigt notation).

    Parameters
    ----------
    c11, c12, c44 : float
        Stiffness constants; ``c44`` is the relaxed-ion value (internal strain included).
    source : str
        Where the numbers come from.
    """

    c11: float
    c12: float
    c44: float
    source: str = ""

    def tensor(self) -> np.ndarray:
        """The stiffness tensor ``C_ijkl`` (3x3x3x3, GPa) in the cubic crystal axes."""
        c = np.zeros((3, 3, 3, 3))
        for i in range(3):
            for j in range(3):
                c[i, i, j, j] = self.c12
            c[i, i, i, i] = self.c11
        for i in range(3):
            for j in range(3):
                if i != j:
                    c[i, j, i, j] = c[i, j, j, i] = self.c44
        return c


def rotate_stiffness(c: np.ndarray, rotation: np.ndarray) -> np.ndarray:
    """Express a stiffness tensor in rotated axes.

    Parameters
    ----------
    c : ndarray (3, 3, 3, 3)
        Stiffness in the old axes.
    rotation : ndarray (3, 3)
        Rows are the new axes written in the old axes (orthonormal).

    Returns
    -------
    ndarray (3, 3, 3, 3)
        ``C'_ijkl = R_ia R_jb R_kc R_ld C_abcd``.
    """
    r = np.asarray(rotation, dtype=float)
    return np.einsum("ia,jb,kc,ld,abcd->ijkl", r, r, r, r, c)


def plane_stress_strain(in_plane: np.ndarray, stiffness: np.ndarray) -> np.ndarray:
    """Complete an in-plane strain to the full strain of a free thin foil.

    Parameters
    ----------
    in_plane : ndarray (2, 2)
        Symmetric strain ``[[exx, exy], [exy, eyy]]`` in the foil plane (tensor shear).
    stiffness : ndarray (3, 3, 3, 3)
        Stiffness in the same frame, ``z`` normal to the foil.

    Returns
    -------
    ndarray (3, 3)
        Symmetric strain whose stress has ``sigma_zz = sigma_xz = sigma_yz = 0``.
    """
    strain = np.zeros((3, 3))
    strain[:2, :2] = in_plane
    # Unknowns e_zz, e_xz, e_yz; unit strain fields for each (symmetric).
    units = []
    for i, j in ((2, 2), (0, 2), (1, 2)):
        u = np.zeros((3, 3))
        u[i, j] = u[j, i] = 1.0
        units.append(u)
    rows = ((2, 2), (0, 2), (1, 2))
    matrix = np.array([[np.einsum("kl,kl", stiffness[i, j], u) for u in units] for i, j in rows])
    rhs = -np.array([np.einsum("kl,kl", stiffness[i, j], strain) for i, j in rows])
    ezz, exz, eyz = np.linalg.solve(matrix, rhs)
    strain[2, 2] = ezz
    strain[0, 2] = strain[2, 0] = exz
    strain[1, 2] = strain[2, 1] = eyz
    return strain


def stress(strain: np.ndarray, stiffness: np.ndarray) -> np.ndarray:
    """Linear-elastic stress ``sigma_ij = C_ijkl e_kl`` (GPa)."""
    return np.einsum("ijkl,kl->ij", stiffness, strain)
