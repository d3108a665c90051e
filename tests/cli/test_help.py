"""Every subcommand answers ``--help``; errors are one clear line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from stem_loop.cli import COMMANDS, main
from stem_loop.cli.bench import BENCHMARKS

STEM_LOOP = str(Path(sys.executable).with_name("stem-loop"))


@pytest.mark.parametrize("command", [[], *([name] for name in COMMANDS)])
def test_help(command, capsys):
    with pytest.raises(SystemExit) as exited:
        main([*command, "--help"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: stem-loop")
    assert "--json" in out or command in ([], ["bench"])


def test_bench_help_is_the_benchmark_s_own(capsys):
    with pytest.raises(SystemExit) as exited:
        main(["bench", "acquisition", "--help"])
    assert exited.value.code == 0
    assert capsys.readouterr().out.startswith("usage: stem-loop bench acquisition")


def test_console_script():
    done = subprocess.run([STEM_LOOP, "--help"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0
    for name in COMMANDS:
        assert name in done.stdout


def test_missing_benchmark_is_a_clear_error(capsys, monkeypatch):
    # As before a benchmark module lands: its name is known, its module is not importable.
    monkeypatch.setitem(BENCHMARKS, "forward", ("stem_loop.bench.absent", "run_absent_bench"))
    assert main(["bench", "forward", "--json"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("stem-loop bench: error: benchmark 'forward' is not available")
    assert "stem_loop.bench.absent" in err
