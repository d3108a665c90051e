"""First-principles energetics: descriptors -> strained crystal -> GPAW, on any executor.

``build_structure`` (pure) turns descriptors into an ``ase.Atoms``; ``relax_reference``
relaxes and caches the unstrained reference; ``run_energy_job`` is the worker-side job with
retries and a timeout; ``Dispatcher`` sends jobs to a process pool, a Dask cluster or an
existing scheduler; ``EnergyService`` puts a cache (in memory and, through ``ResultStore``, on
disk between runs) and a GP surrogate (``StrainEnergyGP``) in front so DFT runs only where it
teaches something.
"""

from .calculation import EnergyJob, EnergyResult, run_energy_job
from .dispatch import Dispatcher, DispatchSettings, check_executor
from .elastic import CubicElasticConstants, plane_stress_strain, rotate_stiffness
from .materials import MATERIALS, MaterialModel, get_material
from .reference import Reference, ReferenceFailedError, relax_reference
from .service import EnergyEstimate, EnergyService
from .settings import PRESETS, GPAWSettings, ParallelSettings, settings_for
from .store import ResultStore, StoredEnergy
from .structures import (
    MAX_STRAIN,
    STRAIN_NAMES,
    build_structure,
    crystal_strain,
    scan_frame_strain,
    validate_strain,
)
from .surrogate import KernelParameters, StrainEnergyGP

__all__ = [
    "MATERIALS",
    "MAX_STRAIN",
    "PRESETS",
    "STRAIN_NAMES",
    "CubicElasticConstants",
    "DispatchSettings",
    "Dispatcher",
    "EnergyEstimate",
    "EnergyJob",
    "EnergyResult",
    "EnergyService",
    "GPAWSettings",
    "KernelParameters",
    "MaterialModel",
    "ParallelSettings",
    "Reference",
    "ReferenceFailedError",
    "ResultStore",
    "StoredEnergy",
    "StrainEnergyGP",
    "build_structure",
    "check_executor",
    "crystal_strain",
    "get_material",
    "plane_stress_strain",
    "relax_reference",
    "rotate_stiffness",
    "run_energy_job",
    "scan_frame_strain",
    "settings_for",
    "validate_strain",
]
