"""``stem-loop demo --json`` records a run into Tiled and ends with one JSON object."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from stem_loop.storage import API_KEY_ENV, URI_ENV, open_catalog

STEM_LOOP = str(Path(sys.executable).with_name("stem-loop"))


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in (URI_ENV, API_KEY_ENV)}
    env.update(extra)
    return env


def _demo(tmp_path: Path, *options: str) -> tuple[Path, subprocess.CompletedProcess]:
    """Run the demo into ``tmp_path/data``; it must succeed."""
    data = tmp_path / "data"
    argv = [STEM_LOOP, "demo", *options, "--data", str(data)]
    done = subprocess.run(
        argv, env=_env(), cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    return data, done


def test_demo_json_and_run_in_tiled(tmp_path):
    data, done = _demo(tmp_path, "--positions", "40", "--seed", "3", "--json")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["positions"] == 40
    assert result["frames_per_s"] > 0
    assert result["data_dir"] == str(data)
    assert "stem-loop serve --data" in result["browse"]["serve"]
    assert "from_uri('http://127.0.0.1:8000/api/v1/metadata/runs'" in result["browse"]["python"]
    assert "api_key=Path(" in result["browse"]["python"]  # The key is not printed.

    # the live inference agent read every frame into the run (the summary is read back)
    summary = result["descriptors"]
    assert summary["frames"] == 40 and 0 <= summary["ood"] < 40
    assert summary["mirror_views"] in (1, 2)
    # fast-model frames of the built-in sample: the networks read strain to about 0.1 %;
    # a descriptor scored at the wrong positions or in the wrong units is off by far more
    for name in ("exx", "eyy", "exy"):
        assert summary["rms_error"][name] < 0.004, (name, summary["rms_error"])
    assert summary["rms_error"]["thickness_nm"] < 5.0
    assert all(0.0 <= c <= 1.0 for c in summary["coverage_1sigma"].values())

    with open_catalog(data_dir=data) as catalog:
        run = catalog.client[result["run_uid"]]
        assert run.metadata["start"]["purpose"] == "stem-loop demo"
        assert run["primary"]["det-image"].read().shape == (40, 128, 128)
        assert set(run) == {"primary", "descriptors"}
        assert run.metadata["stop"]["num_events"] == {"primary": 40, "descriptors": 40}


def test_demo_records_frames_only_when_asked(tmp_path):
    data, done = _demo(tmp_path, "--positions", "2", "--no-inference")
    assert "Descriptors: not read (--no-inference)." in done.stdout
    with open_catalog(data_dir=data) as catalog:
        assert set(catalog.client[-1]) == {"primary"}


def test_demo_reports_an_unreachable_server(tmp_path):
    done = subprocess.run(
        [STEM_LOOP, "demo", "--positions", "2", "--data", str(tmp_path)],
        env=_env(**{URI_ENV: "http://127.0.0.1:9/api/v1"}),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1
    assert "No Tiled server answers at http://127.0.0.1:9/api/v1" in done.stderr
    assert "Traceback" not in done.stderr
