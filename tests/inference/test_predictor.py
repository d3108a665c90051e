"""The shipped model: safe loading, OOD flags, refusals."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest
import torch

from stem_loop.inference import BeamConditions, Predictor
from stem_loop.inference.predictor import SHIPPED_WEIGHTS
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
