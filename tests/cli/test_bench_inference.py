"""``stem-loop bench inference``: frames/s of each stage, JSON last, and the accuracy hook."""

from __future__ import annotations

import json
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from stem_loop.cli import main
from stem_loop.inference.mirror import auto_view_count

STAGES = ("read_hdf5", "front_end", "network", "end_to_end", "agent", "refiner")


def _last_json(out: str) -> dict:
    return json.loads(out.strip().splitlines()[-1])


def test_tiny_run_prints_every_stage_and_json_last(capsys):
    argv = ["bench", "inference", "--frames", "12", "--batch", "8", "--repeats", "1"]
    assert main([*argv, "--threads", "1", "--no-gpu", "--json", "--no-accuracy"]) == 0
    out = capsys.readouterr().out
    result = _last_json(out)
    assert "end to end" in out and "frames/s" in out
    assert result["frames"] == 12 and result["threads"] == 1 and result["accuracy"] is None
    assert all(result["cpu"][stage] > 0 for stage in STAGES)
    # Reading alone is faster than reading and inferring.
    assert result["cpu"]["read_hdf5"] > result["cpu"]["end_to_end"]
    assert len(result["load_average"]) == 6
    # The thickness refiner is far slower than the network; the agent refined some or none.
    assert result["cpu"]["refiner"] < result["cpu"]["end_to_end"]
    assert 0.0 <= result["cpu"]["agent_thickness_refined_fraction"] <= 1.0
    assert result["refine_thickness_above"] == 2.0


@pytest.mark.parametrize(("option", "fraction"), [("--no-live-refinement", 0.0), ("0", 1.0)])
def test_the_agent_figure_says_how_many_thicknesses_it_refined(option, fraction, capsys):
    argv = ["bench", "inference", "--frames", "6", "--batch", "6", "--repeats", "1", "--no-gpu"]
    extra = [option] if option.startswith("--") else ["--refine-thickness-above", option]
    assert main([*argv, *extra, "--no-accuracy", "--json"]) == 0
    out = capsys.readouterr().out
    result = _last_json(out)
    assert result["cpu"]["agent_thickness_refined_fraction"] == fraction
    assert f"thickness refined live for {100 * fraction:.1f}% of frames" in out


def test_accuracy_report_is_called_with_the_doses(capsys, monkeypatch):
    calls = []

    def report(predictor, doses=(1e5,), refine_thickness=False, draws=5, **kwargs):
        calls.append((doses, refine_thickness, draws))
        summary = {"thickness_refined_nm_rms": 0.5} if refine_thickness else {}
        rows = [{"material": "Si", "exx_rms": 0.001}]
        return {"rows": rows, "summary": summary, "text": "ACCURACY TABLE"}

    fake = types.ModuleType("stem_loop.inference.evaluation")
    fake.report = report
    monkeypatch.setitem(sys.modules, "stem_loop.inference.evaluation", fake)
    argv = ["bench", "inference", "--frames", "4", "--batch", "4", "--repeats", "1", "--no-gpu"]
    assert main([*argv, "--doses", "1e3,1e5", "--json"]) == 0
    out = capsys.readouterr().out
    assert "ACCURACY TABLE" in out
    result = _last_json(out)
    assert result["accuracy"] == [{"material": "Si", "exx_rms": 0.001}]
    assert "thickness_refined_nm_rms" not in result
    assert main([*argv, "--no-cpu", "--refine-thickness", "--draws", "2", "--json"]) == 0
    assert _last_json(capsys.readouterr().out)["thickness_refined_nm_rms"] == 0.5
    assert calls == [((1e3, 1e5), False, 5), ((1e5,), True, 2)]


@pytest.mark.parametrize(
    "bad",
    [["--frames", "0"], ["--doses", "a,b"], ["--refine-thickness-above", "-1"], ["--draws", "0"]],
)
def test_bad_options_exit_with_usage(bad, capsys):
    with pytest.raises(SystemExit) as exited:
        main(["bench", "inference", *bad])
    assert exited.value.code == 2
    assert "usage: stem-loop bench inference" in capsys.readouterr().err


