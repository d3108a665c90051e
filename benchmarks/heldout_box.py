"""The shipped networks on the same held-out crystals computed on two crystal blocks.

The shipped held-out sets are exact multislice on a 12.8 nm block; ``heldout_rebuild.py``
recomputes their crystals on a larger one (19.2 nm). Scoring the networks on the crystals both
blocks hold says how much of the strain error is the reference's own (the block's
truncation) rather than the networks'. For each block: the rms at 10^5 electrons per frame over
``--draws`` Poisson draws (the same seed on both, so the counts' luck is shared), split into the
draw-to-draw spread and the error of the draws' mean; then per crystal the mean strain error
(over draws and thicknesses) on each block and the patterns' relative difference.

Run: ``.venv/bin/python benchmarks/heldout_box.py [first|second] [--box 19.2] [--draws 8]``
(uses the finished runs only; seconds per crystal on 2 cores).
"""

from __future__ import annotations

import argparse

import numpy as np
from heldout_rebuild import SEEDS, rebuilt_path  # the sibling script (benchmarks/ on sys.path)

from sim_devices.cbed_exact import MultisliceSettings
from stem_loop.inference import Predictor
from stem_loop.inference.evaluation import (
    load_heldout,
    report,
    select_runs,
)
from stem_loop.inference.heldout import (
    SECOND_HELDOUT,
    SHIPPED_HELDOUT,
    build_heldout,
    plan_heldout,
)

SETS = {"first": SHIPPED_HELDOUT, "second": SECOND_HELDOUT}
STRAIN = ("exx", "eyy", "exy")
COLUMNS = (("exx", 100.0), ("eyy", 100.0), ("exy", 100.0), ("thickness_nm", 1.0))


def _larger_block(name: str, box: float) -> dict:
    """The finished runs of the set recomputed on ``box``, assembled from their parts."""
    path = rebuilt_path(name, box)
    runs = plan_heldout(2, seed=SEEDS[name])
    build_heldout(path, runs, settings=MultisliceSettings(box_nm=box), partial=True)
    return load_heldout(path)


def _common(shipped: dict, larger: dict) -> list[int]:
    """Indices into the shipped set of the larger block's crystals, in the larger's order."""
    index = {
        (r["conditions"]["material"], tuple(r["strain"]), tuple(r["tilt_mrad"])): i
        for i, r in enumerate(shipped["meta"]["runs"])
    }
    keys = [
        (r["conditions"]["material"], tuple(r["strain"]), tuple(r["tilt_mrad"]))
        for r in larger["meta"]["runs"]
    ]
    missing = [k for k in keys if k not in index]
    if missing:
        raise ValueError(f"crystals of the larger block not in the shipped set: {missing}")
    return [index[k] for k in keys]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("set", nargs="?", choices=tuple(SETS), default="first")
    parser.add_argument("--box", type=float, default=19.2, help="the larger block side, nm")
    parser.add_argument("--draws", type=int, default=8, help="Poisson draws of each pattern")
    args = parser.parse_args()
    larger = _larger_block(args.set, args.box)
    shipped = load_heldout(SETS[args.set])
    picked = _common(shipped, larger)
    smaller = select_runs(shipped, picked)
    blocks = {f"{smaller['meta']['settings']['box_nm']:g} nm": smaller, f"{args.box:g} nm": larger}
    print(f"{args.set} set, shipped runs {picked} ({len(picked)} crystals), {args.draws} draws")
    print(f"{'block':8s} " + " ".join(f"{k:>26s}" for k, _ in COLUMNS) + f" {'live nm':>8s}")
    predictor = Predictor()
    readings = {}
    for label, heldout in blocks.items():
        result = report(
            predictor, doses=(1e5,), heldout=heldout, shot_noise=False, draws=args.draws
        )
        s = result["summary"]
        cells = [
            " = ".join(f"{f * s[f'{k}{part}']:.3f}" for part in ("_rms", "_spread"))
            + f" (+) {f * s[f'{k}_mean_error']:.3f}"
            for k, f in COLUMNS
        ]
        live = f"{s['thickness_live_nm_rms']:.3f}"
        print(f"{label:8s} " + " ".join(f"{c:>26s}" for c in cells) + f" {live:>8s}")
        readings[label] = result["readings"]
    print(
        "(rms = draw-to-draw spread (+) error of the draws' mean; strain in %, thickness in nm;"
        " live: the thickness the agent publishes, doubtful frames refined)"
    )
    print("\nper crystal: mean strain error (%) on each block, exx eyy exy; patterns' difference")
    labels = list(blocks)
    run_index = np.tile(larger["run_index"], args.draws)
    for run, meta in enumerate(larger["meta"]["runs"]):
        rows = run_index == run
        errors = [
            [
                100 * np.nanmean(readings[label]["values"][k][rows] - meta["strain"][i])
                for i, k in enumerate(STRAIN)
            ]
            for label in labels
        ]
        a = smaller["counts"][smaller["run_index"] == run].astype(np.float64)
        b = larger["counts"][larger["run_index"] == run].astype(np.float64)
        diff = np.linalg.norm(b - a) / np.linalg.norm(a)
        c = meta["conditions"]
        print(
            f"  {c['material']:6s} {c['voltage_kv']:3.0f} kV  "
            + "  ".join(" ".join(f"{e:+.3f}" for e in err) for err in errors)
            + f"   {100 * diff:.1f} %"
        )


if __name__ == "__main__":
    main()
