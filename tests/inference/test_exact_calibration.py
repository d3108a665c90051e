"""Sigmas widened on the exact validation set, which is apart from the held-out set."""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict

import numpy as np
import pytest

from sim_devices.sample import DESCRIPTOR_NAMES
from stem_loop.inference import Predictor
from stem_loop.inference.calibration import ONE_SIGMA_COVERAGE
from stem_loop.inference.evaluation import load_heldout, predict_heldout, repeat_draws
from stem_loop.inference.exact_calibration import (
    SHIPPED_VALIDATION,
    VALIDATION_DOSE,
    calibrate_on_exact,
    exact_widening,
    plan_validation,
)
from stem_loop.inference.heldout import REFERENCE_SETTINGS, plan_heldout
from stem_loop.inference.predictor import SHIPPED_WEIGHTS
from stem_loop.inference.training import META_FILE, WEIGHTS_FILE


def _runs(held: dict, keep: list[int]) -> dict:
    """The patterns of runs ``keep`` of an exact set."""
    rows = np.flatnonzero(np.isin(held["run_index"], keep))
    sub = {k: v[rows] for k, v in held.items() if k != "meta"}
    sub["run_index"] = np.searchsorted(keep, held["run_index"][rows])
    sub["meta"] = dict(held["meta"], runs=[held["meta"]["runs"][i] for i in keep])
    return sub


@pytest.fixture()
def model_dir(tmp_path):
    """A copy of the shipped model with its fast-model sigmas only."""
    out = tmp_path / "model"
    out.mkdir()
    shutil.copy2(SHIPPED_WEIGHTS / WEIGHTS_FILE, out / WEIGHTS_FILE)
    meta = json.loads((SHIPPED_WEIGHTS / META_FILE).read_text())
    exact = meta["sigma_calibration"].pop("exact", None)
    if exact is not None:
        meta["sigma_scale"] = exact["fast_sigma_scale"]
    (out / META_FILE).write_text(json.dumps(meta))
    return out


def test_validation_crystals_are_not_the_heldout_ones():
    held = {r.strain for r in plan_heldout()}
    validation = plan_validation()
    assert not held & {r.strain for r in validation}
    groups = [(r.conditions.material, r.conditions.voltage_kv) for r in validation]
    assert len(set(groups)) == 6 and len(groups) == 18  # three per material and voltage
    assert len({r.strain for r in validation}) == 18


def test_the_shipped_validation_set_is_the_planned_one():
    shipped = load_heldout(SHIPPED_VALIDATION)
    planned = plan_validation()
    assert [r["strain"] for r in shipped["meta"]["runs"]] == [list(r.strain) for r in planned]
    assert shipped["meta"]["settings"] == asdict(REFERENCE_SETTINGS)  # the held-out sets' block
    assert len(shipped["run_index"]) == 8 * len(planned)


def test_widening_puts_the_quantile_inside_one_sigma_and_never_narrows(model_dir):
    validation = _runs(load_heldout(SHIPPED_VALIDATION), [0, 3])  # Si and SrTiO3 at 80 kV
    record = calibrate_on_exact(model_dir, validation, draws=2)
    factors = np.array(record["factors"])
    assert factors.shape == (len(DESCRIPTOR_NAMES),) and np.all(factors >= 1.0)
    meta = json.loads((model_dir / META_FILE).read_text())
    assert np.allclose(meta["sigma_scale"], np.array(record["fast_sigma_scale"]) * factors)
    assert meta["sigma_calibration"]["exact"]["patterns"] == 16
    # the widened model's sigmas cover at least the quantile on the same draws
    pooled = repeat_draws(validation, 2)
    # calibrated in float32 (the bfloat16 reading's sigmas differ by about 0.5 %)
    result = predict_heldout(Predictor(model_dir, precision="float32"), pooled, VALIDATION_DOSE, 0)
    n = record["frames_used"]
    for i, name in enumerate(DESCRIPTOR_NAMES):
        z = np.abs(result["values"][name] - pooled[name]) / result["std"][name]
        covered = float(np.mean(z[np.isfinite(z)] <= 1.0 + 1e-6))
        if factors[i] > 1.0:
            assert covered >= ONE_SIGMA_COVERAGE - 1.0 / n, name
        else:
            assert covered == pytest.approx(record["coverage_before"][i], abs=1e-9), name