def test_console_script_sets_the_openmp_wait_policy_before_torch_loads():
    stem_loop = str(Path(sys.executable).with_name("stem-loop"))
    argv = ["bench", "inference", "--frames", "4", "--batch", "4", "--repeats", "1"]
    argv += ["--no-gpu", "--no-accuracy", "--omp-wait-policy", "passive", "--json"]
    done = subprocess.run([stem_loop, *argv], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    result = _last_json(done.stdout)
    assert result["omp_wait_policy"] == "passive"
    assert "OpenMP wait policy passive" in done.stdout


def test_device_figures_run_on_any_torch_device(tmp_path):
    # The GPU path, exercised on the CPU device so it is tested where no GPU is lent.
    from stem_loop.bench.inference import _device_figures, simulate_frames, write_frames

    frames, conditions = simulate_frames(6, seed=1)
    path = write_frames(tmp_path / "frames.h5", frames)
    figures = _device_figures(frames, conditions, 4, 1, device="cpu", path=path)
    assert figures["device"] == "cpu" and figures["batch"] == 4
    for stage in ("front_end", "network", "from_memory", "end_to_end", "agent"):
        assert figures[stage] > 0, stage


def test_a_device_only_run_reports_the_devices_reading(monkeypatch, capsys):
    # What benchmarks/device_inference.sh runs on a lent GPU (--no-cpu --no-accuracy): no CPU
    # predictor is made, so the views and precision printed are the device predictor's.
    from stem_loop.bench import inference

    monkeypatch.setattr(inference, "_has_device", lambda device: True)
    result = inference.run_inference_bench(
        6, batch=4, repeats=1, cpu=False, accuracy=False, device="cpu", device_batch=4
    )
    out = capsys.readouterr().out
    assert result["cpu"] is None and result["gpu"]["from_memory"] > 0
    views = result["gpu"]["mirror_views"]
    assert result["mirror_views"] == views == auto_view_count(result["gpu"]["precision"])
    assert f"networks in {result['gpu']['precision']}, {views} view(s) a frame" in out


def test_frames_are_saved_without_measuring_anything(tmp_path, capsys):
    # The first step of measuring elsewhere (live_inference.rst, device_inference_prepare.sh).
    saved = tmp_path / "frames.npz"
    argv = ["bench", "inference", "--frames", "5", "--no-cpu", "--no-gpu", "--no-accuracy"]
    assert main([*argv, "--save-frames", str(saved), "--json"]) == 0
    result = _last_json(capsys.readouterr().out)
    assert result["cpu"] is None and result["gpu"] is None and result["mirror_views"] is None
    from stem_loop.bench.inference import load_frames

    assert load_frames(saved, 5)[0].shape == (5, 128, 128)


def test_saved_frames_are_measured_elsewhere(tmp_path, capsys):
    saved = tmp_path / "frames.npz"
    argv = ["bench", "inference", "--frames", "6", "--batch", "4", "--repeats", "1", "--no-gpu"]
    assert main([*argv, "--no-accuracy", "--save-frames", str(saved), "--json"]) == 0
    first = _last_json(capsys.readouterr().out)
    from stem_loop.bench.inference import load_frames

    frames, conditions = load_frames(saved, 10)  # six stored, repeated to ten
    assert frames.shape == (10, 128, 128) and frames.dtype == np.uint16
    np.testing.assert_array_equal(frames[6:], frames[:4])
    assert conditions.material == "Si"
    assert main([*argv, "--no-accuracy", "--frames-file", str(saved), "--json"]) == 0
    again = _last_json(capsys.readouterr().out)
    assert again["frames"] == first["frames"] and all(again["cpu"][s] > 0 for s in STAGES)


def test_frames_files_without_frames_are_refused(tmp_path, capsys):
    from stem_loop.bench.inference import load_frames

    bad = tmp_path / "bad.npz"
    np.savez(bad, frames=np.zeros((2, 8, 8), dtype=np.float32))
    with pytest.raises(ValueError, match="no conditions"):
        load_frames(bad, 2)
    with pytest.raises(SystemExit):
        main(["bench", "inference", "--frames-file", str(tmp_path / "missing.npz")])
    assert "no such file" in capsys.readouterr().err


def test_the_bench_writes_files_chunked_as_the_detector_does(tmp_path):
    import h5py

    from stem_loop.bench import inference
    from stem_loop.devices import FILE_CHUNK_FRAMES

    assert inference.FILE_CHUNK_FRAMES == FILE_CHUNK_FRAMES
    path = inference.write_frames(tmp_path / "f.h5", np.zeros((40, 8, 8), dtype=np.uint16))
    with h5py.File(path) as file:
        assert file[inference.DATASET].chunks == (FILE_CHUNK_FRAMES, 8, 8)
