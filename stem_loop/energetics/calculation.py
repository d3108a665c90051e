"""One DFT job: a structure in, an energy per atom out, with retries and a hard timeout.

:func:`run_energy_job` is what an executor runs on a worker. It never raises for a failed
calculation and never hangs: each attempt runs GPAW in a child process that is killed at the
timeout; SCF non-convergence, a GPAW error or a crashed child is retried with safer SCF
settings (:meth:`GPAWSettings.safer`), and every attempt is reported with its reason.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ase import Atoms

from .settings import GPAWSettings, ParallelSettings


@dataclass(frozen=True)
class EnergyJob:
    """Everything a worker needs for one energy (picklable, no open resources).

    Parameters
    ----------
    atoms : ase.Atoms
        The structure (periodic).
    settings : GPAWSettings
        DFT settings of the first attempt.
    parallel : ParallelSettings
        Threads, MPI ranks and isolation of the GPAW process.
    timeout_s : float
        Wall-clock limit of each attempt; the GPAW process is killed when it is reached.
    retries : int
        Further attempts with safer SCF settings after a failed one.
    label : str
        Free text carried into the result (e.g. the descriptors).
    """

    atoms: Atoms
    settings: GPAWSettings
    parallel: ParallelSettings = field(default_factory=ParallelSettings)
    timeout_s: float = 600.0
    retries: int = 2
    label: str = ""


@dataclass
class EnergyResult:
    """Outcome of one :class:`EnergyJob`.

    Attributes
    ----------
    energy_ev_per_atom : float or None
        Total energy per atom (eV), ``None`` when every attempt failed.
    natoms : int
    wall_s : float
        Wall time of all attempts together.
    settings : dict
        :meth:`GPAWSettings.as_dict` of the attempt that produced the energy (or the last).
    attempts : list of dict
        One record per attempt: ``status`` (``ok``, ``scf_not_converged``, ``timeout``,
        ``crashed``, ``error``, ``misconfigured``), ``reason``, ``wall_s``, ``maxiter``,
        ``mixer_beta``, ``iterations``, ``max_force_ev_per_a`` (the largest force on an atom:
        small when the internal-strain model of the structure is adequate), and the
        ``mpi_ranks`` and ``omp_threads`` GPAW ran with (isolated attempts).
    host, pid : str, int
        Where the job ran (the worker process).
    label : str
    """

    energy_ev_per_atom: float | None
    natoms: int
    wall_s: float
    settings: dict[str, Any]
    attempts: list[dict[str, Any]]
    host: str
    pid: int
    label: str = ""

    @property
    def ok(self) -> bool:
        """Whether an energy was obtained."""
        return self.energy_ev_per_atom is not None

    @property
    def max_force_ev_per_a(self) -> float | None:
        """Largest atomic force of the successful attempt (eV/Angstrom)."""
        return self.attempts[-1].get("max_force_ev_per_a") if self.ok else None

    @property
    def reason(self) -> str | None:
        """Why the job failed (the last attempt's reason), or ``None`` on success."""
        return None if self.ok else self.attempts[-1]["reason"]

    @property
    def retried_because(self) -> list[str]:
        """Reasons of the failed attempts before the final one."""
        return [a["reason"] for a in self.attempts if a["status"] != "ok"]

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready record."""
        return {
            "energy_ev_per_atom": self.energy_ev_per_atom,
            "natoms": self.natoms,
            "wall_s": self.wall_s,
            "calculator": self.settings,
            "attempts": self.attempts,
            "host": self.host,
            "pid": self.pid,
            "label": self.label,
            "ok": self.ok,
            "reason": self.reason,
            "max_force_ev_per_a": self.max_force_ev_per_a,
        }


def structure_record(atoms: Atoms) -> dict[str, Any]:
    """JSON form of a periodic structure (numbers, positions, cell, pbc)."""
    return {
        "numbers": atoms.numbers.tolist(),
        "positions": atoms.positions.tolist(),
        "cell": atoms.cell[:].tolist(),
        "pbc": atoms.pbc.tolist(),
    }


def _signal_name(code: int) -> str:
    try:
        return signal.Signals(code).name
    except ValueError:
        return f"signal {code}"


def _attempt_isolated(
    payload: dict[str, Any], parallel: ParallelSettings, timeout_s: float
) -> dict[str, Any]:
    command = [sys.executable, "-m", "stem_loop.energetics._gpaw_process"]
    if parallel.mpi_ranks > 1:
        launcher = [part.format(ranks=parallel.mpi_ranks) for part in parallel.mpi_launcher]
        command = launcher + command
    env = os.environ | parallel.environment()
    with tempfile.TemporaryDirectory(prefix="stem-loop-gpaw-") as tmp:
        source, target = Path(tmp, "job.json"), Path(tmp, "out.json")
        source.write_text(json.dumps(payload))
        try:
            done = subprocess.run(
                [*command, str(source), str(target)],
                env=env,
                cwd=tmp,
                capture_output=True,
                text=True,
                timeout=timeout_s,
            )
        except subprocess.TimeoutExpired:
            return {"status": "timeout", "reason": f"GPAW timed out after {timeout_s:g} s"}
        if done.returncode < 0:
            return {
                "status": "crashed",
                "reason": f"GPAW process killed by {_signal_name(-done.returncode)}",
            }
        if done.returncode != 0 or not target.exists():
            tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
            return {
                "status": "crashed",
                "reason": f"GPAW process exited with status {done.returncode}: {tail[0]}",
            }
        return json.loads(target.read_text())


def _attempt_inline(payload: dict[str, Any]) -> dict[str, Any]:
    from ._gpaw_process import calculate

    return calculate(payload)


def run_energy_job(job: EnergyJob) -> EnergyResult:
    """Compute the energy of ``job.atoms``; retry failures with safer SCF settings.

    Parameters
    ----------
    job : EnergyJob

    Returns
    -------
    EnergyResult
        Successful or not; failures carry the reason of every attempt.
    """
    start = time.perf_counter()
    attempts: list[dict[str, Any]] = []
    energy = None
    settings = job.settings
    for attempt in range(job.retries + 1):
        settings = job.settings.safer(attempt)
        payload = {
            "structure": structure_record(job.atoms),
            "parameters": settings.calculator_parameters(),
            "parallel": job.parallel.gpaw_parallel,
        }
        t0 = time.perf_counter()
        if job.parallel.isolated:
            payload["mpi_ranks"] = job.parallel.mpi_ranks
            outcome = _attempt_isolated(payload, job.parallel, job.timeout_s)
        else:
            outcome = _attempt_inline(payload)
        record = {
            "attempt": attempt,
            "status": outcome["status"],
            "reason": outcome.get("reason"),
            "wall_s": time.perf_counter() - t0,
            "maxiter": settings.maxiter,
            "mixer_beta": settings.mixer_beta,
            "iterations": outcome.get("iterations"),
            "max_force_ev_per_a": outcome.get("max_force_ev_per_a"),
            "mpi_ranks": outcome.get("mpi_ranks"),
            "omp_threads": outcome.get("omp_threads"),
        }
        attempts.append(record)
        if outcome["status"] == "ok":
            energy = outcome["energy_ev"] / len(job.atoms)
            break
        if outcome["status"] in ("timeout", "misconfigured"):
            break  # Safer SCF settings cannot help: report rather than burn the budget.
    return EnergyResult(
        energy_ev_per_atom=energy,
        natoms=len(job.atoms),
        wall_s=time.perf_counter() - start,
        settings=settings.as_dict(),
        attempts=attempts,
        host=socket.gethostname(),
        pid=os.getpid(),
        label=job.label,
    )
