"""``stem-loop train`` refuses bad settings before it builds or writes anything."""

from __future__ import annotations

import pytest

from stem_loop.cli import main

BAD = [
    ["--members", "0"],
    ["--epochs", "0"],
    ["--shards", "0"],
    ["--frames-per-shard", "8"],
    ["--calibration-shards", "-1"],
    ["--content-step", "0"],
    ["--content-step", "0.5"],
]


@pytest.mark.parametrize("option", BAD)
def test_bad_settings_are_one_clear_line(tmp_path, capsys, option):
    work = tmp_path / "work"
    assert main(["train", "--dir", str(work), *option]) == 1
    err = capsys.readouterr().err
    assert err.startswith("stem-loop train: error: ") and err.count("\n") == 1
    assert "--members" in err
    assert not work.exists()


@pytest.mark.parametrize(
    ("option", "named"),
    [
        (["--workers", "0"], "--workers"),
        (["--device", "tpu"], "--device"),
        (["--device", "cuda:9"], "cuda:9"),
        (["--point-spread", "1", "0.5"], "--point-spread"),
        (["--point-spread", "-0.5", "1"], "--point-spread"),
        (["--point-spread", "0", "9"], "--point-spread"),
        (["--learning-rate", "0"], "--learning-rate"),
        (["--start-from", "no-such-model"], "--start-from"),
    ],
)
def test_bad_options_are_refused_before_anything_is_written(tmp_path, capsys, option, named):
    work = tmp_path / "work"
    assert main(["train", "--dir", str(work), *option]) == 1
    err = capsys.readouterr().err
    assert err.startswith("stem-loop train: error: ") and named in err
    assert not work.exists()
