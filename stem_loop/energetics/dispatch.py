"""Executors for DFT jobs: a process pool, a Dask ``LocalCluster`` or an existing scheduler.

Jobs go through the standard :class:`concurrent.futures.Executor` interface, so anything that
implements it (Dask's ``Client.get_executor()``, Parsl, Globus Compute) can run them.
:class:`Dispatcher` adds what the loop needs on top: jobs lost with their worker (a killed
process, a broken pool, a lost Dask worker) are submitted again, up to a configurable number
of times, and a broken local process pool is replaced.
"""

from __future__ import annotations

import logging
import multiprocessing
import threading
from collections.abc import Callable
from concurrent.futures import CancelledError, Executor, Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from typing import Any

from .calculation import EnergyJob, EnergyResult, run_energy_job
from .settings import ParallelSettings

log = logging.getLogger(__name__)

EXECUTOR_KINDS = ("process", "dask")


@dataclass(frozen=True)
class DispatchSettings:
    """Where and how DFT jobs run.

    Parameters
    ----------
    executor : str
        ``"process"`` (a local process pool), ``"dask"`` (a Dask ``LocalCluster`` with one
        process per worker) or the address of an existing Dask scheduler (``tcp://…``).
    workers : int
        Local worker processes (``process`` and ``dask``); each runs one job at a time.
    resubmits : int
        How often a job whose worker was lost is submitted again.
    timeout_s : float
        Wall-clock limit of one GPAW attempt (the GPAW process is killed then).
    retries : int
        Attempts with safer SCF settings after a failed SCF (inside the job).
    parallel : ParallelSettings
        Threads and MPI ranks of each GPAW process.
    """

    executor: str = "process"
    workers: int = 2
    resubmits: int = 2
    timeout_s: float = 600.0
    retries: int = 2
    parallel: ParallelSettings = field(default_factory=ParallelSettings)

    def __post_init__(self) -> None:
        check_executor(self.executor)
        if self.workers < 1:
            raise ValueError("workers must be at least 1")
        if self.timeout_s <= 0:
            raise ValueError("timeout_s must be positive")


def check_executor(spec: str) -> str:
    """Validate an executor specification; return it.

    Raises
    ------
    ValueError
        For anything but ``process``, ``dask`` or a ``tcp://``/``tls://``/``ws://`` address.
    """
    if spec in EXECUTOR_KINDS or spec.split("://", 1)[0] in ("tcp", "tls", "ws", "wss"):
        if "://" in spec and not spec.split("://", 1)[1]:
            raise ValueError(f"executor address {spec!r} has no host")
        return spec
    raise ValueError(
        f"unknown executor {spec!r}: use 'process', 'dask' or a scheduler address tcp://HOST:PORT"
    )


class _Backend:
    """An executor plus what must be closed with it, and how to rebuild a broken one."""

    def __init__(self, settings: DispatchSettings) -> None:
        self.settings = settings
        self.client: Any = None
        self.cluster: Any = None
        self.executor = self._start()

    def _start(self) -> Executor:
        s = self.settings
        if s.executor == "process":
            return ProcessPoolExecutor(
                max_workers=s.workers, mp_context=multiprocessing.get_context("spawn")
            )
        from distributed import Client, LocalCluster

        if s.executor == "dask":
            self.cluster = LocalCluster(
                n_workers=s.workers,
                threads_per_worker=1,
                processes=True,
                dashboard_address=None,
                silence_logs=logging.ERROR,
            )
            self.client = Client(self.cluster)
        else:
            self.client = Client(s.executor, timeout="20s")
        # The scheduler itself reruns tasks of lost workers; ``retries`` also covers errors.
        return self.client.get_executor(pure=False, retries=s.resubmits)

    @property
    def description(self) -> str:
        if self.client is None:
            return f"local process pool ({self.settings.workers} workers)"
        where = "Dask LocalCluster" if self.cluster is not None else "Dask scheduler"
        return f"{where} at {self.client.scheduler.address}"

    def rebuild(self) -> bool:
        """Replace a broken local pool; ``False`` when this backend cannot rebuild."""
        if self.settings.executor != "process":
            return False
        self.executor.shutdown(wait=False, cancel_futures=True)
        self.executor = self._start()
        return True

    def close(self) -> None:
        if self.client is None:
            self.executor.shutdown(wait=False, cancel_futures=True)
        else:
            self.executor.shutdown(wait=False)  # ClientExecutor: cancels what is pending
        quiet = logging.getLogger("distributed")
        level = quiet.level
        quiet.setLevel(logging.ERROR)  # The shutdown chatter of the scheduler we own.
        try:
            if self.client is not None:
                self.client.close()
            if self.cluster is not None:
                self.cluster.close()
        finally:
            quiet.setLevel(level)


