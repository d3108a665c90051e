"""DFT settings: one frozen dataclass per calculation, recorded with every result.

Convergence (Si, 2-atom cell, PBE, measured with GPAW 26.7; see ``docs/energetics.rst``): a
uniaxial 0.1 % strain costs about 0.01 meV/atom, so the energy differences must be
reproducible to a few µeV/atom. SCF criteria of 1e-8 eV/electron make the SCF noise
negligible; what remains is the jump of the plane-wave basis when the cell is strained (the
number of plane waves changes discontinuously): about 5 µeV/atom at 300 eV and 2 µeV/atom at
400 eV. k-points: Gamma-centred grids (even Monkhorst-Pack grids break the cubic symmetry of
the fcc cell and leave a shear stress on the reference). From 4x4x4 to 6x6x6 the relaxed
lattice constant moves from 5.487 to 5.477 Angstrom and the strain energies by about 2 %, so
production Si uses 400 eV and 6x6x6 (one energy: 16-35 s on one core of a loaded machine).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, replace
from typing import Any


@dataclass(frozen=True)
class GPAWSettings:
    """Plane-wave GPAW settings of one energy calculation.

    Parameters
    ----------
    ecut_ev : float
        Plane-wave cutoff (eV).
    kpts : tuple of int
        Gamma-centred k-point grid of the primitive cell. Gamma-centred grids keep the full
        cubic symmetry; even Monkhorst-Pack grids of the fcc primitive cell do not, which
        leaves a spurious shear stress on the reference and a linear term in the energy.
    xc : str
        Exchange-correlation functional.
    smearing_ev : float
        Fermi-Dirac width (eV); small, the materials are insulators.
    energy_tol_ev : float
        SCF energy criterion, eV per valence electron (GPAW ``convergence['energy']``).
    density_tol : float
        SCF density criterion (electrons per valence electron).
    eigenstates_tol : float
        SCF eigenstate criterion (eV^2 per valence electron).
    maxiter : int
        Maximum SCF iterations before :class:`gpaw.KohnShamConvergenceError`.
    mixer_beta : float or None
        Density-mixing weight; ``None`` is GPAW's default for the system.
    mixer_history : int or None
        Number of old densities in the Pulay mixer; ``None`` is GPAW's default.
    """

    ecut_ev: float = 400.0
    kpts: tuple[int, int, int] = (6, 6, 6)
    xc: str = "PBE"
    smearing_ev: float = 0.01
    energy_tol_ev: float = 1e-8
    density_tol: float = 1e-7
    eigenstates_tol: float = 1e-12
    maxiter: int = 300
    mixer_beta: float | None = None
    mixer_history: int | None = None

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready record of the settings (what every result carries)."""
        record = asdict(self)
        record["kpts"] = list(self.kpts)
        record["code"] = "GPAW"
        record["mode"] = "pw"
        record["kpts_gamma_centred"] = True
        return record

    def physics_key(self) -> str:
        """Hash of the settings that change the energy (not the SCF numerics).

        Two results with the same key are comparable to the meV level: ``maxiter`` and the
        mixer change how the SCF gets there, not where it ends.
        """
        physical = {
            "ecut_ev": self.ecut_ev,
            "kpts": list(self.kpts),
            "gamma": True,
            "xc": self.xc,
            "smearing_ev": self.smearing_ev,
        }
        return hashlib.sha256(json.dumps(physical, sort_keys=True).encode()).hexdigest()[:16]

    def calculator_parameters(self) -> dict[str, Any]:
        """Keyword arguments of :class:`gpaw.GPAW` (besides ``txt`` and ``parallel``)."""
        parameters: dict[str, Any] = {
            "mode": {"name": "pw", "ecut": self.ecut_ev},
            "kpts": {"size": list(self.kpts), "gamma": True},
            "xc": self.xc,
            "occupations": {"name": "fermi-dirac", "width": self.smearing_ev},
            "convergence": {
                "energy": self.energy_tol_ev,
                "density": self.density_tol,
                "eigenstates": self.eigenstates_tol,
            },
            "maxiter": self.maxiter,
        }
        if self.mixer_beta is not None or self.mixer_history is not None:
            mixer: dict[str, Any] = {}
            if self.mixer_beta is not None:
                mixer["beta"] = self.mixer_beta
            if self.mixer_history is not None:
                mixer["nmaxold"] = self.mixer_history
            parameters["mixer"] = mixer
        return parameters

    def safer(self, attempt: int) -> GPAWSettings:
        """Settings for retry number ``attempt`` (1, 2, ...): same physics, gentler SCF.

        Each retry damps the density mixing more, keeps a longer history and allows more
        iterations; the cutoff, k-points, functional and smearing never change, so a retried
        energy is comparable with the others.
        """
        if attempt < 1:
            return self
        return replace(
            self,
            maxiter=max(self.maxiter, 300) * (1 + attempt),
            mixer_beta=0.05 / 2 ** (attempt - 1),
            mixer_history=5 + 3 * attempt,
        )