@pytest.mark.parametrize("views, key", [(4, "mirror"), (2, "mirror2")])
def test_the_mirror_average_is_calibrated_on_the_same_draws(model_dir, views, key):
    from stem_loop.inference.mirror import VIEW_SETS, mirror_factors

    validation = _runs(load_heldout(SHIPPED_VALIDATION), [0, 3])
    calibrate_on_exact(model_dir, validation, draws=2)
    record = json.loads((model_dir / META_FILE).read_text())["sigma_calibration"][key]
    assert len(record["factors"]) == len(DESCRIPTOR_NAMES) and record["patterns"] == 16
    assert tuple(record["views"]) == VIEW_SETS[views]
    mirrored = Predictor(model_dir, mirror=views, precision="float32")
    np.testing.assert_allclose(mirrored.mirror_scale, record["factors"])
    # with its factors, the averaged reading's 1-sigma covers the quantile on those draws
    again = mirror_factors(mirrored, validation, draws=2)
    n = again["frames_used"]
    for i, name in enumerate(DESCRIPTOR_NAMES):
        assert again["coverage_before"][i] == pytest.approx(ONE_SIGMA_COVERAGE, abs=1.5 / n), name
    assert again["rms"] == record["rms"]  # the factors scale sigmas, not values


def test_calibrating_twice_gives_the_same_model(model_dir):
    validation = _runs(load_heldout(SHIPPED_VALIDATION), [1])
    first = calibrate_on_exact(model_dir, validation, draws=1)
    scales = json.loads((model_dir / META_FILE).read_text())["sigma_scale"]
    second = calibrate_on_exact(model_dir, validation, draws=1)
    assert second["factors"] == first["factors"]
    assert json.loads((model_dir / META_FILE).read_text())["sigma_scale"] == scales


def test_exact_widening_refuses_a_set_it_cannot_read(model_dir):
    validation = _runs(load_heldout(SHIPPED_VALIDATION), [2])
    validation["counts"] = np.zeros_like(validation["counts"])  # blank frames: all flagged
    with pytest.raises(ValueError, match="out of distribution"):
        exact_widening(Predictor(model_dir), validation, draws=1)


def test_the_shipped_model_is_widened_on_the_shipped_validation_set():
    meta = json.loads((SHIPPED_WEIGHTS / META_FILE).read_text())
    exact = meta["sigma_calibration"]["exact"]
    assert exact["set"] == SHIPPED_VALIDATION.name
    assert np.allclose(
        meta["sigma_scale"], np.array(exact["fast_sigma_scale"]) * np.array(exact["factors"])
    )


def test_a_point_spread_model_is_calibrated_on_patterns_blurred_like_its_training(model_dir):
    from sim_devices.point_spread import blur_patterns
    from stem_loop.inference.exact_calibration import blurred_runs

    validation = _runs(load_heldout(SHIPPED_VALIDATION), [0, 4])
    as_built = [dict(r["conditions"]) for r in validation["meta"]["runs"]]
    blurred = blurred_runs(validation, (0.8, 0.8))
    np.testing.assert_allclose(blurred["counts"], blur_patterns(validation["counts"], 0.8))
    # a range: one seeded draw per run, in run order
    spread = blurred_runs(validation, (0.3, 1.0), seed=3)
    sigmas = np.random.default_rng(3).uniform(0.3, 1.0, 2)
    for run, sigma in enumerate(sigmas):
        rows = validation["run_index"] == run
        np.testing.assert_allclose(
            spread["counts"][rows], blur_patterns(validation["counts"][rows], sigma)
        )
    # unless stated, the conditions stay those of a sharp detector; stated, each run's sigma
    assert all("point_spread_px" not in r["conditions"] for r in spread["meta"]["runs"])
    told = blurred_runs(validation, (0.3, 1.0), seed=3, stated=True)
    assert [r["conditions"]["point_spread_px"] for r in told["meta"]["runs"]] == list(sigmas)
    assert [r["conditions"] for r in validation["meta"]["runs"]] == as_built  # a copy was changed
    record = calibrate_on_exact(model_dir, validation, draws=1, point_spread_px=(0.8, 0.8))
    assert record["point_spread_px"] == [0.8, 0.8]
    # the same widening as on patterns blurred by hand: the blur reached the measurement
    by_hand = calibrate_on_exact(model_dir, blurred, draws=1)
    assert record["factors"] == by_hand["factors"]
    sharp = calibrate_on_exact(model_dir, validation, draws=1)
    assert sharp["factors"] != record["factors"]
