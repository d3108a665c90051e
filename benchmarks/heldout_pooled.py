"""The shipped networks on both shipped held-out sets, each alone and pooled.

Twelve crystals leave the strain rms uncertain (90 % crystal interval 0.096 to 0.124 % for
exx on the first set): the second set (:data:`stem_loop.inference.heldout.SECOND_HELDOUT`,
twelve more crystals of another seed, exact multislice like the first) and the two pooled
say more. For each: the rms error at 10^5 electrons per frame over ``--draws`` Poisson draws
of every pattern, the crystal interval, the 1-sigma coverage and the live thickness (the
networks' reading with the doubtful frames refined, as the agent publishes it), and each
error split into the draw-to-draw spread and the error of the draws' mean
(:func:`stem_loop.inference.evaluation.draw_split`); then the pooled per-condition table.
No shot-noise bound or fast twin (``report(shot_noise=False)``).

Run: ``.venv/bin/python benchmarks/heldout_pooled.py [--draws 5] [--no-first] [--twin]
[--first PATH] [--second PATH] [--weights DIR] [--mirror [1|2|4|auto]] [--precision P]``
(other held-out files, e.g. the rebuilds of ``heldout_rebuild.py``; another model;
``--mirror`` the views averaged, :mod:`stem_loop.inference.mirror`, default auto as the live
agent, ``--mirror 1`` reads each frame once; ``--precision`` the networks' arithmetic,
default auto)
(seconds per set on 2 cores; ``--twin`` also splits the strain error on each set's fast twin,
the same crystals rendered by the fast model, about 100 s more a set). The second set is built by::

    from stem_loop.inference.heldout import (
        SECOND_HELDOUT, SECOND_HELDOUT_SEED, build_heldout, plan_heldout)
    build_heldout(SECOND_HELDOUT, plan_heldout(2, seed=SECOND_HELDOUT_SEED), progress=True)

(twelve abTEM runs, about 70 minutes on 2 cores; resumable).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from stem_loop.cli._common import add_reading_options
from stem_loop.inference import Predictor
from stem_loop.inference.evaluation import (
    DRAWS,
    draw_split,
    fast_twin,
    load_heldout,
    merge_heldout,
    predict_heldout,
    repeat_draws,
    report,
)
from stem_loop.inference.heldout import SECOND_HELDOUT, SHIPPED_HELDOUT

#: Summary columns: (label, rms key, scale to the printed unit, coverage key).
COLUMNS = (
    ("exx %", "exx", 100.0, "exx"),
    ("eyy %", "eyy", 100.0, "eyy"),
    ("exy %", "exy", 100.0, "exy"),
    ("thick nm", "thickness_nm", 1.0, "thickness_nm"),
    ("live nm", "thickness_live_nm", 1.0, "thickness_live"),
    ("tilt x", "tilt_x_mrad", 1.0, "tilt_x_mrad"),
    ("tilt y", "tilt_y_mrad", 1.0, "tilt_y_mrad"),
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--draws", type=int, default=DRAWS, help="Poisson draws of each pattern")
    parser.add_argument(
        "--first", type=Path, default=SHIPPED_HELDOUT, help="the first set (default: shipped)"
    )
    parser.add_argument(
        "--second", type=Path, default=SECOND_HELDOUT, help="the second set (default: shipped)"
    )
    parser.add_argument("--no-first", action="store_true", help="skip the first set alone")
    parser.add_argument("--weights", default=None, help="model directory (default: shipped)")
    add_reading_options(parser)
    parser.add_argument(
        "--twin",
        action="store_true",
        help="also split the strain error on each set's fast twin (about 100 s a set)",
    )
    args = parser.parse_args()
    predictor = Predictor(args.weights, mirror=args.mirror, precision=args.precision)
    first, second = load_heldout(args.first), load_heldout(args.second)
    sets = {"first": first, "second": second, "pooled": merge_heldout(first, second)}
    if args.no_first:
        del sets["first"]
    print(f"{'set':8s} {'crystals':>8s} " + " ".join(f"{c[0]:>16s}" for c in COLUMNS))
    pooled, summaries = None, {}
    for name, heldout in sets.items():
        start = time.perf_counter()
        result = report(
            predictor, doses=(1e5,), heldout=heldout, shot_noise=False, draws=args.draws
        )
        s = summaries[name] = result["summary"]
        cells = []
        for _, key, scale, _ in COLUMNS:
            lo, hi = s[f"{key}_rms_ci90"]
            cells.append(f"{scale * s[f'{key}_rms']:.3f} ({scale * lo:.3f}-{scale * hi:.3f})")
        print(f"{name:8s} {s['crystals']:8d} " + " ".join(f"{c:>16s}" for c in cells))
        coverage = ", ".join(
            f"{key} {100 * s[f'{key}_coverage_1sigma']:.0f} %" for *_, key in COLUMNS
        )
        print(f"{'':8s} 1-sigma covers: {coverage}; {time.perf_counter() - start:.0f} s")
        if args.draws > 1:
            split = ", ".join(
                f"{key} {scale * s[f'{key}_spread']:.3f} / {scale * s[f'{key}_mean_error']:.3f}"
                for _, key, scale, _ in COLUMNS
                if f"{key}_spread" in s
            )
            print(f"{'':8s} draw-to-draw spread / error of the draws' mean: {split}")
        pooled = result
    print("(rms at 1e5 e/frame, in brackets the 90 % interval over the crystals drawn again)")
    print(pooled["text"])
    if args.twin and args.draws > 1:
        _twin_split(predictor, first, second, summaries, args.draws)


def _twin_split(
    predictor: Predictor, first: dict, second: dict, summaries: dict[str, dict], draws: int
) -> None:
    """The strain error's split on exact patterns (each set's report ``summaries``) and on
    their fast twin (the training physics, the same draws): the twin's shared error is the
    networks' own per crystal, the rest of the exact one the gap between fast and exact
    physics."""
    twins = {"first": fast_twin(first), "second": fast_twin(second)}
    twins["pooled"] = merge_heldout(twins["first"], twins["second"])
    truths = {"first": first, "second": second, "pooled": merge_heldout(first, second)}

    def cell(spread: float, shared: float) -> str:
        total = (spread**2 + shared**2) ** 0.5
        return f"{100 * total:.3f} = {100 * spread:.3f} (+) {100 * shared:.3f}"

    print("strain rms = draw-to-draw spread (+) error of the draws' mean, % (exx, eyy, exy)")
    for name, s in summaries.items():  # the sets the report scored, in its order
        exact = [cell(s[f"{key}_spread"], s[f"{key}_mean_error"]) for key in ("exx", "eyy", "exy")]
        print(f"{name:8s} {'exact':6s} " + " | ".join(exact))
        got = predict_heldout(predictor, repeat_draws(twins[name], draws), 1e5)
        twin = [
            cell(*draw_split(got["values"][key], truths[name][key], draws))
            for key in ("exx", "eyy", "exy")
        ]
        print(f"{name:8s} {'twin':6s} " + " | ".join(twin))


if __name__ == "__main__":
    main()
