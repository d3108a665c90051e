"""Accuracy of a predictor on the held-out exact-physics set, beside the shot-noise limit.

The same crystals rendered by the fast model (the *fast twin*: strain-dependent disk contents
from the multislice of the strained cell, :mod:`sim_devices.cell_multislice`, and disk edges
integrated over the pixel, ``TWIN_EDGE_SUBPIXELS``; contents at each crystal's strain to
within ``TWIN_CONTENT_STEP``) split the error into the network's own error and the gap
between fast and exact physics. With these contents the twin reproduces the network's
thickness errors on the exact patterns (correlation 0.96 over the 96 patterns,
against 0.48 with unstrained contents); the Bloch-wave contents are wrong for thick SrTiO3
(chi^2 43,000 against 12,000 for one 80 kV pattern at 80 nm).

The shot-noise limit is the Cramer-Rao bound of the strain for Poisson counts when everything
but the disk positions is known: Fisher information ``sum_pixels (d mu/d e_i)(d mu/d e_j) / mu``
of the fast model's pattern ``mu`` (which moves the disks with strain while their contents stay
those of the crystal's strain), by central differences. No unbiased estimator of disk
positions does better.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from sim_devices.cbed_fast import FastCBED
from sim_devices.cbed_library import load_or_build
from sim_devices.sample import DESCRIPTOR_NAMES

from .conditions import BeamConditions
from .heldout import SHIPPED_HELDOUT, STORED_DOSE
from .predictor import Prediction, Predictor
from .refine import (
    DOUBTFUL_STD_NM,
    EDGE_SUBPIXELS,
    ThicknessRefiner,
    closest_fast_model,
    refine_doubtful,
)

#: Doses of the dose sweep (electrons per frame).
DOSES = (1e3, 1e4, 1e5)
#: Poisson draws of every held-out pattern pooled into one rms. With 96 patterns the rms of
#: one draw moves by about 10 % from draw to draw (strain at 1e5: 0.097 to 0.122 % for exx
#: over five draws), so one draw can pass or fail a target by luck.
DRAWS = 5


def load_heldout(path: str | Path = SHIPPED_HELDOUT) -> dict:
    """The held-out set: ``counts`` (expected, at 1e5), descriptors, and per-run metadata."""
    with np.load(path, allow_pickle=False) as data:
        out = {k: data[k] for k in data.files if k != "meta"}
        out["meta"] = json.loads(str(data["meta"]))
    return out


def merge_heldout(*sets: dict) -> dict:
    """Several held-out sets (as :func:`load_heldout` returns them) as one, to pool their
    crystals: patterns and descriptors concatenated, runs numbered on, metadata runs in order.

    Raises
    ------
    ValueError
        If no set is given, or the sets differ in thicknesses, stored dose, frame shape or
        multislice settings (their errors would not be comparable).
    """
    if not sets:
        raise ValueError("merge_heldout needs at least one held-out set")
    first = sets[0]
    for key in ("thicknesses_nm", "stored_dose", "settings"):
        for other in sets[1:]:
            if other["meta"][key] != first["meta"][key]:
                raise ValueError(
                    f"held-out sets differ in {key}: {first['meta'][key]} and {other['meta'][key]}"
                )
    shapes = {s["counts"].shape[1:] for s in sets}
    if len(shapes) > 1:
        raise ValueError(f"held-out sets differ in frame shape: {sorted(shapes)}")
    out = {
        key: np.concatenate([s[key] for s in sets])
        for key in first
        if key not in ("meta", "run_index")
    }
    offsets = np.cumsum([0] + [len(s["meta"]["runs"]) for s in sets[:-1]])
    out["run_index"] = np.concatenate(
        [s["run_index"] + o for s, o in zip(sets, offsets, strict=True)]
    )
    out["meta"] = dict(first["meta"], runs=[run for s in sets for run in s["meta"]["runs"]])
    return out


def select_runs(heldout: dict, runs: list[int] | np.ndarray) -> dict:
    """The held-out set with only the given runs (crystals), renumbered in that order.

    Raises
    ------
    ValueError
        If a run index is repeated or not in the set.
    """
    runs = [int(r) for r in runs]
    n_runs = len(heldout["meta"]["runs"])
    bad = [r for r in runs if not 0 <= r < n_runs]
    if bad or len(set(runs)) != len(runs):
        raise ValueError(
            f"runs must be distinct indices below {n_runs}; got {runs}"
            + (f" ({bad} out of range)" if bad else " (repeated)")
        )
    rows = [np.flatnonzero(heldout["run_index"] == r) for r in runs]
    out = {
        key: np.concatenate([value[r] for r in rows])
        for key, value in heldout.items()
        if key not in ("meta", "run_index")
    }
    out["run_index"] = np.concatenate([np.full(len(r), i) for i, r in enumerate(rows)])
    out["meta"] = dict(heldout["meta"], runs=[heldout["meta"]["runs"][r] for r in runs])
    return out


def _run_conditions(meta: dict) -> list[tuple[BeamConditions, tuple[float, float]]]:
    return [
        (BeamConditions(**run["conditions"]), tuple(run["center_offset_px"]))
        for run in meta["runs"]
    ]


#: Resamples of the crystals (runs) behind the rms intervals.
BOOTSTRAP = 2000


def crystal_interval(
    errors: np.ndarray, run_index: np.ndarray, level: float = 0.9, seed: int = 0
) -> tuple[float, float]:
    """Interval of the rms of ``errors`` when the crystals (runs) are drawn again.

    The patterns of one run share a crystal, so its errors are not independent; resampling
    whole runs with replacement (:data:`BOOTSTRAP` times) says how far another set of as many
    crystals could put the rms. Returns the central ``level`` percentile interval.
    """
    errors = np.asarray(errors, dtype=np.float64)
    runs = np.unique(run_index)
    sums = np.array([np.nansum(errors[run_index == r] ** 2) for r in runs])
    counts = np.array([np.sum(np.isfinite(errors[run_index == r])) for r in runs])
    pick = np.random.default_rng(seed).integers(0, len(runs), (BOOTSTRAP, len(runs)))
    rms = np.sqrt(sums[pick].sum(1) / np.maximum(counts[pick].sum(1), 1))
    tail = 100 * (1 - level) / 2
    return float(np.percentile(rms, tail)), float(np.percentile(rms, 100 - tail))


def draw_split(values: np.ndarray, truth: np.ndarray, draws: int) -> tuple[float, float]:
    """Split the rms error of ``draws`` Poisson draws of every pattern in two.

    Parameters
    ----------
    values : ndarray
        ``(draws * N,)`` readings, draw after draw (as :func:`predict_heldout` gives them for
        :func:`repeat_draws`).
    truth : ndarray
        ``(N,)`` the true values.
    draws : int
        Draws of each pattern, at least 2.

    Returns
    -------
    spread : float
        rms over the patterns of the draw-to-draw standard deviation: what the counts do.
    mean_error : float
        rms of the draws' mean minus the truth, with that mean's own remaining spread
        (``spread**2 / draws``) taken off: the error every draw of a pattern shares, which no
        quieter measurement removes. ``spread**2 + mean_error**2`` is the mean squared error.
        Patterns with a flagged (NaN) draw are left out.

    Raises
    ------
    ValueError
        If there are fewer than two draws or the shapes do not match.
    """
    truth = np.asarray(truth, dtype=np.float64)
    if draws < 2 or np.size(values) != draws * truth.size:
        raise ValueError(
            f"need >= 2 draws of each of {truth.size} patterns, got {np.size(values)} values "
            f"for {draws} draws"
        )
    v = np.asarray(values, dtype=np.float64).reshape(draws, truth.size)
    kept = np.isfinite(v).all(0)
    v, truth = v[:, kept], truth[kept]
    spread2 = float(v.var(0, ddof=1).mean())
    mean_error2 = float(((v.mean(0) - truth) ** 2).mean()) - spread2 / draws
    return float(np.sqrt(spread2)), float(np.sqrt(max(mean_error2, 0.0)))


def repeat_draws(heldout: dict, draws: int) -> dict:
    """The held-out set with every pattern ``draws`` times (run by run, so that
    :func:`predict_heldout` draws different Poisson counts for each copy); ``draws=1`` is the
    set itself. ``draw_index`` says which copy each pattern is."""
    if draws < 1:
        raise ValueError(f"draws must be >= 1, got {draws}")
    n = len(heldout["run_index"])
    out = {k: np.tile(v, (draws,) + (1,) * (v.ndim - 1)) for k, v in heldout.items() if k != "meta"}
    out["meta"] = heldout["meta"]
    out["draw_index"] = np.repeat(np.arange(draws), n)
    return out


def predict_heldout(
    predictor: Predictor, heldout: dict, dose: float, seed: int = 0
) -> dict[str, np.ndarray]:
    """Predictions for every held-out pattern with Poisson counts at ``dose``."""
    rng = np.random.default_rng(seed)
    n = len(heldout["run_index"])
    values = {k: np.empty(n) for k in DESCRIPTOR_NAMES}
    stds = {k: np.empty(n) for k in DESCRIPTOR_NAMES}
    ood = np.zeros(n, dtype=bool)
    origin = np.full((n, 2), np.nan)
    drawn = np.empty(heldout["counts"].shape, dtype=np.uint16)
    for run, (conditions, _) in enumerate(_run_conditions(heldout["meta"])):
        rows = np.flatnonzero(heldout["run_index"] == run)
        rate = heldout["counts"][rows].astype(np.float64) * (dose / STORED_DOSE)
        counts = np.minimum(rng.poisson(rate), 65535).astype(np.uint16)
        drawn[rows] = counts
        p = predictor.predict(counts, conditions)
        for k in DESCRIPTOR_NAMES:
            values[k][rows] = p.values[k]
            stds[k][rows] = p.std[k]
        ood[rows] = p.ood
        origin[rows] = p.origin_px
    return dict(values=values, std=stds, ood=ood, counts=drawn, origin_px=origin)


def refine_heldout(
    heldout: dict,
    result: dict,
    *,
    contents: str = "unstrained",
    threshold_nm: float = 0.0,
) -> dict[str, np.ndarray]:
    """Thickness of the held-out patterns refined by the fast model
    (:class:`~stem_loop.inference.refine.ThicknessRefiner`) from the draws and readings of
    ``result`` (what :func:`predict_heldout` returns): every pattern (``threshold_nm=0``) or
    only those whose networks' sigma exceeds ``threshold_nm`` (what the live path does, see
    :func:`~stem_loop.inference.refine.refine_doubtful`), the others keeping the networks'
    reading. ``contents="multislice"`` renders the strained cells' contents (offline: 15 to
    60 s per new content-strain grid point on 2 cores).

    Returns
    -------
    dict
        ``thickness_nm`` and ``std_nm`` ``(N,)`` and ``refined`` (bool, ``(N,)``).
    """
    n = len(heldout["run_index"])
    out = dict(thickness_nm=np.full(n, np.nan), std_nm=np.full(n, np.nan))
    out["refined"] = np.zeros(n, dtype=bool)
    for run, (conditions, _) in enumerate(_run_conditions(heldout["meta"])):
        rows = np.flatnonzero(heldout["run_index"] == run)
        reading = Prediction(
            values={k: v[rows] for k, v in result["values"].items()},
            std={k: v[rows] for k, v in result["std"].items()},
            ood=result["ood"][rows],
            origin_px=None if result.get("origin_px") is None else result["origin_px"][rows],
        )
        refiner = ThicknessRefiner(conditions, contents=contents)
        new, refined = refine_doubtful(refiner, result["counts"][rows], reading, threshold_nm)
        out["thickness_nm"][rows] = new.values["thickness_nm"]
        out["std_nm"][rows] = new.std["thickness_nm"]
        out["refined"][rows] = refined
    return out


#: Sub-pixels of the fast twin's disk edges (the pixel's area inside the aperture): those of
#: :func:`~stem_loop.inference.refine.closest_fast_model`, which renders the twin.
TWIN_EDGE_SUBPIXELS = EDGE_SUBPIXELS
#: Content-strain grid step of the fast twin: each crystal's contents within 0.05 % of its own
#: strain (the microscope's 0.5 % grid is a speed compromise the twin need not make).
TWIN_CONTENT_STEP = 0.001


def _fast_model(conditions: BeamConditions, offset: tuple[float, float]) -> FastCBED:
    """The fast model closest to exact physics: strained-cell contents, pixel-integrated edges."""
    return closest_fast_model(
        load_or_build(conditions.library_spec()), conditions, offset, content_step=TWIN_CONTENT_STEP
    )


def fast_twin(heldout: dict) -> dict:
    """The held-out set with every pattern re-rendered by the fast model (same descriptors)."""
    twin = dict(heldout)
    counts = np.empty(heldout["counts"].shape, dtype=np.float32)
    for run, (conditions, offset) in enumerate(_run_conditions(heldout["meta"])):
        rows = np.flatnonzero(heldout["run_index"] == run)
        values = {k: heldout[k][rows].astype(np.float64) for k in DESCRIPTOR_NAMES}
        counts[rows] = _fast_model(conditions, offset).patterns(values) * STORED_DOSE
    twin["counts"] = counts
    return twin


def strain_crlb(heldout: dict, dose: float = STORED_DOSE) -> np.ndarray:
    """Cramer-Rao bound (1 sigma) of ``exx, eyy, exy`` for every held-out pattern, ``(N, 3)``."""
    n = len(heldout["run_index"])
    out = np.full((n, 3), np.nan)
    step = 1e-4
    for run, (conditions, offset) in enumerate(_run_conditions(heldout["meta"])):
        rows = np.flatnonzero(heldout["run_index"] == run)
        fast = _fast_model(conditions, offset)
        base = {k: heldout[k][rows].astype(np.float64) for k in DESCRIPTOR_NAMES}
        # one crystal per run: its disk contents stay fixed while the disks move
        contents = tuple(float(base[k][0]) for k in ("exx", "eyy", "exy"))
        mu = fast.patterns(base, content_strain=contents).astype(np.float64) * dose
        grads = []
        for name in ("exx", "eyy", "exy"):
            plus, minus = dict(base), dict(base)
            plus[name] = base[name] + step
            minus[name] = base[name] - step
            diff = fast.patterns(plus, content_strain=contents).astype(np.float64) - fast.patterns(
                minus, content_strain=contents
            )
            grads.append(diff * dose / (2 * step))
        g = np.stack(grads, 1).reshape(len(rows), 3, -1)  # (R, 3, pixels)
        inv_mu = np.where(mu > 1e-9, 1.0 / np.maximum(mu, 1e-9), 0.0).reshape(len(rows), 1, -1)
        fisher = np.einsum("rip,rjp->rij", g * inv_mu, g)
        out[rows] = np.sqrt(np.diagonal(np.linalg.inv(fisher), axis1=1, axis2=2))
    return out


def report(
    predictor: Predictor | None = None,
    doses: tuple[float, ...] = DOSES,
    heldout: dict | None = None,
    seed: int = 0,
    shot_noise: bool = True,
    refine_thickness: bool = False,
    live_threshold_nm: float | None = DOUBTFUL_STD_NM,
    refine_contents: str = "unstrained",
    draws: int = DRAWS,
) -> dict:
    """Accuracy per material and beam condition at 1e5 e/frame, and strain error vs dose.

    Every rms pools ``draws`` Poisson draws of each pattern (one generator, seeded by
    ``seed``; ``draws=1`` gives the single draw reported before);
    ``summary`` also gives each draw's own rms (``<name>_rms_per_draw``) and the interval the
    rms would fall in if the crystals were drawn again (``<name>_rms_ci90``, see
    :func:`crystal_interval`).

    Returns
    -------
    dict
        ``rows`` (per condition), ``dose_rows`` (strain error and shot-noise bound per dose),
        ``summary`` (overall rms errors and 1-sigma coverage at the highest dose; with two
        draws or more also each descriptor's ``<name>_spread`` and ``<name>_mean_error``,
        :func:`draw_split`),
        ``twin_summary`` (the rms errors on the fast twin at the highest dose), ``readings``
        (:func:`predict_heldout`'s result at the highest dose, every draw of every pattern,
        draw after draw) and ``text`` (printable tables). ``shot_noise=False`` skips the bound
        and the twin (they need the beam library of every held-out condition).

        ``live_threshold_nm`` adds ``thickness_live_nm_rms`` to every row and the summary:
        the thickness the live path publishes, the networks' reading with the frames whose
        sigma exceeds it refined by the fast model (:func:`refine_heldout`, unstrained
        contents); the summary also gets its coverage and the fraction refined. ``None``
        skips it. ``refine_thickness=True`` adds ``thickness_refined_nm_rms`` (every frame
        refined, with ``refine_contents``: ``"multislice"`` takes minutes to an hour on 2
        cores, ``"unstrained"`` seconds).
    """
    predictor = predictor or Predictor()
    single = heldout if heldout is not None else load_heldout()
    heldout = repeat_draws(single, draws)
    truth = {k: heldout[k].astype(np.float64) for k in DESCRIPTOR_NAMES}
    conditions = _run_conditions(heldout["meta"])
    group = [(c.material, c.voltage_kv) for c, _ in conditions]
    run_group = np.array([f"{m} {v:g} kV" for m, v in group])[heldout["run_index"]]
    top = max(doses)
    results = {dose: predict_heldout(predictor, heldout, dose, seed) for dose in doses}
    crlb_rms = np.full(3, np.nan)  # shot-noise bound at the highest dose, over all frames
    if shot_noise:
        crlb_rms = np.sqrt(np.nanmean(strain_crlb(single, top) ** 2, axis=0))

    def _rms(res: dict, rows: np.ndarray, name: str) -> float:
        err = res["values"][name][rows] - truth[name][rows]
        return float(np.sqrt(np.nanmean(err**2))) if np.isfinite(err).any() else float("nan")

    rows_out = []
    res = results[top]
    thickness_steps = {}
    if live_threshold_nm is not None:
        thickness_steps["live"] = refine_heldout(heldout, res, threshold_nm=live_threshold_nm)
    if refine_thickness:
        thickness_steps["refined"] = refine_heldout(heldout, res, contents=refine_contents)

    def _refined_rms(rows: np.ndarray) -> dict:
        out = {}
        for step, got in thickness_steps.items():
            err = got["thickness_nm"][rows] - truth["thickness_nm"][rows]
            out[f"thickness_{step}_nm_rms"] = float(np.sqrt(np.nanmean(err**2)))
        return out

    def _refined_coverage() -> dict:
        out = {}
        for step, got in thickness_steps.items():
            z = np.abs(got["thickness_nm"] - truth["thickness_nm"]) / got["std_nm"]
            out[f"thickness_{step}_coverage_1sigma"] = float(np.mean(z[np.isfinite(z)] <= 1.0))
            out[f"thickness_{step}_fraction_refined"] = float(np.mean(got["refined"]))
        return out

    for label in dict.fromkeys(run_group):
        rows = np.flatnonzero(run_group == label)
        alphas = sorted(
            {
                c.convergence_mrad
                for c, _ in conditions
                if f"{c.material} {c.voltage_kv:g} kV" == label
            }
        )
        rows_out.append(
            dict(
                condition=label,
                convergence_mrad=alphas,
                frames=int(len(rows)),
                ood=int(res["ood"][rows].sum()),
                **{f"{k}_rms": _rms(res, rows, k) for k in DESCRIPTOR_NAMES},
                **_refined_rms(rows),
            )
        )
    everything = np.arange(len(run_group))
    z = {k: np.abs(res["values"][k] - truth[k]) / res["std"][k] for k in DESCRIPTOR_NAMES}
    coverage = {
        k: float(np.mean(z[k][np.isfinite(z[k])] <= 1.0)) if np.isfinite(z[k]).any() else np.nan
        for k in DESCRIPTOR_NAMES
    }
    summary = dict(
        dose=top,
        frames=int(len(everything)),
        patterns=int(len(single["run_index"])),
        crystals=int(len(np.unique(single["run_index"]))),
        ood=int(res["ood"].sum()),
        **{f"{k}_rms": _rms(res, everything, k) for k in DESCRIPTOR_NAMES},
        **{f"{k}_coverage_1sigma": coverage[k] for k in DESCRIPTOR_NAMES},
        **_refined_rms(everything),
        **_refined_coverage(),
        draws=int(draws),
    )
    for k in DESCRIPTOR_NAMES:
        summary[f"{k}_rms_ci90"] = list(
            crystal_interval(res["values"][k] - truth[k], heldout["run_index"])
        )
    for step, got in thickness_steps.items():
        summary[f"thickness_{step}_nm_rms_ci90"] = list(
            crystal_interval(got["thickness_nm"] - truth["thickness_nm"], heldout["run_index"])
        )
    for k in DESCRIPTOR_NAMES:
        summary[f"{k}_rms_per_draw"] = [
            _rms(res, np.flatnonzero(heldout["draw_index"] == d), k) for d in range(draws)
        ]
        if draws > 1:
            split = draw_split(res["values"][k], single[k], draws)
            summary[f"{k}_spread"], summary[f"{k}_mean_error"] = split
    if live_threshold_nm is not None:
        summary["live_threshold_nm"] = float(live_threshold_nm)
    twin_summary = None
    if shot_noise:
        twin_res = predict_heldout(predictor, repeat_draws(fast_twin(single), draws), top, seed)
        twin_summary = {f"{k}_rms": _rms(twin_res, everything, k) for k in DESCRIPTOR_NAMES}
    dose_rows = []
    for dose in doses:
        strain_rms = [_rms(results[dose], everything, k) for k in ("exx", "eyy", "exy")]
        bound = crlb_rms * np.sqrt(top / dose)
        dose_rows.append(
            dict(
                dose=dose,
                strain_rms_percent=[100 * v for v in strain_rms],
                shot_noise_limit_percent=[100 * float(v) for v in bound],
            )
        )
    return dict(
        rows=rows_out,
        dose_rows=dose_rows,
        summary=summary,
        twin_summary=twin_summary,
        readings=results[top],
        text=_text(rows_out, dose_rows, summary, twin_summary),
    )


def _text(rows: list[dict], dose_rows: list[dict], summary: dict, twin: dict | None = None) -> str:
    lines = [
        f"held-out exact patterns at {summary['dose']:.0e} e/frame: rms error per condition, "
        f"{summary['draws']} Poisson draw{'s' if summary['draws'] > 1 else ''} of each pattern",
        f"{'condition':<16}{'frames':>7}{'ood':>5}{'exx %':>8}{'eyy %':>8}{'exy %':>8}"
        f"{'t nm':>7}{'tx mrad':>9}{'ty mrad':>9}",
    ]

    def row(label: str, frames: object, ood: object, r: dict) -> str:
        return (
            f"{label:<16}{frames:>7}{ood:>5}{100 * r['exx_rms']:>8.3f}{100 * r['eyy_rms']:>8.3f}"
            f"{100 * r['exy_rms']:>8.3f}{r['thickness_nm_rms']:>7.2f}"
            f"{r['tilt_x_mrad_rms']:>9.3f}{r['tilt_y_mrad_rms']:>9.3f}"
        )

    lines += [row(r["condition"], r["frames"], r["ood"], r) for r in rows]
    s = summary
    lines.append(row("all", s["frames"], s["ood"], s))
    if twin is not None:
        lines.append(row("fast twin", s["frames"], "", twin))
        lines.append(
            "(fast twin: the same crystals rendered by the fast model, strained-cell contents)"
        )
    what = {
        "live": lambda: (
            f"thickness live (refined where the networks' sigma > {s['live_threshold_nm']:g} nm)"
        ),
        "refined": lambda: "thickness refined by the fast model (every frame)",
    }
    for step, label in what.items():
        if f"thickness_{step}_nm_rms" not in s:
            continue
        per = ", ".join(f"{r['condition']} {r[f'thickness_{step}_nm_rms']:.2f}" for r in rows)
        lines.append(
            f"{label()}: {s[f'thickness_{step}_nm_rms']:.2f} nm (networks "
            f"{s['thickness_nm_rms']:.2f}), 1-sigma covers "
            f"{100 * s[f'thickness_{step}_coverage_1sigma']:.0f}%, "
            f"{100 * s[f'thickness_{step}_fraction_refined']:.0f}% of frames refined; {per}"
        )
    ci = [
        f"{k} {100 * s[f'{k}_rms_ci90'][0]:.3f}-{100 * s[f'{k}_rms_ci90'][1]:.3f}%"
        for k in ("exx", "eyy", "exy")
    ]
    ci.append(
        f"thickness {s['thickness_nm_rms_ci90'][0]:.2f}-{s['thickness_nm_rms_ci90'][1]:.2f} nm"
    )
    if "thickness_live_nm_rms_ci90" in s:
        lo, hi = s["thickness_live_nm_rms_ci90"]
        ci.append(f"live thickness {lo:.2f}-{hi:.2f} nm")
    lines.append(
        f"rms if the crystals were drawn again (90 % bootstrap interval over the "
        f"{s['crystals']} crystals): " + ", ".join(ci)
    )
    if s["draws"] > 1:
        spread = ", ".join(
            f"{k} {100 * min(s[f'{k}_rms_per_draw']):.3f}-{100 * max(s[f'{k}_rms_per_draw']):.3f}%"
            for k in ("exx", "eyy", "exy")
        )
        lines.append(f"strain rms of single draws: {spread}")
        split = ", ".join(
            f"{k} {100 * s[f'{k}_spread']:.3f} / {100 * s[f'{k}_mean_error']:.3f}%"
            for k in ("exx", "eyy", "exy")
        )
        lines.append(f"strain draw-to-draw spread / error of the draws' mean (draw_split): {split}")
    cover = ", ".join(f"{k} {100 * s[f'{k}_coverage_1sigma']:.0f}%" for k in DESCRIPTOR_NAMES)
    lines.append(f"predicted 1-sigma covers: {cover}")
    lines.append("")
    lines.append("strain rms error vs dose (exx, eyy, exy in %) and the shot-noise limit")
    for r in dose_rows:
        err = " ".join(f"{v:.3f}" for v in r["strain_rms_percent"])
        limits = r["shot_noise_limit_percent"]
        if np.all(np.isnan(limits)):
            lim = "not computed"
        else:
            lim = " ".join(f"{v:.4f}" for v in limits)
        lines.append(f"  {r['dose']:>8.0e} e/frame: network {err}   limit {lim}")
    return "\n".join(lines)
