"""Child process of one GPAW calculation: ``python -m stem_loop.energetics._gpaw_process IN OUT``.

``IN`` is a JSON file with the structure, GPAW parameters and GPAW's ``parallel`` keyword;
rank 0 writes the outcome to ``OUT`` as JSON: ``status`` (``ok``, ``scf_not_converged``,
``error``, ``misconfigured``), ``energy_ev``, ``max_force_ev_per_a``, ``iterations``,
``reason``, and the ``mpi_ranks`` and ``omp_threads`` it ran with. Run under an MPI launcher
every rank executes this; GPAW distributes the work. When the job asks for ``mpi_ranks`` and
GPAW's MPI world has another size (a GPAW built without MPI, or a launcher that started one
rank), nothing is computed: N serial copies of the same calculation would only waste cores.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from typing import Any


def _die_with_parent() -> None:
    """Ask Linux to kill this process when the worker that started it dies."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:  # pragma: no cover - exotic libc
        pass


def calculate(job: dict[str, Any]) -> dict[str, Any]:
    """Run GPAW on the structure in ``job``; never raises for calculation failures."""
    from ase import Atoms
    from gpaw import GPAW, KohnShamConvergenceError
    from gpaw.mpi import world

    ranks = int(job.get("mpi_ranks", world.size))
    if ranks != world.size:
        return {
            "status": "misconfigured",
            "reason": f"asked for {ranks} MPI ranks but GPAW's MPI world has {world.size}: "
            "GPAW is not built with MPI (see `gpaw info`) or the launcher started "
            "a different number of ranks",
        }
    s = job["structure"]
    atoms = Atoms(numbers=s["numbers"], positions=s["positions"], cell=s["cell"], pbc=s["pbc"])
    parameters = dict(job["parameters"])
    if job.get("parallel"):
        parameters["parallel"] = job["parallel"]
    try:
        atoms.calc = GPAW(txt=None, **parameters)
        energy = atoms.get_potential_energy()
        forces = atoms.get_forces()
    except KohnShamConvergenceError as err:
        detail = str(err) or "maxiter reached"
        return {
            "status": "scf_not_converged",
            "reason": f"SCF not converged in {parameters.get('maxiter')} iterations ({detail})",
        }
    except Exception as err:  # noqa: BLE001 - report any GPAW failure with its reason
        return {"status": "error", "reason": f"{type(err).__name__}: {err}"}
    iterations = None
    try:
        iterations = int(atoms.calc.get_number_of_iterations())
    except Exception:  # noqa: BLE001 - optional diagnostics
        pass
    return {
        "status": "ok",
        "energy_ev": float(energy),
        "max_force_ev_per_a": float(abs(forces).max()),
        "iterations": iterations,
    }


def main(argv: list[str]) -> int:
    """Entry point: read the job, calculate, write the outcome (rank 0)."""
    _die_with_parent()
    source, target = argv
    with open(source) as handle:
        job = json.load(handle)
    outcome = calculate(job)
    from gpaw.mpi import world

    if world.rank == 0:
        outcome["pid"] = os.getpid()
        outcome["mpi_ranks"] = world.size
        outcome["omp_threads"] = os.environ.get("OMP_NUM_THREADS")
        with open(target, "w") as handle:
            json.dump(outcome, handle)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
