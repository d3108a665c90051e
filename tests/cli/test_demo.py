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


def test_demo_json_and_run_in_tiled(tmp_path):
    data = tmp_path / "data"
    done = subprocess.run(
        [STEM_LOOP, "demo", "--positions", "40", "--seed", "3", "--data", str(data), "--json"],
        env=_env(),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["positions"] == 40
    assert result["frames_per_s"] > 0
    assert result["data_dir"] == str(data)
    assert "stem-loop serve --data" in result["browse"]["serve"]
    assert "from_uri('http://127.0.0.1:8000/api/v1/metadata/runs'" in result["browse"]["python"]
    assert "api_key=Path(" in result["browse"]["python"]  # The key is not printed.

    with open_catalog(data_dir=data) as catalog:
        run = catalog.client[result["run_uid"]]
        assert run.metadata["start"]["purpose"] == "stem-loop demo"
        assert run["primary"]["det-image"].read().shape == (40, 128, 128)


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
