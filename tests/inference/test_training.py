"""Training data generation and training (tiny sets; Si [110] at 200 kV only)."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from stem_loop.inference import BeamConditions, Predictor
from stem_loop.inference.dataset import TrainingRanges, generate_shards, load_shards
from stem_loop.inference.lattice import CROP_PX
from stem_loop.inference.network import (
    MAX_DISKS,
    N_SIDE,
    N_SIDE_POINT_SPREAD,
    DescriptorNet,
    gaussian_nll,
    to_normalised,
    to_physical,
    widen_side,
)
from stem_loop.inference.training import (
    META_FILE,
    TrainingSettings,
    load_model,
    member_state,
    train,
)

from .conftest import random_descriptors

SI_ONLY = dict(materials=(("Si", "110"),), voltages=(200.0,), frames_per_shard=256, block=128)


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    return generate_shards(tmp_path_factory.mktemp("shards"), 2, seed=7, **SI_ONLY)


def test_shards_hold_inputs_and_truth_in_range(shards):
    data = load_shards(shards)
    assert data["crops"].shape == (512, 13, 24, 24) and data["crops"].dtype == np.float16
    truth = data["descriptors"]
    assert np.all(np.abs(truth[:, :3]) <= 0.02)
    low, high = TrainingRanges().thickness_nm
    assert (low, high) == (10.0, 85.0)  # 80 nm, the top of the held-out set, is not an edge
    assert np.all((truth[:, 3] >= low) & (truth[:, 3] <= high))
    assert np.all((data["dose"] >= 1e3) & (data["dose"] <= 1e5))
    assert np.all(data["camera_length_error"] == 0)  # calibrated camera length (see ranges)
    assert np.ptp(data["side"][:, 11]) > 0.5  # ...but the optical axis moves (centre shifts)
    # the lattice estimate carries the shear before any learning (the content bias of the
    # registration is radial, so it shows in exx and eyy, not in exy)
    bright = data["dose"] > 1e4
    shear_error = np.abs(data["lattice_strain"][bright, 2] - truth[bright, 2])
    assert np.median(shear_error) < 0.003


def test_generation_is_seeded_and_resumes(shards, tmp_path):
    again = generate_shards(tmp_path, 1, seed=7, **SI_ONLY)
    np.testing.assert_array_equal(np.load(again[0])["side"], np.load(shards[0])["side"])
    stamp = again[0].stat().st_mtime_ns
    generate_shards(tmp_path, 1, seed=7, **SI_ONLY)
    assert again[0].stat().st_mtime_ns == stamp  # kept, not regenerated


def test_parallel_generation_writes_the_same_shards(shards, tmp_path):
    # shard i is seeded by (seed, i) whichever process writes it
    parallel = generate_shards(tmp_path, 2, seed=7, workers=2, **SI_ONLY)
    for mine, serial in zip(parallel, shards, strict=True):
        a, b = np.load(mine), np.load(serial)
        for key in ("side", "descriptors", "crops"):
            np.testing.assert_array_equal(a[key], b[key])


def test_bad_worker_count_is_refused_before_anything_is_written(tmp_path):
    with pytest.raises(ValueError, match="workers must be at least 1"):
        generate_shards(tmp_path / "none", 1, workers=0, **SI_ONLY)
    assert not (tmp_path / "none").exists()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_training_on_a_gpu_follows_the_cpu_recipe(shards, tmp_path):
    # same initial weights, batches and schedule; the kernels round differently
    settings = TrainingSettings(epochs=2, batch=64, width=8, hidden=32)
    on_cpu = train(shards, tmp_path / "cpu", settings)["training"]["history"]
    on_gpu = train(shards, tmp_path / "gpu", settings, device="cuda")["training"]["history"]
    cpu_loss = [h["train_loss"] for h in on_cpu]
    gpu_loss = [h["train_loss"] for h in on_gpu]
    assert gpu_loss == pytest.approx(cpu_loss, abs=0.02), (cpu_loss, gpu_loss)
    # a GPU checkpoint is read on the CPU: nothing left to train, the same best weights
    again = train(shards, tmp_path / "gpu", settings, device="cpu")
    assert [h["train_loss"] for h in again["training"]["history"]] == gpu_loss
    first, _ = load_model(tmp_path / "gpu")
    assert all(p.device.type == "cpu" for p in first.parameters())


def test_training_lowers_the_loss_and_resumes(shards, tmp_path):
    settings = TrainingSettings(epochs=6, batch=32, learning_rate=3e-3, width=8, hidden=32)
    meta = train(shards, tmp_path, settings)
    losses = [h["train_loss"] for h in meta["training"]["history"]]
    assert losses[-1] < losses[0]
    assert meta["validation_rms"]["thickness_nm"] < 25.0  # the spread of the truth is 20 nm
    again = train(shards, tmp_path, settings)  # checkpoint at the last epoch: nothing to redo
    assert len(again["training"]["history"]) == settings.epochs
    stored = json.loads((tmp_path / META_FILE).read_text())
    assert stored["network"] == {"width": 8, "hidden": 32}
    predictor = Predictor(tmp_path)
    frames = np.zeros((2, 128, 128), dtype=np.uint16)
    assert predictor.predict(frames, predictor_conditions()).ood.all()


def test_frames_whose_lattice_fit_failed_are_left_out(shards, tmp_path):
    """The predictor flags them; training on their far-out targets only destabilises it."""
    from stem_loop.inference.lattice import MAX_LATTICE_STRAIN

    data = load_shards(shards)
    failed = [3, 300]
    data["lattice_strain"][failed] = 3 * MAX_LATTICE_STRAIN
    corrupt = tmp_path / "corrupt.npz"
    np.savez(corrupt, **data)
    settings = TrainingSettings(epochs=1, batch=64, width=8, hidden=32)
    meta = train([corrupt], tmp_path / "model", settings)
    assert meta["training"]["failed_fits"] == 2
    assert train(shards, tmp_path / "clean", settings)["training"]["failed_fits"] == 0
    # the held-back frames that set sigma scales and OOD thresholds leave them out too
    assert np.isfinite(meta["validation_rms"]["exx"]) and meta["validation_rms"]["exx"] < 0.02


def test_gradient_steps_are_clipped(shards, tmp_path, monkeypatch):
    norms = []
    clip = torch.nn.utils.clip_grad_norm_

    def record(parameters, max_norm, *args, **kwargs):
        norms.append(max_norm)
        return clip(parameters, max_norm, *args, **kwargs)

    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", record)
    settings = TrainingSettings(epochs=1, batch=128, width=8, hidden=32, grad_clip=0.5)
    train(shards, tmp_path, settings)
    assert norms and set(norms) == {0.5}  # one clip per step, at the configured norm


def predictor_conditions():
    from stem_loop.inference import BeamConditions

    return BeamConditions()


def test_normalisation_round_trip():
    truth = torch.tensor([[0.01, -0.02, 0.005, 60.0, 1.5, -2.0]])
    lattice = torch.tensor([[0.012, -0.018, 0.004]])
    normalised = to_normalised(truth, lattice)
    value, std = to_physical(normalised, torch.zeros_like(normalised), lattice)
    torch.testing.assert_close(value, truth)
    assert torch.all(std > 0)


def test_gaussian_nll_prefers_honest_variance():
    target = torch.zeros(1000, 1)
    mean = torch.randn(1000, 1, generator=torch.Generator().manual_seed(0)) * 0.5
    honest = gaussian_nll(mean, torch.full_like(mean, np.log(0.25)), target, beta=0.0)
    overconfident = gaussian_nll(mean, torch.full_like(mean, np.log(0.01)), target, beta=0.0)
    assert honest < overconfident


def test_strain_content_blocks_share_one_content_cell(tmp_path):
    ranges = TrainingRanges(strain_contents=True)
    paths = generate_shards(
        tmp_path, 1, seed=3, ranges=ranges, **dict(SI_ONLY, frames_per_shard=128, block=64)
    )
    strain = load_shards(paths)["descriptors"][:, :3]
    assert np.all(np.abs(strain) <= 0.02)
    for block in strain.reshape(2, 64, 3):
        cells = np.unique(np.rint(block / 0.005), axis=0)
        assert len(cells) == 1  # one Bloch-wave content correction per block


def test_the_content_engine_changes_the_contents_not_the_truth(tmp_path):
    """Same seed and grid, Bloch against strained-cell multislice contents: the same strains,
    thicknesses and tilts, other disk contents; the shards record which engine made them."""
    made = {}
    for engine in ("bloch", "multislice"):
        ranges = TrainingRanges(strain_contents=True, content_engine=engine, content_step=0.01)
        paths = generate_shards(
            tmp_path / engine, 1, seed=5, ranges=ranges, **dict(SI_ONLY, block=256)
        )
        made[engine] = load_shards(paths)
        recorded = json.loads((tmp_path / engine / "ranges.json").read_text())
        assert recorded["content_engine"] == engine and recorded["content_step"] == 0.01
    np.testing.assert_array_equal(made["bloch"]["descriptors"], made["multislice"]["descriptors"])
    bloch, cell = (made[e]["crops"].astype(np.float32) for e in ("bloch", "multislice"))
    assert np.abs(bloch - cell).mean() > 0.01 * np.abs(bloch).mean()


def test_ensemble_joins_members_into_one_calibrated_gaussian(shards, tmp_path):
    from stem_loop.inference.network import DescriptorEnsemble
    from stem_loop.inference.training import build_ensemble, load_model

    tiny = dict(epochs=2, batch=32, learning_rate=3e-3, width=8, hidden=32)
    dirs = [tmp_path / f"member{seed}" for seed in (0, 1)]
    for seed, directory in zip((0, 1), dirs, strict=True):
        train(shards, directory, TrainingSettings(seed=seed, **tiny))
    meta = build_ensemble(dirs, shards, tmp_path / "ensemble")
    assert meta["members"] == 2 and len(meta["training"]["members"]) == 2
    assert all(s > 0 for s in meta["sigma_scale"])
    # what the frames span travels with the weights
    recorded = json.loads((shards[0].parent / "ranges.json").read_text())
    assert meta["training"]["data_ranges"] == recorded

    ensemble, _ = load_model(tmp_path / "ensemble")
    members = [load_model(d)[0] for d in dirs]
    assert isinstance(ensemble, DescriptorEnsemble) and len(ensemble.members) == 2
    data = load_shards(shards)
    crops = torch.as_tensor(data["crops"][:64]).float()
    side = torch.as_tensor(data["side"][:64])
    with torch.no_grad():
        mean, log_var = ensemble(crops, side)
        outs = [m(crops, side) for m in members]
    member_means = torch.stack([m for m, _ in outs])
    torch.testing.assert_close(mean, member_means.mean(0))
    assert not torch.allclose(member_means[0], member_means[1])  # different seeds
    # the mixture is wider than its members on average: it adds their disagreement
    mean_member_var = torch.stack([v.exp() for _, v in outs]).mean(0)
    assert torch.all(log_var.exp() >= mean_member_var * (1 - 1e-5))
    predicted = Predictor(tmp_path / "ensemble").predict(
        np.zeros((1, 128, 128), np.uint16), predictor_conditions()
    )
    assert predicted.ood.all()  # the ensemble still flags a blank frame


def test_ensemble_refuses_members_that_saw_its_calibration_frames(shards, tmp_path):
    from stem_loop.inference.training import build_ensemble

    tiny = dict(epochs=1, batch=64, width=8, hidden=32)
    train(shards, tmp_path / "a", TrainingSettings(seed=0, **tiny))
    train(shards, tmp_path / "b", TrainingSettings(seed=1, split_seed=5, **tiny))
    with pytest.raises(ValueError, match="split_seed"):
        build_ensemble([tmp_path / "a", tmp_path / "b"], shards, tmp_path / "ensemble")
    with pytest.raises(ValueError, match="other data"):  # trained on one shard of two
        train(shards[:1], tmp_path / "c", TrainingSettings(seed=1, **tiny))
        build_ensemble([tmp_path / "a", tmp_path / "c"], shards, tmp_path / "ensemble")
    assert not (tmp_path / "ensemble").exists()


def test_node_contents_are_refused_past_their_span_before_any_shard(tmp_path):
    ranges = TrainingRanges(strain=0.025, strain_contents=True, content_engine="nodes")
    with pytest.raises(ValueError, match="content nodes span"):
        generate_shards(tmp_path, 1, ranges=ranges, **SI_ONLY)
    assert not list(tmp_path.glob("shard*"))


def test_strained_cell_contents_take_the_cells_library():
    from stem_loop.inference.dataset import library_source

    assert library_source(TrainingRanges()) == "abtem"
    assert library_source(TrainingRanges(strain_contents=True)) == "abtem"  # Bloch waves
    for engine in ("multislice", "nodes"):
        ranges = TrainingRanges(strain_contents=True, content_engine=engine)
        assert library_source(ranges) == "cell"
        assert library_source(replace(ranges, strain_contents=False)) == "abtem"


def test_point_spread_blurs_the_frames_not_the_truth(shards, tmp_path):
    """Same seed with a 1.5 px point-spread: the same truths and doses, softer disk edges."""
    ranges = TrainingRanges(point_spread_px=(1.5, 1.5))
    blurred = load_shards(generate_shards(tmp_path, 1, seed=7, ranges=ranges, **SI_ONLY))
    sharp = {k: v[:256] for k, v in load_shards(shards[:1]).items()}
    for key in ("descriptors", "dose", "convergence_mrad"):
        np.testing.assert_array_equal(blurred[key], sharp[key])

    def steepness(data: dict) -> float:
        """The steepest step between neighbouring pixels of each disk's mean bright crop
        (averaged over the frames the shot noise would hide it in), averaged over disks."""
        bright = data["dose"] > 3e4
        mean_crop = data["crops"][bright].astype(np.float32).mean(0)
        return float(np.abs(np.diff(mean_crop, axis=-1)).max(axis=(-1, -2)).mean())

    assert steepness(blurred) < 0.5 * steepness(sharp)
    assert json.loads((tmp_path / "ranges.json").read_text())["point_spread_px"] == [1.5, 1.5]
    # each frame records its blur, the network's input where it takes one
    np.testing.assert_array_equal(blurred["point_spread_px"], 1.5)
    np.testing.assert_array_equal(sharp["point_spread_px"], 0.0)


@pytest.mark.parametrize("bad", [(0.5, 0.2), (-0.1, 0.5), (0.0, 9.0)])
def test_a_bad_point_spread_range_is_refused(bad):
    with pytest.raises(ValueError, match="point_spread_px"):
        TrainingRanges(point_spread_px=bad)


def test_fine_tuning_starts_from_the_given_member(shards, tmp_path):
    from stem_loop.inference.training import member_state

    settings = TrainingSettings(epochs=1, batch=64, width=8, hidden=32)
    train(shards, tmp_path / "first", settings)
    start = member_state(tmp_path / "first")
    # a learning rate too small to move the weights: they stay those it started from
    still = replace(settings, learning_rate=1e-12, seed=5)
    meta = train(shards, tmp_path / "tuned", still, start_from=tmp_path / "first")
    assert meta["training"]["start_from"] == dict(path=str(tmp_path / "first"), member=0)
    tuned = member_state(tmp_path / "tuned")
    fresh = train(shards, tmp_path / "fresh", still)
    assert "start_from" not in fresh["training"]
    for name, value in start.items():
        torch.testing.assert_close(tuned[name], value, atol=1e-6, rtol=0)
    assert any(not torch.allclose(member_state(tmp_path / "fresh")[k], v) for k, v in start.items())
    with pytest.raises(IndexError, match="1 member"):
        member_state(tmp_path / "first", 1)
    with pytest.raises(RuntimeError, match="size mismatch"):  # another architecture
        train(shards, tmp_path / "wide", replace(settings, width=16), start_from=tmp_path / "first")


def test_widening_the_side_inputs_keeps_what_the_network_reads():
    torch.manual_seed(0)
    sharp = DescriptorNet(8, 32).eval()
    wide = DescriptorNet(8, 32, N_SIDE_POINT_SPREAD).eval()
    wide.load_state_dict(widen_side(sharp.state_dict(), N_SIDE_POINT_SPREAD))
    crops, side = torch.randn(5, MAX_DISKS, CROP_PX, CROP_PX), torch.randn(5, N_SIDE)
    spread = torch.rand(5, 1)
    with torch.no_grad():
        got, expected = wide(crops, torch.cat([side, spread], 1)), sharp(crops, side)
    for a, b in zip(got, expected, strict=True):  # means and log-variances
        torch.testing.assert_close(a, b)
    state = sharp.state_dict()
    assert widen_side(state, N_SIDE) is state  # nothing to add
    with pytest.raises(ValueError, match="more than"):
        widen_side(wide.state_dict(), N_SIDE)
    with pytest.raises(ValueError, match="side_features"):
        DescriptorNet(8, 32, N_SIDE + 2)
    assert wide.config["side_features"] == N_SIDE_POINT_SPREAD
    assert "side_features" not in sharp.config  # the shipped metadata keep their form


def test_a_point_spread_input_is_trained_and_read(shards, tmp_path, si_fast):
    """Fine-tuned with a point-spread input: it starts weighted zero (the same readings), is
    fed each frame's blur and learns a weight for it; a sharp model refuses a point-spread."""
    ranges = TrainingRanges(point_spread_px=(0.0, 1.5))
    blurred = generate_shards(tmp_path / "blurred", 2, seed=3, ranges=ranges, **SI_ONLY)
    spread = load_shards(blurred)["point_spread_px"]
    assert len(np.unique(spread)) == 4 and spread.min() >= 0.0 and spread.max() <= 1.5
    settings = TrainingSettings(epochs=1, batch=64, width=8, hidden=32)
    train(shards, tmp_path / "sharp", settings)
    with_input = replace(settings, point_spread_input=True)
    still = train(
        blurred,
        tmp_path / "still",
        replace(with_input, learning_rate=1e-12),
        start_from=tmp_path / "sharp",
    )
    assert still["network"]["side_features"] == N_SIDE_POINT_SPREAD
    start, kept = member_state(tmp_path / "sharp"), member_state(tmp_path / "still")
    torch.testing.assert_close(
        kept["head.0.weight"][:, :-1], start["head.0.weight"], atol=1e-6, rtol=0
    )
    assert kept["head.0.weight"][:, -1].abs().max() < 1e-6
    train(blurred, tmp_path / "tuned", with_input, start_from=tmp_path / "sharp")
    assert member_state(tmp_path / "tuned")["head.0.weight"][:, -1].abs().max() > 1e-4

    patterns = si_fast.patterns(random_descriptors(4, seed=2))
    frames = np.random.default_rng(0).poisson(patterns * 1e5)
    sharp_model, read_model = Predictor(tmp_path / "sharp"), Predictor(tmp_path / "still")
    assert read_model.takes_point_spread and not sharp_model.takes_point_spread
    conditions = BeamConditions()
    a = sharp_model.predict(frames, conditions)
    b = read_model.predict(frames, conditions)  # the new input weighted zero: same readings
    assert np.isfinite(a.values["exx"]).all()
    for name in a.values:
        np.testing.assert_allclose(b.values[name], a.values[name], rtol=1e-5, atol=1e-7)
    told = read_model.predict(frames, replace(conditions, point_spread_px=0.5))
    np.testing.assert_allclose(told.values["exx"], a.values["exx"], rtol=1e-5, atol=1e-7)
    with pytest.raises(ValueError, match="sharp detector"):
        sharp_model.predict(frames, replace(conditions, point_spread_px=0.5))
    assert read_model.point_spread_range == (0.0, 1.5)  # what its training data spanned
    with pytest.raises(ValueError, match="0 to 1.5 px only"):
        read_model.predict(frames, replace(conditions, point_spread_px=2.0))
