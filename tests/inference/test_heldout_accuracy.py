"""The shipped weights on the shipped held-out set (exact multislice patterns, never trained on).

The bounds are regression bounds at the accuracy measured when the weights were trained (see
docs/model_card.rst); the issue's targets are in ``TARGET`` and the model card says which are met.
"""

from __future__ import annotations

import numpy as np
import pytest

from stem_loop.inference import Predictor
from stem_loop.inference.evaluation import load_heldout, report
from stem_loop.inference.heldout import SHIPPED_HELDOUT

#: Issue #3 targets at 1e5 electrons per frame (strain as a fraction).
TARGET = dict(strain=0.0010, thickness_nm=2.0, tilt_mrad=0.3, coverage=(0.60, 0.76))
#: What the shipped weights must not fall behind: measured when they were trained (strain
#: 0.147/0.166/0.089 %, thickness 4.9 nm, tilt 0.17/0.16 mrad, coverage 60-67 %), with margin.
#: Normal strain and thickness miss TARGET; see the model card.
REGRESSION = dict(strain=0.0019, thickness_nm=6.0, tilt_mrad=0.22, coverage=(0.55, 0.76))


@pytest.fixture(scope="module")
def summary() -> dict:
    if not SHIPPED_HELDOUT.exists():
        pytest.fail(f"the held-out set {SHIPPED_HELDOUT} is missing from the package")
    return report(Predictor(), doses=(1e5,), heldout=load_heldout(), shot_noise=False)["summary"]


def test_heldout_covers_both_materials_and_all_voltages():
    held = load_heldout()
    groups = {
        (r["conditions"]["material"], r["conditions"]["voltage_kv"]) for r in held["meta"]["runs"]
    }
    assert {m for m, _ in groups} == {"Si", "SrTiO3"}
    assert {v for _, v in groups} == {80.0, 200.0, 300.0}
    assert held["meta"]["settings"]["sampling_a"] <= 0.05  # converged exact physics


def test_few_heldout_frames_are_flagged(summary):
    assert summary["ood"] <= 0.05 * summary["frames"]


def test_strain_accuracy(summary):
    for name in ("exx", "eyy", "exy"):
        assert summary[f"{name}_rms"] <= REGRESSION["strain"], name


def test_thickness_and_tilt_accuracy(summary):
    assert summary["thickness_nm_rms"] <= REGRESSION["thickness_nm"]
    for name in ("tilt_x_mrad", "tilt_y_mrad"):
        assert summary[f"{name}_rms"] <= REGRESSION["tilt_mrad"], name


def test_predicted_sigma_covers_the_errors(summary):
    lo, hi = REGRESSION["coverage"]
    covered = np.array(
        [summary[f"{k}_coverage_1sigma"] for k in ("exx", "eyy", "exy", "thickness_nm")]
    )
    assert np.all((covered >= lo) & (covered <= hi)), covered
