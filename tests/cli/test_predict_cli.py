"""``stem-loop predict``: simulated frames in, descriptors (and the truth) out to an npz."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from sim_devices import DESCRIPTOR_NAMES, builtin_sample
from stem_loop.cli import main


def _last_json(out: str) -> dict:
    return json.loads(out.strip().splitlines()[-1])


def test_predict_writes_descriptors_sigmas_ood_and_truth(tmp_path, capsys):
    out = tmp_path / "p.npz"
    argv = ["predict", "--sample", "demo", "--positions", "12", "--seed", "3"]
    assert main([*argv, "--dose", "5e4", "--out", str(out), "--json"]) == 0
    printed = capsys.readouterr().out
    summary = _last_json(printed)
    assert "frames/s" in printed and "out of distribution" in printed

    saved = np.load(out)
    expected = {"x_nm", "y_nm", "ood", "reason"}
    expected |= {f"{p}{n}{s}" for n in DESCRIPTOR_NAMES for p, s in [("", ""), ("", "_std")]}
    expected |= {f"true_{n}" for n in DESCRIPTOR_NAMES}
    assert expected <= set(saved.files)
    assert all(saved[k].shape == (12,) for k in expected)
    ood = saved["ood"]
    assert summary["ood"] == int(ood.sum())
    for name in DESCRIPTOR_NAMES:
        assert np.isnan(saved[name][ood]).all()
        assert np.isfinite(saved[name][~ood]).all() and (saved[f"{name}_std"][~ood] > 0).all()

    # The truth is the sample's, at the written positions.
    truth = builtin_sample().descriptors_at(saved["x_nm"], saved["y_nm"])
    for name in DESCRIPTOR_NAMES:
        np.testing.assert_allclose(saved[f"true_{name}"], truth[name])
    # The printed rms error is the npz's.
    keep = ~ood
    if keep.any():
        err = saved["exx"][keep] - saved["true_exx"][keep]
        assert math.isclose(summary["rms_error"]["exx"], float(np.sqrt(np.mean(err**2))))
    assert summary["positions"] == 12 and summary["dose"] == 5e4
    assert summary["frames_per_s"] > 0
    # Thickness: the networks' where they are sure, the refiner's where their sigma > 2 nm.
    refined = saved["thickness_refined"]
    assert summary["thickness_refined"] == int(refined.sum())
    assert summary["refine_thickness_above"] == 2.0
    network_std_over = ~ood & ~refined
    np.testing.assert_array_equal(
        saved["thickness_nm"][network_std_over], saved["thickness_network_nm"][network_std_over]
    )


def test_refining_every_thickness_reads_the_sample_at_least_as_well(tmp_path, capsys):
    argv = ["predict", "--sample", "demo", "--positions", "8", "--seed", "4", "--json"]
    paths = {}
    for name, extra in [
        ("network", ["--no-refinement"]),
        ("all", ["--refine-thickness-above", "0"]),
    ]:
        paths[name] = tmp_path / f"{name}.npz"
        assert main([*argv, *extra, "--out", str(paths[name])]) == 0
        summary = _last_json(capsys.readouterr().out)
    assert summary["thickness_refined"] == 8 - summary["ood"]
    network, every = (np.load(paths[k]) for k in ("network", "all"))
    assert not network["thickness_refined"].any()
    ok = ~every["ood"]
    np.testing.assert_allclose(every["thickness_network_nm"], network["thickness_nm"])
    assert every["thickness_refined"][ok].all()
    err = {
        k: np.sqrt(np.mean((f["thickness_nm"][ok] - f["true_thickness_nm"][ok]) ** 2))
        for k, f in (("network", network), ("all", every))
    }
    assert err["all"] <= max(err["network"], 1.0), err


def test_same_seed_same_positions(tmp_path, capsys):
    paths = [tmp_path / "a.npz", tmp_path / "b.npz"]
    for path in paths:
        assert main(["predict", "--sample", "demo", "--positions", "3", "--out", str(path)]) == 0
    a, b = (np.load(p) for p in paths)
    np.testing.assert_array_equal(a["x_nm"], b["x_nm"])
    np.testing.assert_array_equal(a["exx"], b["exx"])


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--sample", "missing.npz", "--positions", "3"], "no such file"),
        (["--sample", "bad.npz", "--positions", "3"], "missing required key"),
        (["--sample", "no_such_builtin", "--positions", "3"], "no_such_builtin"),
        (["--sample", "demo", "--positions", "0"], "--positions must be at least 1"),
        (["--sample", "demo", "--positions", "3", "--dose", "0"], "--dose must be positive"),
        (["--sample", "demo", "--positions", "3", "--dose", "-5"], "--dose must be positive"),
        (["--sample", "demo", "--positions", "3", "--dose", "nan"], "--dose must be positive"),
        (
            ["--sample", "demo", "--positions", "3", "--refine-thickness-above", "-1"],
            "--refine-thickness-above must be >= 0",
        ),
    ],
)
def test_bad_input_is_one_clear_line(tmp_path, capsys, monkeypatch, options, message):
    monkeypatch.chdir(tmp_path)
    np.savez(tmp_path / "bad.npz", exx=np.zeros((2, 2)))
    assert main(["predict", *options, "--out", str(tmp_path / "p.npz")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("stem-loop predict: error: ")
    assert message in err and err.count("\n") == 1
    assert not (tmp_path / "p.npz").exists()


@pytest.mark.parametrize("where", ["no directory", "a directory", "under a file", "read-only"])
def test_unwritable_out_is_refused_before_simulating(tmp_path, capsys, where):
    out = {
        "no directory": tmp_path / "absent" / "p.npz",
        "a directory": tmp_path,
        "under a file": tmp_path / "file" / "p.npz",
        "read-only": tmp_path / "ro" / "p.npz",
    }[where]
    if where == "under a file":
        out.parent.write_text("not a directory")
    if where == "read-only":
        out.parent.mkdir()
        out.parent.chmod(0o500)
        import os

        if os.access(out.parent, os.W_OK):  # root ignores permissions
            pytest.skip("running as root: directories are always writable")
    assert main(["predict", "--sample", "demo", "--positions", "3", "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("stem-loop predict: error: --out")


def test_mirror_views_read_the_same_frames_again(tmp_path, capsys):
    argv = ["predict", "--sample", "demo", "--positions", "6", "--seed", "2", "--json"]
    argv += ["--no-refinement"]
    saved = {}
    runs = [("once", ["--mirror", "1"], 1), ("mirror", ["--mirror"], 4)]
    runs += [("pair", ["--mirror", "2"], 2), ("auto", [], 1)]  # auto: float32 networks, once
    for name, extra, views in runs:
        path = tmp_path / f"{name}.npz"
        assert main([*argv, *extra, "--precision", "float32", "--out", str(path)]) == 0
        summary = _last_json(capsys.readouterr().out)
        assert summary["mirror_views"] == views and summary["precision"] == "float32"
        saved[name] = np.load(path)
    once = saved["once"]
    for views in ("mirror", "pair"):
        mirror = saved[views]
        np.testing.assert_array_equal(once["true_exx"], mirror["true_exx"])  # the same frames
        ok = ~(once["ood"] | mirror["ood"])
        assert ok.any()
        for name in ("exx", "exy", "tilt_x_mrad"):
            a, b = once[name][ok], mirror[name][ok]
            assert not np.array_equal(a, b)  # read again, not copied
            assert np.all(np.abs(a - b) <= 3 * once[f"{name}_std"][ok]), (views, name)
    np.testing.assert_array_equal(saved["auto"]["exx"], once["exx"])
    assert main([*argv, "--precision", "bfloat16", "--out", str(tmp_path / "bf16.npz")]) == 0
    summary = _last_json(capsys.readouterr().out)
    assert summary["mirror"] == "auto" and summary["mirror_views"] == 2  # auto: the pair
    with pytest.raises(SystemExit):
        main([*argv, "--mirror", "3", "--out", str(tmp_path / "three.npz")])
    assert "invalid choice: 3" in capsys.readouterr().err
