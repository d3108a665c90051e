"""The shipped model: safe loading, OOD flags (saturation counted), refusals."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest
import torch

from stem_loop.inference import BeamConditions, Predictor
from stem_loop.inference.predictor import SHIPPED_WEIGHTS
from stem_loop.inference.preprocess import saturated_pixels
from stem_loop.inference.training import WEIGHTS_FILE

from .conftest import random_descriptors


@pytest.fixture(scope="module")
def predictor() -> Predictor:
    return Predictor()


@pytest.fixture(scope="module")
def frames(si_fast) -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.poisson(si_fast.patterns(random_descriptors(64, seed=5)) * 1e5).astype(np.uint16)


def test_shipped_weights_are_small_safetensors():
    path = SHIPPED_WEIGHTS / WEIGHTS_FILE
    assert path.stat().st_size < 5e6
    with open(path, "rb") as f:  # safetensors: u64 header length, then a JSON header
        (length,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(length))
    assert all(v["dtype"] == "F32" for k, v in header.items() if k != "__metadata__")


def test_in_distribution_frames_get_descriptors(predictor, frames, si_conditions):
    p = predictor.predict(frames, si_conditions)
    assert len(p) == 64 and p.ood.mean() < 0.1
    ok = ~p.ood
    for name in ("exx", "thickness_nm", "tilt_x_mrad"):
        assert np.all(np.isfinite(p.values[name][ok])) and np.all(p.std[name][ok] > 0)
    flat = p.as_dict()
    assert {"exx", "exx_std", "ood"} <= set(flat)


def test_unlike_frames_are_flagged_not_mapped(predictor, frames, si_conditions):
    blank = np.zeros_like(frames[:1])
    saturated = frames[:1].copy()
    saturated[0, 60:68, 60:68] = 65535
    turned = torch.rot90(torch.as_tensor(frames[:2].astype(np.float32)), 1, (1, 2)).numpy()
    p = predictor.predict(np.concatenate([blank, saturated, turned]), si_conditions)
    assert p.ood.all()
    assert "blank" in p.reason[0] and "saturated" in p.reason[1]
    assert all("lattice" in r for r in p.reason[2:])
    assert np.all(np.isnan(p.values["exx"]))


def test_refusals(predictor, frames):
    with pytest.raises(ValueError, match="unsupported material/zone axis GaAs"):
        predictor.predict(frames[:1], BeamConditions(material="GaAs", zone_axis="110"))
    with pytest.raises(ValueError, match="frames are 128x128"):
        predictor.predict(frames[:1], BeamConditions(pixels=64))
    with pytest.raises(FileNotFoundError, match="stem-loop train"):
        Predictor("/nonexistent")
    # the shipped networks assume a sharp detector: a stated point-spread is refused
    assert not predictor.takes_point_spread
    with pytest.raises(ValueError, match="sharp detector"):
        predictor.predict(frames[:1], BeamConditions(point_spread_px=0.5))
    for bad in (-0.5, float("nan"), 9.0, "wide"):
        with pytest.raises(ValueError, match="point_spread_px must be"):
            BeamConditions(point_spread_px=bad)
    assert BeamConditions(point_spread_px=np.float32(0.5)).as_dict()["point_spread_px"] == 0.5


def test_device_names_are_checked_before_anything_loads(monkeypatch):
    with pytest.raises(ValueError, match="'npu:0' is not a torch device|inference runs on"):
        Predictor(device="npu:0")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="has 0 CUDA device"):
            Predictor(device="cuda")
    monkeypatch.setenv("STEM_LOOP_INFERENCE_DEVICE", "cuda:99")
    with pytest.raises(ValueError, match="STEM_LOOP_INFERENCE_DEVICE='cuda:99'"):
        Predictor()
    monkeypatch.setenv("STEM_LOOP_INFERENCE_DEVICE", "cpu")
    assert Predictor().device == torch.device("cpu")


def test_frame_dtypes_and_batches_give_the_same_prediction(predictor, frames, si_conditions):
    whole = predictor.predict(frames, si_conditions)
    small = Predictor(batch=7)
    as_float = small.predict(frames.astype(np.float32), si_conditions)
    for name in ("exx", "thickness_nm"):
        np.testing.assert_allclose(as_float.values[name], whole.values[name], atol=1e-5)
    assert as_float.reason == whole.reason


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("tf32", [False, True], ids=["fp32", "tf32-convolutions"])
def test_gpu_prediction_agrees_with_the_cpu(frames, si_conditions, tf32):
    # fp32: the same arithmetic in other kernels; tf32 (torch's default for cuDNN
    # convolutions) rounds the network's products to 10-bit mantissas
    before = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = tf32
    try:
        on_gpu = Predictor(device="cuda", batch=32, precision="float32").predict(
            frames, si_conditions
        )
    finally:
        torch.backends.cudnn.allow_tf32 = before
    # float32 on both (auto would pick bfloat16 where the chip has it: test_precision.py)
    on_cpu = Predictor(precision="float32").predict(frames, si_conditions)
    np.testing.assert_array_equal(on_gpu.ood, on_cpu.ood)
    assert on_gpu.reason == on_cpu.reason
    ok = ~on_cpu.ood
    scale = 10.0 if tf32 else 1.0
    # well below the accuracy (0.1 % strain, 2 nm, 0.3 mrad) either way
    for name, tolerance in (
        ("exx", 1e-5),
        ("exy", 1e-5),
        ("thickness_nm", 5e-3),
        ("tilt_x_mrad", 5e-4),
    ):
        diff = np.abs(on_gpu.values[name][ok] - on_cpu.values[name][ok]).max()
        assert diff <= tolerance * scale, f"{name}: GPU and CPU differ by {diff:.3g}"
        ratio = np.abs(on_gpu.std[name][ok] / on_cpu.std[name][ok] - 1).max()
        assert ratio <= 1e-3 * scale, f"{name}_std: GPU and CPU differ by {ratio:.3g} (relative)"


def _live_readings_agree(device: str, frames, conditions) -> None:
    """The live reading (the mirror pair, networks in bfloat16) on ``device`` against the CPU's:
    the same flags, values within the bfloat16 bounds of test_precision.py (another chip's
    kernels round differently)."""
    there = Predictor(device=device, batch=32, mirror=2, precision="bfloat16")
    here = Predictor(mirror=2, precision="bfloat16")
    assert len(there.views) == len(here.views) == 2
    on_device, on_cpu = there.predict(frames, conditions), here.predict(frames, conditions)
    np.testing.assert_array_equal(on_device.ood, on_cpu.ood)
    ok = ~on_cpu.ood
    assert ok.any()
    for name in on_cpu.values:
        z = np.abs(on_device.values[name] - on_cpu.values[name])[ok] / on_cpu.std[name][ok]
        assert z.max() < (0.1 if name in ("exx", "eyy", "exy") else 0.5), (name, z.max())
        ratio = np.abs(on_device.std[name][ok] / on_cpu.std[name][ok] - 1).max()
        assert ratio < (0.25 if name == "thickness_nm" else 0.05), (name, ratio)


def test_the_live_reading_check_holds_between_cpu_predictors(frames, si_conditions):
    # the check the GPU test below makes, run where there is no GPU so that it is known to work
    _live_readings_agree("cpu", frames, si_conditions)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_the_live_reading_on_a_gpu_agrees_with_the_cpu(frames, si_conditions):
    _live_readings_agree("cuda", frames, si_conditions)


def test_saturated_pixels_are_counted_only_where_a_frame_reaches_the_level():
    rng = np.random.default_rng(3)
    frames = torch.as_tensor(rng.poisson(20.0, (6, 32, 32)).astype(np.float32))
    frames[1, 3:5, 7:10] = 65535.0  # 6 pixels
    frames[4, 0, 0] = 70000.0  # above the level counts too
    counts = saturated_pixels(frames, 65535.0)
    assert counts.tolist() == [0, 6, 0, 0, 1, 0]
    assert torch.equal(counts, (frames >= 65535.0).sum((1, 2)).to(torch.float32))
    assert saturated_pixels(frames[[0, 2]], 65535.0).tolist() == [0, 0]


def test_workers_asking_at_once_share_one_front_end(si_conditions):
    """The agent's worker threads ask for the front end together; building one calls ASE's
    lattice factories, which are not thread-safe (seen: an assertion inside ASE)."""
    from concurrent.futures import ThreadPoolExecutor

    fresh = Predictor()
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(lambda margin: fresh.preprocessor(si_conditions, margin), [True] * 8))
    assert all(p is got[0] for p in got)
    assert fresh.preprocessor(si_conditions) is not got[0]  # the narrow crops are another
