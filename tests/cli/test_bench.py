"""`stem-loop bench acquisition|forward --json` print their tables and end with one JSON object."""

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


def test_forward_bench_json_last_line():
    done = subprocess.run(
        [STEM_LOOP, "bench", "forward", "--no-exact", "--frames", "64", "--json"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["fast_patterns_per_s"] > 0 and report["fast_frames_per_s_with_noise"] > 0
    assert report["fast_frames_per_s_with_noise"] <= report["fast_patterns_per_s"]
    assert report["fast_content_points"] >= 1 and report["fast_first_pass_s"] > 0
    assert "exact_s_per_pattern" not in report
    assert "fast  :" in done.stdout
