"""The process keeps freed batch-sized buffers for reuse (stem_loop.allocator)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from stem_loop.allocator import MALLOC_ENV, _glibc, keep_freed_memory, settings_given

#: In a fresh interpreter: import stem_loop, then run the inference front end on the same
#: 256 frames seven times, and print the page faults the last five took.
_CHURN = """
import resource, numpy as np, stem_loop
from stem_loop.inference import BeamConditions
from stem_loop.inference.preprocess import Preprocessor
front_end = Preprocessor(BeamConditions(), mirror_margin=True)
frames = np.random.default_rng(0).poisson(5.0, (256, 128, 128)).astype(np.uint16)
front_end(frames); front_end(frames)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(5):
    front_end(frames)
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _faults(**env: str) -> int:
    return int(_python(_CHURN, **env))


@pytest.mark.skipif(_glibc() is None, reason="the C library is not glibc")
def test_freed_buffers_are_reused_not_faulted_in_again():
    """Five batches through the front end: 56,000 to 158,000 fresh pages with glibc's defaults
    (each batch's buffers mapped and unmapped), 0 to 2,200 once stem_loop has raised the
    thresholds (seen in twelve pairs of processes)."""
    kept, default = _faults(), _faults(**{MALLOC_ENV: "system"})
    assert default > 30_000
    assert kept < default / 10


@pytest.mark.parametrize(
    "environ, why",
    [
        ({}, None),
        ({MALLOC_ENV: "system"}, MALLOC_ENV),
        ({MALLOC_ENV: "keep"}, None),
        ({"MALLOC_TRIM_THRESHOLD_": "1000"}, "MALLOC_TRIM_THRESHOLD_"),
        ({"MALLOC_MMAP_THRESHOLD_": "1000"}, "MALLOC_MMAP_THRESHOLD_"),
        ({"GLIBC_TUNABLES": "glibc.malloc.trim_threshold=1"}, "GLIBC_TUNABLES"),
        ({"GLIBC_TUNABLES": "glibc.pthread.rseq=0"}, None),
    ],
)
def test_explicit_settings_win(environ, why):
    assert settings_given(environ) == why
    if why is not None:
        assert keep_freed_memory(environ) is False


def _clean_environment() -> dict[str, str]:
    """This environment without any allocator settings: the suite's own may hold glibc's
    (Dask's nanny sets MALLOC_TRIM_THRESHOLD_ in the process that runs it)."""
    drop = (MALLOC_ENV, "GLIBC_TUNABLES", "MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_")
    return {k: v for k, v in os.environ.items() if k not in drop}


def _python(code: str, **env: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", code],
        env={**_clean_environment(), **env},
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    return done.stdout.split()[-1]


def test_glibc_settings_count_where_the_process_started_with_them():
    """glibc reads its settings when the process starts: one put in ``os.environ`` later
    (as Dask's nanny does) changes nothing and does not stop stem_loop's; one the process
    started with does, and wins."""
    ask = "from stem_loop.allocator import settings_given; print(settings_given())"
    later = "import os; os.environ['MALLOC_TRIM_THRESHOLD_'] = '65536'; " + ask
    assert _python(later) == "None"
    assert _python(ask, MALLOC_TRIM_THRESHOLD_="65536") == "MALLOC_TRIM_THRESHOLD_"


@pytest.mark.skipif(_glibc() is None, reason="the C library is not glibc")
def test_glibc_takes_both_thresholds():
    assert keep_freed_memory({}) is True
