"""The shipped networks on the same held-out crystals computed on several blocks or detections.

The shipped held-out sets are exact multislice on a 19.2 nm block, their FFT rebinned onto the
pixels; until December 2026 they were on a 12.8 nm block (kept in
``benchmarks/data/heldout_box12.8``). ``heldout_rebuild.py`` recomputes their crystals on
another block, detected both rebinned and integrated over every pixel (8 x 8 points of the exit
wave's exact transform). Scoring the networks on the crystals every reference holds says how
much of the strain error is the reference's own rather than the networks'. For each reference:
the rms at 10^5 electrons per frame over ``--draws`` Poisson draws (the same seed on all, so
the counts' luck is shared), split into the draw-to-draw spread and the error of the draws'
mean; then per crystal the mean strain error (over draws and thicknesses) on each, and the
patterns' relative difference from the first.

References (``--refs``): ``shipped`` (the set shipped in the package), ``12.8`` (the 12.8 nm
set shipped before), ``19.2`` (rebuilt on a 19.2 nm block, rebinned: the shipped set's
crystals and patterns), ``19.2px8`` (the same multislice, 8 x 8 points a pixel), ``19.2hard``
and ``19.2hardpx8`` (the probe's aperture hard instead of abTEM's soft one).

Run: ``.venv/bin/python benchmarks/heldout_box.py [first|second] [--refs 12.8 shipped 19.2px8]
[--draws 8]`` (uses the finished runs only; seconds per crystal on 2 cores).
"""

from __future__ import annotations

import argparse
import re

import numpy as np
from heldout_rebuild import plan, rebuilt_path  # the sibling script (benchmarks/ on sys.path)

from sim_devices.cbed_exact import MultisliceSettings
from stem_loop.inference import Predictor
from stem_loop.inference.evaluation import (
    load_heldout,
    report,
    select_runs,
)
from stem_loop.inference.exact_calibration import SHIPPED_VALIDATION
from stem_loop.inference.heldout import (
    SECOND_HELDOUT,
    SHIPPED_HELDOUT,
    build_heldout,
    parts_folder,
)

SETS = {"first": SHIPPED_HELDOUT, "second": SECOND_HELDOUT, "validation": SHIPPED_VALIDATION}
STRAIN = ("exx", "eyy", "exy")
COLUMNS = (("exx", 100.0), ("eyy", 100.0), ("exy", 100.0), ("thickness_nm", 1.0))


def _reference(name: str, spec: str) -> dict:
    """Held-out set ``name`` as reference ``spec``: the shipped file, or the finished runs of
    a rebuild (``BOX`` rebinned, ``BOXpxN`` integrated on ``N x N`` points a pixel; ``hard``
    after the box for the hard-aperture runs)."""
    if spec == "shipped":
        return load_heldout(SETS[name])
    match = re.fullmatch(r"(\d+(?:\.\d+)?)(hard)?(?:px(\d+))?", spec)
    if match is None:
        raise ValueError(f"reference {spec!r} is not 'shipped', BOX, BOXpxN or BOXhard[pxN]")
    box_nm, soft, subsamples = float(match[1]), match[2] is None, int(match[3] or 0)
    base, settings = rebuilt_path(name, box_nm), MultisliceSettings(box_nm=box_nm)
    assembled = rebuilt_path(name, box_nm, subsamples, soft)
    if not parts_folder(base, settings, subsamples, soft).exists() and assembled.exists():
        return load_heldout(assembled)  # kept whole, without parts (the 12.8 nm sets)
    build_heldout(
        base,
        plan(name),
        settings=settings,
        partial=True,
        pixel_subsamples=(subsamples,),
        soft_aperture=soft,
    )
    return load_heldout(assembled)


def _crystal_keys(heldout: dict) -> list[tuple]:
    return [
        (r["conditions"]["material"], tuple(r["strain"]), tuple(r["tilt_mrad"]))
        for r in heldout["meta"]["runs"]
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("set", nargs="?", choices=tuple(SETS), default="first")
    parser.add_argument(
        "--refs",
        nargs="+",
        default=["shipped", "19.2"],
        help="shipped, BOX, BOXpxN or BOXhard[pxN]",
    )
    parser.add_argument("--draws", type=int, default=8, help="Poisson draws of each pattern")
    args = parser.parse_args()
    full = {spec: _reference(args.set, spec) for spec in args.refs}
    held_keys = {spec: _crystal_keys(h) for spec, h in full.items()}
    keys = [k for k in held_keys[args.refs[-1]] if all(k in held for held in held_keys.values())]
    blocks = {
        spec: select_runs(h, [held_keys[spec].index(k) for k in keys]) for spec, h in full.items()
    }
    first = blocks[args.refs[0]]
    print(f"{args.set} set, {len(keys)} crystals every reference holds, {args.draws} draws")
    print(f"{'ref':8s} " + " ".join(f"{k:>26s}" for k, _ in COLUMNS) + f" {'live nm':>8s}")
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
    labels = list(blocks)
    print(
        f"\nper crystal: mean strain error (%) on {', '.join(labels)}, exx eyy exy;"
        f" patterns' difference from {labels[0]}"
    )
    run_index = np.tile(first["run_index"], args.draws)
    for run, meta in enumerate(first["meta"]["runs"]):
        rows = run_index == run
        errors = [
            [
                100 * np.nanmean(readings[label]["values"][k][rows] - meta["strain"][i])
                for i, k in enumerate(STRAIN)
            ]
            for label in labels
        ]
        a = first["counts"][first["run_index"] == run].astype(np.float64)
        diffs = [
            np.linalg.norm(b["counts"][b["run_index"] == run].astype(np.float64) - a)
            / np.linalg.norm(a)
            for b in list(blocks.values())[1:]
        ]
        c = meta["conditions"]
        print(
            f"  {c['material']:6s} {c['voltage_kv']:3.0f} kV  "
            + "  ".join(" ".join(f"{e:+.3f}" for e in err) for err in errors)
            + "   "
            + " ".join(f"{100 * d:.1f} %" for d in diffs)
        )


if __name__ == "__main__":
    main()
