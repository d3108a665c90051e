"""``stem-loop energy``: refuses bad input before any DFT; real strain energies on Dask."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from stem_loop.cli import main

STEM_LOOP = str(Path(sys.executable).with_name("stem-loop"))


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["--material", "GaAs", "--strain", "0.01,0,0"], "unknown material 'GaAs'"),
        (["--strain", "0.01,0"], "expected EXX,EYY,EXY"),
        (["--strain", "0.01,zero,0"], "expected EXX,EYY,EXY"),
        (["--strain", "0.2,0,0"], "beyond"),
        (["--strain=-0.5,0,0"], "beyond"),
        (["--strain", "nan,0,0"], "finite"),
        (["--strain", "0,0,0", "--executor", "threads"], "unknown executor"),
        (["--strain", "0,0,0", "--ecut", "20"], "too low"),
    ],
)
def test_bad_input_is_one_line_and_exit_1(arguments, message, capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("STEM_LOOP_CACHE", str(tmp_path))
    start = time.perf_counter()
    assert main(["energy", *arguments, "--json"]) == 1
    assert time.perf_counter() - start < 5  # Refused before any job or reference.
    captured = capsys.readouterr()
    assert captured.out == ""
    (line,) = captured.err.strip().splitlines()
    assert line.startswith("stem-loop energy: error:") and message in line
    assert not any(tmp_path.iterdir())  # Nothing computed, nothing cached.


def _energy(tmp_path, *arguments: str) -> tuple[list[dict], str]:
    """Run ``stem-loop energy ... --json`` with a private cache; the results and stdout."""
    done = subprocess.run(
        [STEM_LOOP, "energy", "--material", "Si", "--settings", "quick", *arguments, "--json"],
        env=os.environ | {"STEM_LOOP_CACHE": str(tmp_path / "cache")},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=400,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1]), done.stdout


def test_strain_energies_on_dask(tmp_path):
    results, stdout = _energy(
        tmp_path,
        "--executor",
        "dask",
        "--strain",
        "0.01,0,0",
        "--strain",
        "-0.01,0,0",
        "--strain",
        "0,0,0.005",
    )
    assert [r["strain"] for r in results] == [[0.01, 0, 0], [-0.01, 0, 0], [0, 0, 0.005]]
    energies = [r["energy_mev_per_atom"] for r in results]
    assert all(0.1 < e < 5 for e in energies)  # meV/atom: elastic energies of ~1 % strain
    assert energies[0] == pytest.approx(energies[1], rel=0.25)
    for r in results:
        assert r["source"] == "dft" and r["wall_s"] > 0
        assert r["calculator"]["code"] == "GPAW" and r["calculator"]["ecut_ev"] == 250.0
        assert "Dask LocalCluster" in r["executor"]
        assert 5.3 < r["reference"]["lattice_constant_a"] < 5.7
    assert "relaxed a =" in stdout
    assert list((tmp_path / "cache" / "energetics").glob("reference-Si-*.json"))
    assert len(list((tmp_path / "cache" / "energetics").glob("results-Si-*.jsonl"))) == 1

    # a second run (another executor) answers the computed structure from the result store
    second, _ = _energy(tmp_path, "--strain", "0.01,0,0", "--strain", "0,0.005,0")
    assert [r["source"] for r in second] == ["cache", "dft"]
    assert second[0]["energy_mev_per_atom"] == energies[0]
