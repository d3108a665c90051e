"""Held-out sets pooled and cut: merge_heldout, select_runs, and the second shipped set's
crystals."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from stem_loop.inference.evaluation import (
    crystal_interval,
    load_heldout,
    merge_heldout,
    select_runs,
)
from stem_loop.inference.exact_calibration import SHIPPED_VALIDATION
from stem_loop.inference.heldout import (
    SECOND_HELDOUT,
    SECOND_HELDOUT_SEED,
    SHIPPED_HELDOUT,
    plan_heldout,
)


@pytest.fixture(scope="module")
def two_sets():
    return load_heldout(SHIPPED_HELDOUT), load_heldout(SHIPPED_VALIDATION)


def test_merged_sets_keep_every_pattern_and_number_their_runs_on(two_sets):
    a, b = two_sets
    merged = merge_heldout(a, b)
    runs_a = len(a["meta"]["runs"])
    assert len(merged["counts"]) == len(a["counts"]) + len(b["counts"])
    np.testing.assert_array_equal(merged["counts"][len(a["counts"]) :], b["counts"])
    np.testing.assert_array_equal(merged["exx"], np.concatenate([a["exx"], b["exx"]]))
    np.testing.assert_array_equal(merged["run_index"][: len(a["counts"])], a["run_index"])
    np.testing.assert_array_equal(merged["run_index"][len(a["counts"]) :], b["run_index"] + runs_a)
    assert merged["meta"]["runs"] == a["meta"]["runs"] + b["meta"]["runs"]
    # each run's patterns still share its crystal's strain
    for run, meta in enumerate(merged["meta"]["runs"]):
        rows = merged["run_index"] == run
        np.testing.assert_allclose(merged["exx"][rows], meta["strain"][0], rtol=1e-6)
    # twice the crystals: the interval of a pooled rms comes from all of them
    errors = np.random.default_rng(0).normal(size=len(merged["counts"]))
    lo, hi = crystal_interval(errors, merged["run_index"])
    assert lo < np.sqrt(np.mean(errors**2)) < hi


def test_sets_that_differ_are_not_merged(two_sets):
    a, b = two_sets
    other = copy.deepcopy(b)
    other["meta"]["thicknesses_nm"] = other["meta"]["thicknesses_nm"][::-1]
    with pytest.raises(ValueError, match="thicknesses_nm"):
        merge_heldout(a, other)
    small = dict(b, counts=b["counts"][:, :64, :64])
    with pytest.raises(ValueError, match="frame shape"):
        merge_heldout(a, small)
    with pytest.raises(ValueError, match="at least one"):
        merge_heldout()


def test_selected_runs_keep_their_patterns_in_the_order_asked(two_sets):
    a, _ = two_sets
    picked = select_runs(a, [5, 0])
    rows5, rows0 = (np.flatnonzero(a["run_index"] == r) for r in (5, 0))
    np.testing.assert_array_equal(picked["counts"], a["counts"][np.r_[rows5, rows0]])
    np.testing.assert_array_equal(picked["thickness_nm"], a["thickness_nm"][np.r_[rows5, rows0]])
    np.testing.assert_array_equal(picked["run_index"], np.repeat([0, 1], [len(rows5), len(rows0)]))
    assert picked["meta"]["runs"] == [a["meta"]["runs"][5], a["meta"]["runs"][0]]
    assert picked["meta"]["thicknesses_nm"] == a["meta"]["thicknesses_nm"]
    # a selection merges back with the rest like any set
    assert len(merge_heldout(picked, select_runs(a, [1]))["meta"]["runs"]) == 3
    with pytest.raises(ValueError, match="out of range"):
        select_runs(a, [len(a["meta"]["runs"])])
    with pytest.raises(ValueError, match="repeated"):
        select_runs(a, [1, 1])


def test_the_second_held_out_set_holds_other_crystals(two_sets):
    second = load_heldout(SECOND_HELDOUT)
    planned = plan_heldout(2, seed=SECOND_HELDOUT_SEED)
    assert [r["strain"] for r in second["meta"]["runs"]] == [list(r.strain) for r in planned]
    assert len(second["counts"]) == 8 * len(planned)
    seen = {tuple(r["strain"]) for s in two_sets for r in s["meta"]["runs"]}
    assert not seen & {tuple(r["strain"]) for r in second["meta"]["runs"]}
