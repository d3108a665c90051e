"""The shipped weights on the shipped held-out set (exact multislice patterns, never trained on).

Every rms pools five Poisson draws of each pattern (``report``'s default): one draw's strain rms
moves by about 10 % from draw to draw. The bounds are regression bounds at the accuracy measured
(see docs/model_card.rst); the issue's targets are in ``TARGET`` and the model card says which
are met.
"""

from __future__ import annotations

from dataclasses import asdict

import numpy as np
import pytest

from sim_devices.sample import DESCRIPTOR_NAMES
from stem_loop.inference import Predictor
from stem_loop.inference.evaluation import crystal_interval, draw_split, load_heldout, report
from stem_loop.inference.heldout import REFERENCE_SETTINGS, SECOND_HELDOUT, SHIPPED_HELDOUT

#: Issue #3 targets at 1e5 electrons per frame (strain as a fraction).
TARGET = dict(strain=0.0010, thickness_nm=2.0, tilt_mrad=0.3, coverage=(0.60, 0.76))
#: What the shipped ensemble must not fall behind on the shipped held-out set (19.2 nm exact
#: block, five draws): measured strain 0.097/0.104/0.060 %, thickness 4.14 nm, tilt
#: 0.110/0.128 mrad, with margin. eyy strain (by 4 %) and the networks' own thickness miss
#: TARGET; the live thickness (doubtful frames refined) meets it. The sigmas, widened on the
#: exact validation set, cover 68-75 % over these five draws, inside TARGET (eyy, at 75 %,
#: reaches 77 % with eight draws: at the band's top edge). See the model card.
REGRESSION = dict(strain=0.0011, thickness_nm=4.5, tilt_mrad=0.15)


def test_shear_strain_meets_the_target(summary):
    assert summary["exy_rms"] <= TARGET["strain"]


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
    # converged exact physics: 0.05 A sampling, a 19.2 nm block (12.8 nm moves strain by 0.08 %)
    assert held["meta"]["settings"] == asdict(REFERENCE_SETTINGS)
    assert REFERENCE_SETTINGS.sampling_a <= 0.05 and REFERENCE_SETTINGS.box_nm >= 19.2
    assert load_heldout(SECOND_HELDOUT)["meta"]["settings"] == asdict(REFERENCE_SETTINGS)


def test_few_heldout_frames_are_flagged(summary):
    assert summary["ood"] <= 0.05 * summary["frames"]


def test_strain_accuracy(summary):
    for name in ("exx", "eyy", "exy"):
        assert summary[f"{name}_rms"] <= REGRESSION["strain"], name


def test_live_thickness_meets_the_target(summary):
    """What the live path publishes: the networks' thickness, refined by the fast model where
    their sigma exceeds 2 nm (measured: 1.01 nm, 12 % of frames refined, 1-sigma covers 69 %;
    the networks alone 4.14 nm)."""
    assert summary["thickness_live_nm_rms"] <= TARGET["thickness_nm"]
    assert summary["thickness_live_fraction_refined"] <= 0.20
    lo, hi = TARGET["coverage"]
    assert lo <= summary["thickness_live_coverage_1sigma"] <= hi


def test_thickness_and_tilt_accuracy(summary):
    assert summary["thickness_nm_rms"] <= REGRESSION["thickness_nm"]
    for name in ("tilt_x_mrad", "tilt_y_mrad"):
        assert summary[f"{name}_rms"] <= REGRESSION["tilt_mrad"], name


def test_predicted_sigma_covers_the_errors(summary):
    lo, hi = TARGET["coverage"]
    covered = {k: summary[f"{k}_coverage_1sigma"] for k in DESCRIPTOR_NAMES}
    assert all(lo <= c <= hi for c in covered.values()), covered


@pytest.mark.parametrize("views", [4, 2])
def test_mirror_views_read_the_heldout_set_better(summary, views):
    """Mirror views averaged (``Predictor(mirror=views)``), measured on this first set with
    the networks in bfloat16: four views 0.093 / 0.098 / 0.057 % strain, 4.08 nm thickness,
    0.090 / 0.114 mrad tilt, coverage 61-74 %; the pair 0.093 / 0.101 / 0.058 %, 4.02 nm,
    0.093 / 0.119 mrad, coverage 61-74 % (the single reading: 0.097 / 0.104 / 0.060 %)."""
    mirrored = report(
        Predictor(mirror=views), doses=(1e5,), heldout=load_heldout(), shot_noise=False
    )["summary"]
    for name in DESCRIPTOR_NAMES:
        assert mirrored[f"{name}_rms"] < summary[f"{name}_rms"], name
    if views == 4:  # the pair reaches it pooled over both held-out sets, not on this one alone
        for name in ("exx", "eyy", "exy"):
            assert mirrored[f"{name}_rms"] <= TARGET["strain"], name
    lo, hi = TARGET["coverage"]
    covered = {k: mirrored[f"{k}_coverage_1sigma"] for k in DESCRIPTOR_NAMES}
    assert all(lo <= c <= hi for c in covered.values()), covered


def test_crystal_interval_resamples_whole_runs():
    runs = np.repeat(np.arange(6), 8)
    same = np.tile(np.linspace(-1.0, 1.0, 8), 6)  # every crystal errs alike
    lo, hi = crystal_interval(same, runs)
    assert lo == pytest.approx(hi) == pytest.approx(np.sqrt(np.mean(same**2)))
    one_bad = np.where(runs == 0, 10.0, 0.1)
    lo, hi = crystal_interval(one_bad, runs)
    assert lo < np.sqrt(np.mean(one_bad**2)) < hi
    assert lo == pytest.approx(0.1)  # a redraw without the bad crystal is common
    assert crystal_interval(one_bad, runs) == (lo, hi)  # seeded


