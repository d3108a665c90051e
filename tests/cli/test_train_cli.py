"""``stem-loop train`` refuses bad settings before it builds or writes anything."""

from __future__ import annotations

import pytest

from stem_loop.cli import main

BAD = [["--members", "0"], ["--epochs", "0"], ["--shards", "0"], ["--frames-per-shard", "8"]]


@pytest.mark.parametrize("option", BAD)
def test_bad_settings_are_one_clear_line(tmp_path, capsys, option):
    work = tmp_path / "work"
    assert main(["train", "--dir", str(work), *option]) == 1
    err = capsys.readouterr().err
    assert err.startswith("stem-loop train: error: ") and err.count("\n") == 1
    assert "--members" in err
    assert not work.exists()
