"""The unstrained reference: the lattice constant relaxed with the same DFT settings, cached.

Strain is measured from the reference lattice, so the reference must be the minimum of the
very energy surface the strained structures are computed on (the experimental lattice
constant is not the PBE one: Si relaxes from 5.431 to about 5.47 Angstrom). The relaxation
fits a Birch-Murnaghan equation of state to energies on a grid of lattice constants
(recentred until the minimum is inside), refits on a grid five times narrower, makes the final
fit on all points within the first grid's span, then computes the energy at the minimum. The
result is cached on disk keyed by material, structure-builder version and the physical
settings, so it is computed once per machine.
"""

from __future__ import annotations

import json
import os
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .dispatch import Dispatcher
from .materials import MaterialModel, get_material
from .settings import GPAWSettings
from .structures import build_structure

BUILDER_VERSION = 2
"""Bumped when :func:`build_structure` changes what a reference means (invalidates caches)."""

CACHE_ENV = "STEM_LOOP_CACHE"


class ReferenceFailedError(RuntimeError):
    """The reference could not be computed (a DFT job failed); the message says why."""


@dataclass(frozen=True)
class Reference:
    """A relaxed, unstrained reference crystal.

    Attributes
    ----------
    material : str
    lattice_constant_a : float
        Relaxed cubic lattice constant (Angstrom).
    energy_ev_per_atom : float
        DFT energy per atom at the relaxed lattice constant.
    bulk_modulus_gpa : float
        From the equation-of-state fit (a consistency check against experiment).
    settings : dict
        :meth:`GPAWSettings.as_dict` of the calculations.
    eos_lattice_a, eos_energy_ev_per_atom : list of float
        The points of the final fit.
    wall_s : float
        Wall time it took to compute (0 when read from the cache is not implied).
    """

    material: str
    lattice_constant_a: float
    energy_ev_per_atom: float
    bulk_modulus_gpa: float
    settings: dict[str, Any]
    eos_lattice_a: list[float]
    eos_energy_ev_per_atom: list[float]
    wall_s: float

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready record."""
        return asdict(self)


def cache_dir() -> Path:
    """``$STEM_LOOP_CACHE/energetics`` or ``~/.cache/stem-loop/energetics``."""
    root = Path(os.environ.get(CACHE_ENV, Path.home() / ".cache" / "stem-loop"))
    return root / "energetics"


def cache_path(material: str, settings: GPAWSettings) -> Path:
    """Where the reference for ``material`` and ``settings`` is cached."""
    name = f"reference-{material}-v{BUILDER_VERSION}-{settings.physics_key()}.json"
    return cache_dir() / name


def _cell_volume_per_a3(model: MaterialModel) -> float:
    return abs(np.linalg.det(model.primitive_cell(1.0).cell[:]))


def _energies(
    model: MaterialModel, lattice: np.ndarray, settings: GPAWSettings, dispatcher: Dispatcher
) -> np.ndarray:
    zero = {"exx": 0.0, "eyy": 0.0, "exy": 0.0}
    futures = [
        dispatcher.submit(
            dispatcher.job(
                build_structure(zero, model, lattice_constant_a=a),
                settings,
                label=f"{model.name} reference a={a:.5f}",
            )
        )
        for a in lattice
    ]
    energies = []
    for a, future in zip(lattice, futures, strict=True):
        result = future.result()
        if not result.ok:
            raise ReferenceFailedError(
                f"reference {model.name} at a={a:.4f} A failed: {result.reason}"
            )
        energies.append(result.energy_ev_per_atom)
    return np.array(energies)


def fit_lattice_constant(
    model: MaterialModel, lattice: np.ndarray, energies: np.ndarray
) -> tuple[float, float]:
    """Birch-Murnaghan fit of ``E(a)``: the minimum's lattice constant and the bulk modulus.

    Returns
    -------
    a0 : float
        Angstrom.
    bulk_modulus_gpa : float
    """
    from ase.eos import EquationOfState
    from ase.units import GPa

    unit_volume = _cell_volume_per_a3(model)
    natoms = len(model.symbols)
    volumes = unit_volume * np.asarray(lattice) ** 3
    eos = EquationOfState(volumes, np.asarray(energies) * natoms, eos="birchmurnaghan")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # Minimum off the grid: caller recentres.
        v0, _, b = eos.fit()
    return float((v0 / unit_volume) ** (1 / 3)), float(b / GPa)


def relax_reference(
    material: str | MaterialModel,
    settings: GPAWSettings,
    dispatcher: Dispatcher,
    *,
    span: float = 0.015,
    points: int = 5,
    use_cache: bool = True,
) -> Reference:
    """Relax the reference lattice constant (or read it from the cache).

    Parameters
    ----------
    material : str or MaterialModel
    settings : GPAWSettings
        The settings every strained structure will use.
    dispatcher : Dispatcher
        Runs the DFT jobs (in parallel where it has workers).
    span : float
        Relative half-width of the first lattice-constant grid, centred on the experimental
        value plus 1 % (PBE overestimates lattice constants). The grid is recentred until
        the fitted minimum lies inside it, then narrowed to a fifth for the final fit.
    points : int
        Energies per grid.
    use_cache : bool
        Read and write the on-disk cache.

    Returns
    -------
    Reference

    Raises
    ------
    ReferenceFailedError
        When a DFT job of the relaxation failed after its retries.
    """
    model = get_material(material)
    path = cache_path(model.name, settings)
    if use_cache and path.exists():
        return Reference(**json.loads(path.read_text()))
    start = time.perf_counter()
    centre, width = model.nominal_lattice_a * 1.01, span
    seen_a: list[float] = []
    seen_e: list[float] = []
    for _ in range(8):
        lattice = centre * (1 + np.linspace(-width, width, points))
        energies = _energies(model, lattice, settings, dispatcher)
        seen_a += lattice.tolist()
        seen_e += energies.tolist()
        centre, bulk_modulus = fit_lattice_constant(model, lattice, energies)
        if not (np.isfinite(centre) and bulk_modulus > 0):
            raise ReferenceFailedError(
                f"E(a) of {model.name} has no minimum near a = {lattice[points // 2]:.4f} A "
                f"(fitted B = {bulk_modulus:.0f} GPa): the DFT settings are too coarse "
                f"({settings.ecut_ev:g} eV, k {settings.kpts})"
            )
        if not lattice[1] <= centre <= lattice[-2]:
            continue  # The minimum is near or beyond the edge: recentre, same width.
        if width <= span / 5:
            break
        width = span / 5
    else:
        raise ReferenceFailedError(
            f"no energy minimum found for {model.name} near a = {centre:.4f} A"
        )
    # Final fit on every point within the first grid's span of the minimum: the narrow grid
    # pins the minimum, the wide one the curvature (bulk modulus) against basis-set noise.
    near = np.abs(np.array(seen_a) / centre - 1) <= span * 1.001
    lattice, energies = np.array(seen_a)[near], np.array(seen_e)[near]
    centre, bulk_modulus = fit_lattice_constant(model, lattice, energies)
    (energy,) = _energies(model, np.array([centre]), settings, dispatcher)
    reference = Reference(
        material=model.name,
        lattice_constant_a=centre,
        energy_ev_per_atom=float(energy),
        bulk_modulus_gpa=bulk_modulus,
        settings=settings.as_dict(),
        eos_lattice_a=lattice.tolist(),
        eos_energy_ev_per_atom=energies.tolist(),
        wall_s=time.perf_counter() - start,
    )
    if use_cache:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(reference.as_dict(), indent=1))
        tmp.replace(path)
    return reference
