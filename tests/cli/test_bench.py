"""``stem-loop bench acquisition --json`` ends with one JSON object."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

STEM_LOOP = str(Path(sys.executable).with_name("stem-loop"))


def test_acquisition_bench_json_last_line():
    pytest.importorskip("stem_loop.bench.acquisition")
    done = subprocess.run(
        [STEM_LOOP, "bench", "acquisition", "--positions", "64", "--step-positions", "8"]
        + ["--live-positions", "4", "--json"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["results"]