_LOST = (BrokenProcessPool, CancelledError, EOFError, ConnectionError)


def _is_lost_worker(error: BaseException) -> bool:
    """Whether ``error`` says the worker went away (rather than the job being wrong)."""
    if isinstance(error, _LOST):
        return True
    return type(error).__name__ in ("KilledWorker", "CommClosedError", "FutureCancelledError")


class Dispatcher:
    """Submit :class:`EnergyJob` s to an executor; resubmit jobs whose worker was lost.

    Parameters
    ----------
    settings : DispatchSettings, optional
        Used to start an executor (closed with the dispatcher) unless ``executor`` is given.
    executor : concurrent.futures.Executor, optional
        An executor owned by the caller (any implementation).
    function : callable, optional
        What runs on the worker; :func:`run_energy_job` unless given.

    Examples
    --------
    >>> with Dispatcher(DispatchSettings(executor="dask", workers=2)) as dispatcher:
    ...     future = dispatcher.submit(job)            # doctest: +SKIP
    ...     result = future.result()                   # doctest: +SKIP
    """

    def __init__(
        self,
        settings: DispatchSettings | None = None,
        *,
        executor: Executor | None = None,
        function: Callable[[EnergyJob], EnergyResult] = run_energy_job,
    ) -> None:
        self.settings = settings or DispatchSettings()
        self._backend = None if executor is not None else _Backend(self.settings)
        self._executor = executor
        self._function = function
        self._lock = threading.Lock()
        self.submitted = 0
        self.resubmitted = 0

    @property
    def executor(self) -> Executor:
        """The executor jobs go to now."""
        return self._backend.executor if self._backend is not None else self._executor  # type: ignore[return-value]

    @property
    def description(self) -> str:
        """Where the jobs run, in words."""
        if self._backend is not None:
            return self._backend.description
        return type(self._executor).__name__

    def job(self, atoms, settings, *, label: str = "") -> EnergyJob:
        """An :class:`EnergyJob` with this dispatcher's timeout, retries and parallel settings."""
        return EnergyJob(
            atoms,
            settings,
            parallel=self.settings.parallel,
            timeout_s=self.settings.timeout_s,
            retries=self.settings.retries,
            label=label,
        )

    def submit(self, job: EnergyJob) -> Future:
        """Submit one job; the returned future resolves to its :class:`EnergyResult`."""
        outer: Future = Future()
        outer.set_running_or_notify_cancel()
        with self._lock:
            self.submitted += 1
        self._submit(job, outer, self.settings.resubmits)
        return outer

    def _submit(self, job: EnergyJob, outer: Future, left: int) -> None:
        try:
            inner = self.executor.submit(self._function, job)
        except Exception as err:  # noqa: BLE001 - e.g. a pool that broke meanwhile
            self._failed(job, outer, left, err)
            return
        inner.add_done_callback(lambda f: self._done(job, outer, left, f))

    def _done(self, job: EnergyJob, outer: Future, left: int, inner: Future) -> None:
        try:
            result = inner.result()
        except BaseException as err:  # noqa: BLE001 - decide below whether to resubmit
            self._failed(job, outer, left, err)
            return
        outer.set_result(result)

    def _failed(self, job: EnergyJob, outer: Future, left: int, error: BaseException) -> None:
        if left > 0 and _is_lost_worker(error):
            log.warning("DFT job %s lost its worker (%r); submitting it again", job.label, error)
            with self._lock:
                self.resubmitted += 1
                if isinstance(error, BrokenProcessPool) and self._backend is not None:
                    if getattr(self.executor, "_broken", False):
                        self._backend.rebuild()
            self._submit(job, outer, left - 1)
            return
        outer.set_exception(error)

    def close(self) -> None:
        """Stop the executor this dispatcher started (not a caller's)."""
        if self._backend is not None:
            self._backend.close()

    def __enter__(self) -> Dispatcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
