"""``stem-loop bench energetics`` prints its figures and ends with one JSON object."""

from __future__ import annotations

import json

from stem_loop.cli import main


def test_energetics_bench_json_last_line(quick_reference, capsys):
    argv = ["bench", "energetics", "--settings", "quick", "--positions", "20"]
    assert main([*argv, "--tolerance", "0.3", "--validate", "2", "--json"]) == 0
    out = capsys.readouterr().out
    report = json.loads(out.strip().splitlines()[-1])
    assert report["reference"]["from_cache"]  # the session's quick reference
    assert report["reference"]["lattice_constant_a"] == quick_reference.lattice_constant_a
    assert 0 < report["dft_calls"] < 20
    assert report["dft_calls_per_position"] == report["dft_calls"] / 20
    assert report["s_per_dft_structure"] > 0
    assert len(report["validation"]) == 2
    assert report["max_abs_error_mev"] is not None and report["max_abs_error_mev"] < 1.0
    assert "DFT calls" in out and "surrogate error" in out
