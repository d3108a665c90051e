"""``ipython --profile-dir=profile_collection`` gives the contract names and records into Tiled."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from stem_loop.storage import API_KEY_ENV, URI_ENV, open_catalog

PROFILE = Path(__file__).resolve().parents[2] / "profile_collection"
GRID = "RE(bp.grid_scan([det], scan_gen.y, 20, 75, 3, scan_gen.x, 20, 75, 3))"


def _check(done: subprocess.CompletedProcess) -> str:
    if done.returncode != 0:
        pytest.fail(f"ipython exited with {done.returncode}:\n{done.stdout}\n{done.stderr}")
    return done.stdout.strip().splitlines()[-1]


def _ipython(profile: Path, code: str, data_dir: Path) -> subprocess.CompletedProcess:
    # Headless, as in CI: the profile itself must keep matplotlib off the screen.
    unset = (URI_ENV, API_KEY_ENV, "MPLBACKEND", "DISPLAY", "WAYLAND_DISPLAY")
    env = {k: v for k, v in os.environ.items() if k not in unset}
    env["STEM_LOOP_DATA"] = str(data_dir)
    ipython = Path(sys.executable).with_name("ipython")
    return subprocess.run(
        [str(ipython), f"--profile-dir={profile}", "-c", code],
        env=env,
        cwd=data_dir.parent,
        capture_output=True,
        text=True,
        timeout=240,
    )


@pytest.fixture
def profile(tmp_path) -> Path:
    # A copy, so IPython's history and logs are not written into the checkout.
    return Path(shutil.copytree(PROFILE, tmp_path / "profile_collection"))


def test_grid_scan_in_the_profile_is_recorded_in_tiled(profile, tmp_path):
    data_dir = tmp_path / "data"
    names = "RE, bec, det, scan_gen, tiled_client, bp, bps, bpp, sparse_scan"
    done = _ipython(profile, f"{names}; {GRID}; print(len(tiled_client))", data_dir)
    assert _check(done) == "1"

    # A second session continues the scan ids and finds the first run.
    again = _ipython(
        profile, f"{GRID}; print(tiled_client[2].metadata['start']['scan_id'])", data_dir
    )
    assert _check(again) == "2"

    with open_catalog(data_dir=data_dir) as catalog:
        assert len(catalog.client) == 2
        primary = catalog.client[1]["primary"]
        assert primary["det-image"].read().shape == (9, 128, 128)