@dataclass(frozen=True)
class ParallelSettings:
    """How one GPAW calculation uses a worker's cores.

    Parameters
    ----------
    omp_threads : int
        ``OMP_NUM_THREADS`` (and the BLAS thread counts) of the GPAW process.
    mpi_ranks : int
        MPI ranks per calculation; above 1 the calculation is started through ``mpi_launcher``
        (needs a GPAW built with MPI).
    mpi_launcher : tuple of str
        Command that starts ``mpi_ranks`` ranks; ``{ranks}`` is replaced.
    isolated : bool
        Run GPAW in a child process of the worker (default): a timeout kills it cleanly, a
        crash cannot take the worker down, and MPI launchers work. ``False`` runs in the
        worker's own process (no timeout enforcement; for debugging).
    gpaw_parallel : dict
        GPAW's own ``parallel`` keyword (e.g. ``{"kpt": 2}``).
    """

    omp_threads: int = 1
    mpi_ranks: int = 1
    mpi_launcher: tuple[str, ...] = ("mpiexec", "-n", "{ranks}")
    isolated: bool = True
    gpaw_parallel: dict[str, Any] = field(default_factory=dict)

    def environment(self) -> dict[str, str]:
        """Environment variables that pin the thread counts."""
        n = str(self.omp_threads)
        return {
            "OMP_NUM_THREADS": n,
            "OPENBLAS_NUM_THREADS": n,
            "MKL_NUM_THREADS": n,
        }


PRODUCTION: dict[str, GPAWSettings] = {
    "Si": GPAWSettings(ecut_ev=400.0, kpts=(6, 6, 6)),
    # 5-atom perovskite with Sr 4s4p and Ti 3s3p semicore states and O: at 500 eV the basis
    # jumps by meV/atom as the cell changes (E(a) not convex, B = 367 GPa); at 800 eV E(a) is
    # smooth, a = 3.944 A and B = 170 GPa; 6x6x6 halves the +-0.1 % asymmetry of 4x4x4
    # (docs/energetics.rst).
    "SrTiO3": GPAWSettings(ecut_ev=800.0, kpts=(6, 6, 6)),
}

# Small settings for tests and quick looks: same code path, seconds per energy.
QUICK: dict[str, GPAWSettings] = {
    "Si": GPAWSettings(ecut_ev=250.0, kpts=(3, 3, 3), energy_tol_ev=1e-7, density_tol=1e-6),
    # No cheap SrTiO3 preset: at 350-450 eV or 2-3 k-points per axis E(a) is not even convex
    # (O and Ti semicore need the cutoff), so "quick" only loosens the SCF.
    "SrTiO3": GPAWSettings(ecut_ev=500.0, kpts=(4, 4, 4), energy_tol_ev=1e-7, density_tol=1e-6),
}

PRESETS: dict[str, dict[str, GPAWSettings]] = {"production": PRODUCTION, "quick": QUICK}


def settings_for(material: str, preset: str = "production") -> GPAWSettings:
    """The named preset's settings for ``material``.

    Raises
    ------
    ValueError
        For an unknown preset or a material without settings.
    """
    try:
        table = PRESETS[preset]
    except KeyError:
        known = ", ".join(PRESETS)
        raise ValueError(f"unknown settings preset {preset!r}; known: {known}") from None
    try:
        return table[material]
    except KeyError:
        raise ValueError(f"no GPAW settings for {material!r}; known: {', '.join(table)}") from None
