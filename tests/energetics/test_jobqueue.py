"""Facility recipe: the batch scripts dask-jobqueue generates (nothing is submitted)."""

from __future__ import annotations

import pytest

from stem_loop.energetics.jobqueue import FacilitySettings, make_jobqueue_cluster


@pytest.fixture
def script():
    def build(**kwargs):
        cluster = make_jobqueue_cluster(
            FacilitySettings(**kwargs), scheduler_options={"dashboard_address": None}
        )
        try:
            return cluster.job_script()
        finally:
            cluster.close()

    return build


def test_slurm_job_script(script):
    text = script(
        queue="regular",
        account="m1234",
        walltime="02:30:00",
        workers_per_job=4,
        omp_threads=2,
        prologue=("module load gpaw",),
        extra_directives=("--constraint=cpu",),
    )
    lines = text.splitlines()
    assert "#SBATCH -p regular" in lines
    assert "#SBATCH -A m1234" in lines
    assert "#SBATCH -t 02:30:00" in lines
    assert "#SBATCH --cpus-per-task=8" in lines  # 4 workers x 2 threads
    assert "#SBATCH --constraint=cpu" in lines
    assert "export OMP_NUM_THREADS=2" in lines
    # The environment comes before the workers start.
    assert lines.index("module load gpaw") < next(
        i for i, line in enumerate(lines) if "dask_worker" in line
    )
    worker = next(line for line in lines if "dask_worker" in line)
    assert "--nthreads 1" in worker and "--nworkers 4" in worker


@pytest.mark.parametrize(
    "scheduler, expected",
    [("pbs", "#PBS -l select=1:ncpus=4"), ("lsf", "#BSUB -n 4")],
)
def test_pbs_and_lsf_the_same_way(script, scheduler, expected):
    text = script(scheduler=scheduler, queue="q", workers_per_job=2, mpi_ranks=2)
    assert expected in text
    assert "--nthreads 1" in text and "--nworkers 2" in text


def test_bad_facility_settings():
    with pytest.raises(ValueError, match="scheduler"):
        FacilitySettings(scheduler="condor")
