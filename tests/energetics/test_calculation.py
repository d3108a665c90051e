"""One DFT job with real GPAW: energy, settings record, failures detected, retried, reported."""

from __future__ import annotations

import sys
import time
from dataclasses import replace

import numpy as np
import pytest
from ase import Atoms

from stem_loop.energetics import EnergyJob, ParallelSettings, build_structure, run_energy_job

STRAIN = {"exx": 0.01, "eyy": 0.0, "exy": 0.0}


@pytest.fixture(scope="module")
def atoms():
    return build_structure(STRAIN, "Si", lattice_constant_a=5.47)


@pytest.fixture(scope="module")
def plain(atoms, quick_settings):
    return run_energy_job(EnergyJob(atoms, quick_settings, timeout_s=120))


def test_energy_and_settings_are_recorded(plain, quick_settings):
    assert plain.ok and plain.reason is None
    assert -6.0 < plain.energy_ev_per_atom < -3.5  # eV/atom vs GPAW's atoms (coarse k here)
    assert plain.natoms == 2
    assert plain.settings["ecut_ev"] == quick_settings.ecut_ev
    assert plain.settings["kpts"] == list(quick_settings.kpts)
    assert plain.attempts[0]["status"] == "ok" and plain.attempts[0]["iterations"] > 3
    assert plain.wall_s > 0


def test_unconverged_scf_is_retried_with_safer_settings(atoms, quick_settings, plain):
    result = run_energy_job(EnergyJob(atoms, replace(quick_settings, maxiter=1), timeout_s=120))
    assert result.ok
    assert [a["status"] for a in result.attempts] == ["scf_not_converged", "ok"]
    assert "SCF not converged in 1 iterations" in result.retried_because[0]
    assert result.attempts[1]["maxiter"] > 1 and result.attempts[1]["mixer_beta"] == 0.05
    # Same physics after the retry: the same energy.
    assert result.energy_ev_per_atom == pytest.approx(plain.energy_ev_per_atom, abs=2e-6)
    assert result.settings["mixer_beta"] == 0.05


def test_failure_after_all_retries_is_reported_not_raised(atoms, quick_settings):
    result = run_energy_job(
        EnergyJob(atoms, replace(quick_settings, maxiter=1), timeout_s=120, retries=0)
    )
    assert not result.ok and result.energy_ev_per_atom is None
    assert "SCF not converged" in result.reason


def test_a_hanging_calculation_is_killed_at_the_timeout(atoms, quick_settings):
    start = time.perf_counter()
    result = run_energy_job(EnergyJob(atoms, quick_settings, timeout_s=0.5))
    assert time.perf_counter() - start < 10
    assert not result.ok
    assert result.attempts[-1]["status"] == "timeout"
    assert "timed out after 0.5 s" in result.reason


def test_a_gpaw_error_is_reported_with_its_reason(quick_settings):
    # Two atoms on top of each other: GPAW refuses the structure.
    bad = Atoms("Si2", positions=np.zeros((2, 3)), cell=5.4 * np.eye(3), pbc=True)
    result = run_energy_job(EnergyJob(bad, quick_settings, timeout_s=60, retries=1))
    assert not result.ok
    assert len(result.attempts) == 2
    assert result.attempts[-1]["status"] in ("error", "crashed")
    assert result.reason


def test_threads_are_pinned_in_the_gpaw_process():
    env = ParallelSettings(omp_threads=3).environment()
    assert env["OMP_NUM_THREADS"] == env["OPENBLAS_NUM_THREADS"] == "3"


def test_thread_and_rank_counts_are_recorded(atoms, quick_settings):
    result = run_energy_job(
        EnergyJob(atoms, quick_settings, timeout_s=120, parallel=ParallelSettings(omp_threads=2))
    )
    assert result.ok
    assert result.attempts[0]["omp_threads"] == "2"
    assert result.attempts[0]["mpi_ranks"] == 1


def test_ranks_go_through_the_launcher_and_a_serial_gpaw_is_refused(
    atoms, quick_settings, tmp_path
):
    """``mpi_ranks=2`` starts GPAW through the configured launcher with the rank count filled
    in; GPAW here has no MPI, so its world has one rank and the job stops with that reason
    instead of running two serial copies (and is not retried: safer SCF cannot fix it)."""
    marker = tmp_path / "ranks"
    launcher = tmp_path / "launcher.py"
    launcher.write_text(
        "import os, sys\n"
        "open(sys.argv[1], 'w').write(sys.argv[2])\n"
        "os.execv(sys.argv[3], sys.argv[3:])\n"
    )
    parallel = ParallelSettings(
        mpi_ranks=2, mpi_launcher=(sys.executable, str(launcher), str(marker), "{ranks}")
    )
    result = run_energy_job(EnergyJob(atoms, quick_settings, timeout_s=120, parallel=parallel))
    assert marker.read_text() == "2"
    assert not result.ok
    assert [a["status"] for a in result.attempts] == ["misconfigured"]
    assert "2 MPI ranks" in result.reason and "world has 1" in result.reason
