"""Sigma calibration on strain-dependent-content frames (tiny sets; Si [110] at 200 kV)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from stem_loop.inference.calibration import (
    ONE_SIGMA_COVERAGE,
    SEED_OFFSET,
    calibration_ranges,
    coverage_scales,
    generate_calibration,
)
from stem_loop.inference.dataset import TrainingRanges, generate_shards, load_shards
from stem_loop.inference.network import to_normalised
from stem_loop.inference.training import TrainingSettings, build_ensemble, load_model, train

SI_ONLY = dict(materials=(("Si", "110"),), voltages=(200.0,))


def test_coverage_scale_is_the_one_sigma_quantile():
    generator = torch.Generator().manual_seed(0)
    gauss = 2.0 * torch.randn(200_000, 1, generator=generator)
    heavy = torch.distributions.StudentT(3.0).sample((200_000, 1))
    scales = coverage_scales(torch.cat([gauss, heavy], 1))
    assert scales[0] == pytest.approx(2.0, rel=0.01)  # a Gaussian's 1 sigma
    inside = ((torch.cat([gauss, heavy], 1).abs() / scales) < 1).double().mean(0)
    torch.testing.assert_close(
        inside, torch.full((2,), ONE_SIGMA_COVERAGE, dtype=torch.double), atol=2e-3, rtol=0
    )
    # heavy tails: a variance match would give wider intervals than the coverage asks for
    assert scales[1] < heavy.square().mean().sqrt() * 0.8


@pytest.mark.parametrize("bad", [torch.empty(0, 6), torch.tensor([[0.5, float("nan")]])])
def test_coverage_scale_refuses_empty_or_non_finite_errors(bad):
    with pytest.raises(ValueError, match="normalised errors"):
        coverage_scales(bad)


def test_calibration_frames_have_strain_dependent_contents_and_their_own_seed(tmp_path):
    assert calibration_ranges(TrainingRanges(thickness_nm=(10.0, 20.0))) == TrainingRanges(
        thickness_nm=(10.0, 20.0), strain_contents=True
    )
    paths = generate_calibration(tmp_path / "cal", 1, seed=4, frames_per_shard=128, **SI_ONLY)
    ranges = (tmp_path / "cal" / "ranges.json").read_text()
    assert '"strain_contents": true' in ranges
    same_stream = generate_shards(
        tmp_path / "direct",
        1,
        frames_per_shard=128,
        block=128,
        seed=4 + SEED_OFFSET,
        ranges=calibration_ranges(),
        **SI_ONLY,
    )
    np.testing.assert_array_equal(
        load_shards(paths)["descriptors"], load_shards(same_stream)["descriptors"]
    )


def test_ensemble_sigmas_cover_68_percent_of_the_calibration_errors(tmp_path):
    shards = generate_shards(
        tmp_path / "shards", 2, seed=7, frames_per_shard=256, block=128, **SI_ONLY
    )
    calibration = generate_calibration(tmp_path / "cal", 1, frames_per_shard=256, **SI_ONLY)
    tiny = dict(epochs=2, batch=32, learning_rate=3e-3, width=8, hidden=32)
    dirs = [tmp_path / f"member{seed}" for seed in (0, 1)]
    for seed, directory in zip((0, 1), dirs, strict=True):
        train(shards, directory, TrainingSettings(seed=seed, **tiny))
    plain = build_ensemble(dirs, shards, tmp_path / "plain")
    meta = build_ensemble(dirs, shards, tmp_path / "ensemble", calibration_paths=calibration)
    assert "sigma_calibration" not in plain
    assert meta["sigma_calibration"]["frames"] == 256
    assert meta["sigma_calibration"]["data_ranges"]["strain_contents"] is True
    assert meta["sigma_scale"] != plain["sigma_scale"]
    assert meta["ood"] == plain["ood"]  # the OOD thresholds still come from training frames

    model, _ = load_model(tmp_path / "ensemble")
    data = load_shards(calibration)
    lattice = torch.as_tensor(data["lattice_strain"])
    target = to_normalised(torch.as_tensor(data["descriptors"]), lattice)
    with torch.no_grad():
        mean, log_var = model(torch.as_tensor(data["crops"]).float(), torch.as_tensor(data["side"]))
    sigma = torch.exp(0.5 * log_var) * torch.tensor(meta["sigma_scale"])
    inside = ((target - mean).abs() < sigma).double().mean(0)
    assert torch.all((inside - ONE_SIGMA_COVERAGE).abs() <= 2 / 256)