def test_draw_split_separates_the_counts_from_the_shared_error():
    rng = np.random.default_rng(3)
    truth = rng.uniform(-0.02, 0.02, 400)
    shared = rng.normal(0.0, 0.001, 400)  # the same in every draw of a pattern
    draws = 8
    values = (truth + shared + rng.normal(0.0, 0.0005, (draws, 400))).reshape(-1)
    spread, mean_error = draw_split(values, truth, draws)
    assert spread == pytest.approx(0.0005, rel=0.05)
    assert mean_error == pytest.approx(np.sqrt(np.mean(shared**2)), rel=0.05)
    # the two parts add up to the mean squared error
    mse = np.mean((values.reshape(draws, -1) - truth) ** 2)
    assert spread**2 + mean_error**2 == pytest.approx(mse, rel=1e-9)
    flagged = values.copy()
    flagged[3] = np.nan  # one draw of pattern 3 flagged: the pattern is left out
    kept = np.arange(400) != 3
    expected = draw_split(values.reshape(draws, -1)[:, kept].reshape(-1), truth[kept], draws)
    assert draw_split(flagged, truth, draws) == pytest.approx(expected)
    with pytest.raises(ValueError, match="2 draws"):
        draw_split(values[:400], truth, 1)
    with pytest.raises(ValueError, match="patterns"):
        draw_split(values[:-1], truth, draws)


def test_the_rms_pools_several_draws(summary):
    assert summary["draws"] == 5 and summary["frames"] == 5 * summary["patterns"]
    per_draw = np.array(summary["exx_rms_per_draw"])
    assert len(set(per_draw)) == 5  # each draw its own Poisson counts
    assert np.sqrt(np.mean(per_draw**2)) == pytest.approx(summary["exx_rms"], rel=1e-9)
    for name in ("exx", "eyy", "exy", "thickness_nm", "thickness_live_nm"):
        lo, hi = summary[f"{name}_rms_ci90"]
        assert lo < summary[f"{name}_rms"] < hi, name
    for name in ("exx", "eyy", "exy"):  # the split adds up to the pooled rms (nothing flagged)
        spread, shared = summary[f"{name}_spread"], summary[f"{name}_mean_error"]
        assert spread > 0 and shared > 0
        assert spread**2 + shared**2 == pytest.approx(summary[f"{name}_rms"] ** 2, rel=1e-9)


def _si_200(runs: int | None = None, thickness_nm: tuple[float, ...] | None = None) -> dict:
    """The held-out patterns of Si at 200 kV (the condition whose beam library CI builds):
    the first ``runs`` of its runs, at ``thickness_nm`` only if given."""
    held = load_heldout()
    keep = [
        i
        for i, r in enumerate(held["meta"]["runs"])
        if (r["conditions"]["material"], r["conditions"]["voltage_kv"]) == ("Si", 200.0)
    ][:runs]
    chosen = np.isin(held["run_index"], keep)
    if thickness_nm is not None:
        chosen &= np.isin(held["thickness_nm"], thickness_nm)
    rows = np.flatnonzero(chosen)
    sub = {k: v[rows] for k, v in held.items() if k != "meta"}
    sub["run_index"] = np.searchsorted(keep, held["run_index"][rows])
    sub["meta"] = dict(held["meta"], runs=[held["meta"]["runs"][i] for i in keep])
    return sub


def test_thickness_refined_by_the_fast_model_on_exact_patterns():
    """Every frame refined, on exact physics, with the strained cell's contents (one crystal,
    two thicknesses: one content cell); the whole set is measured by ``stem-loop bench
    inference --refine-thickness`` (unstrained contents: 0.57 nm)."""
    sub = _si_200(runs=1, thickness_nm=(30.0, 70.0))
    rep = report(
        Predictor(),
        doses=(1e5,),
        heldout=sub,
        shot_noise=False,
        refine_thickness=True,
        refine_contents="multislice",
    )
    summary = rep["summary"]
    assert summary["patterns"] == 2 and summary["frames"] == 2 * summary["draws"]
    assert summary["thickness_refined_nm_rms"] <= 1.0
    assert rep["rows"][0]["thickness_refined_nm_rms"] == summary["thickness_refined_nm_rms"]
    assert "thickness refined by the fast model" in rep["text"]


def test_fast_twin_renders_the_same_crystals_with_the_fast_model():
    """The twin separates network error from the fast/exact gap; it must be the same crystals."""
    from stem_loop.inference.evaluation import fast_twin

    sub = _si_200()
    rows = np.arange(len(sub["run_index"]))
    twin = fast_twin(sub)
    assert twin["counts"].shape == sub["counts"].shape
    assert np.array_equal(twin["exx"], sub["exx"]) and np.array_equal(
        twin["run_index"], sub["run_index"]
    )
    exact = sub["counts"].astype(np.float64).reshape(len(rows), -1)
    fast = twin["counts"].astype(np.float64).reshape(len(rows), -1)
    corr = [np.corrcoef(a, b)[0, 1] for a, b in zip(exact, fast, strict=True)]
    assert min(corr) > 0.97  # same crystal, same detector
    assert not np.allclose(exact, fast, rtol=1e-3)  # but rendered by the other model
