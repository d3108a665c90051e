"""Real executors: a Dask LocalCluster and a process pool running GPAW; lost workers."""

from __future__ import annotations

import os
import signal
import time

import pytest

from stem_loop.energetics import (
    Dispatcher,
    DispatchSettings,
    build_structure,
    check_executor,
)


def _atoms(exx=0.005):
    return build_structure({"exx": exx, "eyy": 0.0, "exy": 0.0}, "Si", lattice_constant_a=5.47)


@pytest.fixture(scope="module")
def dask_dispatcher(energetics_cache):
    with Dispatcher(DispatchSettings(executor="dask", workers=2, timeout_s=120)) as d:
        yield d


def _wait_until_processing(client, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        busy = {w: keys for w, keys in client.processing().items() if keys}
        if busy:
            return busy
        time.sleep(0.05)
    raise AssertionError("no task started on the Dask cluster")


def test_dask_local_cluster_runs_gpaw_jobs(dask_dispatcher, quick_settings):
    assert "Dask LocalCluster" in dask_dispatcher.description
    futures = [
        dask_dispatcher.submit(dask_dispatcher.job(_atoms(e), quick_settings)) for e in (0, 0.01)
    ]
    results = [f.result(timeout=120) for f in futures]
    assert all(r.ok for r in results)
    # Different strains, different energies; ran in worker processes, not here.
    assert results[0].energy_ev_per_atom != results[1].energy_ev_per_atom
    assert {r.pid for r in results} != {os.getpid()}


def test_a_killed_dask_worker_loses_nothing(dask_dispatcher, quick_settings):
    client = dask_dispatcher._backend.client
    future = dask_dispatcher.submit(dask_dispatcher.job(_atoms(0.007), quick_settings))
    busy = _wait_until_processing(client)
    (address,) = list(busy)[:1]
    pid = client.run(os.getpid, workers=[address])[address]
    os.kill(pid, signal.SIGKILL)  # The worker dies mid-job (its GPAW child follows it).
    result = future.result(timeout=180)
    assert result.ok
    assert result.pid != pid  # Rerun by another (or the restarted) worker.


def test_a_killed_pool_process_is_replaced_and_the_job_rerun(quick_settings):
    with Dispatcher(DispatchSettings(executor="process", workers=1, timeout_s=120)) as d:
        d.submit(d.job(_atoms(0.0), quick_settings)).result(timeout=120)  # Pool is up.
        (pid,) = list(d.executor._processes)  # The one worker process.
        future = d.submit(d.job(_atoms(0.003), quick_settings))
        time.sleep(0.5)
        os.kill(pid, signal.SIGKILL)
        result = future.result(timeout=120)
        assert result.ok and result.pid != pid
        assert d.resubmitted >= 1


def test_an_existing_scheduler_by_address(quick_settings):
    from distributed import LocalCluster

    with LocalCluster(
        n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None
    ) as cluster:
        settings = DispatchSettings(executor=cluster.scheduler_address, timeout_s=120)
        with Dispatcher(settings) as d:
            assert cluster.scheduler_address in d.description
            assert d.submit(d.job(_atoms(), quick_settings)).result(timeout=120).ok
        assert len(cluster.scheduler_info["workers"]) == 1  # Left running for its owner.


@pytest.mark.parametrize("spec", ["threads", "tcp://", "mpi"])
def test_unknown_executors_are_refused(spec):
    with pytest.raises(ValueError, match="executor"):
        check_executor(spec)
