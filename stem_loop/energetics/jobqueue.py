"""Facility recipe: a Dask cluster of batch jobs (Slurm, PBS, LSF) via dask-jobqueue.

Each batch job starts ``workers_per_job`` Dask workers with one thread each, so a worker runs
one DFT job at a time; each GPAW calculation uses ``mpi_ranks x omp_threads`` cores, which
is what the job books per worker. Connect the loop to the cluster's scheduler::

    cluster = make_jobqueue_cluster(FacilitySettings(account="m1234", queue="regular"))
    cluster.scale(jobs=4)
    dispatcher = Dispatcher(DispatchSettings(executor=cluster.scheduler_address))

``cluster.job_script()`` shows the batch script without submitting anything.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any

SCHEDULERS = ("slurm", "pbs", "lsf")


@dataclass(frozen=True)
class FacilitySettings:
    """Batch-job shape of the DFT workers.

    Parameters
    ----------
    scheduler : str
        ``"slurm"``, ``"pbs"`` or ``"lsf"``.
    queue, account : str, optional
        Partition/queue and allocation to charge.
    walltime : str
        Job wall-clock limit, ``HH:MM:SS``.
    workers_per_job : int
        Dask workers (processes) per batch job; each runs one GPAW calculation at a time.
    omp_threads, mpi_ranks : int
        Per GPAW calculation (as in :class:`~stem_loop.energetics.ParallelSettings`).
    memory_per_worker_gb : float
        Memory booked per worker.
    prologue : tuple of str
        Shell lines run before the workers start (``module load``, ``source venv``).
    python : str, optional
        Interpreter on the compute nodes (default: this one).
    interface : str, optional
        Network interface the workers listen on (e.g. ``"ib0"``).
    extra_directives : tuple of str
        Extra scheduler directives (without the ``#SBATCH`` prefix, e.g. ``"--constraint=cpu"``).
    """

    scheduler: str = "slurm"
    queue: str | None = None
    account: str | None = None
    walltime: str = "01:00:00"
    workers_per_job: int = 4
    omp_threads: int = 1
    mpi_ranks: int = 1
    memory_per_worker_gb: float = 4.0
    prologue: tuple[str, ...] = ()
    python: str | None = None
    interface: str | None = None
    extra_directives: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.scheduler not in SCHEDULERS:
            raise ValueError(f"scheduler must be one of {SCHEDULERS}, not {self.scheduler!r}")
        if min(self.workers_per_job, self.omp_threads, self.mpi_ranks) < 1:
            raise ValueError("workers_per_job, omp_threads and mpi_ranks must be >= 1")

    @property
    def cores_per_job(self) -> int:
        """Cores booked per batch job."""
        return self.workers_per_job * self.omp_threads * self.mpi_ranks


def cluster_kwargs(settings: FacilitySettings) -> dict[str, Any]:
    """Keyword arguments of the dask-jobqueue cluster class for ``settings``."""
    threads = str(settings.omp_threads)
    kwargs: dict[str, Any] = {
        # One Dask thread per worker: Dask runs one GPAW job per worker at a time.
        "cores": settings.workers_per_job,
        "processes": settings.workers_per_job,
        "memory": f"{settings.memory_per_worker_gb * settings.workers_per_job:g}GB",
        "walltime": settings.walltime,
        "queue": settings.queue,
        "account": settings.account,
        "python": settings.python or sys.executable,
        "interface": settings.interface,
        "job_script_prologue": [
            f"export OMP_NUM_THREADS={threads}",
            f"export OPENBLAS_NUM_THREADS={threads}",
            f"export MKL_NUM_THREADS={threads}",
            *settings.prologue,
        ],
        "job_extra_directives": list(settings.extra_directives),
    }
    if settings.scheduler == "slurm":
        kwargs["job_cpu"] = settings.cores_per_job  # --cpus-per-task: all GPAW cores
    elif settings.scheduler == "pbs":
        kwargs["resource_spec"] = (
            f"select=1:ncpus={settings.cores_per_job}:mem="
            f"{settings.memory_per_worker_gb * settings.workers_per_job:g}GB"
        )
    else:  # lsf
        kwargs["ncpus"] = settings.cores_per_job
    if settings.scheduler == "lsf":
        kwargs["project"] = kwargs.pop("account")
    return kwargs


def make_jobqueue_cluster(settings: FacilitySettings, **overrides: Any):
    """Build (do not scale) the dask-jobqueue cluster for ``settings``.

    Parameters
    ----------
    settings : FacilitySettings
    **overrides
        Passed to the cluster class last (e.g. ``scheduler_options``).

    Returns
    -------
    dask_jobqueue.JobQueueCluster
        ``SLURMCluster``, ``PBSCluster`` or ``LSFCluster``; its scheduler runs here, no job
        is submitted until ``cluster.scale(...)``.
    """
    import dask_jobqueue

    cls = {
        "slurm": dask_jobqueue.SLURMCluster,
        "pbs": dask_jobqueue.PBSCluster,
        "lsf": dask_jobqueue.LSFCluster,
    }[settings.scheduler]
    return cls(**(cluster_kwargs(settings) | overrides))
