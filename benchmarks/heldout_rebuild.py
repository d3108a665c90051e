"""Recompute a shipped held-out set's exact patterns on a larger crystal block, resumably.

The held-out and validation sets shipped until December 2026 were computed on a 12.8 nm block,
which is not converged at the strain bar's level (model card): runs recomputed on 19.2 nm move
the networks' exx reading by up to 0.13 %. This rebuilds a set (the same crystals:
``plan_heldout`` with the set's seed) on another block into
``benchmarks/data/heldout_box<BOX>/<set>.npz``. Finished runs are kept one file per run in the
``.parts`` folder beside it, and that folder is committed, so the rebuild goes on across
machines whose caches do not survive (10 to 12 minutes per run at 19.2 nm, two runs side by
side on 2 otherwise idle cores). The shipped sets are the 19.2 nm rebuilds, rebinned, soft
aperture (``first.npz``, ``second.npz`` and ``validation.npz`` copied into
``stem_loop/inference/data``); the 12.8 nm sets are kept in ``heldout_box12.8``.

Run: ``.venv/bin/python benchmarks/heldout_rebuild.py first`` (or ``second``, or
``validation`` for the exact validation set the sigmas are widened on), optionally
``--box 25.6`` and ``--workers 1``; ``--partial`` only assembles the finished runs.
Each multislice is detected twice by default (``--pixel-subsamples 0 8``): its FFT rebinned,
into ``<set>.npz``, and every pixel integrated on 8 x 8 points of the exit wave's exact
transform, into ``<set>-px8.npz`` (parts in ``...-px8.parts``). At 19.2 nm the rebinned
detection is still 0.020 to 0.025 px from a 25.6 nm block integrated on 4 x 4 points, the
integrated one 0.007 to 0.009 px (``exact_convergence.py``). ``--hard-aperture`` gives the
probe a hard aperture, as a physical one (abTEM's default tapers the amplitude over one FFT
bin, which reads as a lattice compressed by up to 0.1 %: ``zero_strain.py``); those runs go
to ``<set>-hard.npz`` and ``<set>-hard-px8.npz``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from sim_devices.cbed_exact import MultisliceSettings
from stem_loop.inference.exact_calibration import plan_validation
from stem_loop.inference.heldout import (
    HELDOUT_SEED,
    SECOND_HELDOUT_SEED,
    HeldoutRun,
    build_heldout,
    detection_path,
    plan_heldout,
)

SEEDS = {"first": HELDOUT_SEED, "second": SECOND_HELDOUT_SEED}
#: Sets that can be rebuilt: both held-out sets and the exact validation set.
SET_NAMES = (*SEEDS, "validation")
FOLDER = Path(__file__).parent / "data"


def plan(name: str) -> list[HeldoutRun]:
    """The crystals of set ``name``: a shipped held-out set's, or the validation set's."""
    return plan_validation() if name == "validation" else plan_heldout(2, seed=SEEDS[name])


def rebuilt_path(
    name: str, box_nm: float, pixel_subsamples: int = 0, soft_aperture: bool = True
) -> Path:
    """Where set ``name`` rebuilt on a ``box_nm`` block is assembled (its parts beside it).

    ``pixel_subsamples`` picks the detection (0: the FFT rebinned; ``n``: ``n x n`` points
    integrated in every pixel) and ``soft_aperture`` the probe's aperture
    (:class:`sim_devices.cbed_exact.ExactCBED`).
    """
    base = FOLDER / f"heldout_box{box_nm:g}" / f"{name}.npz"
    return detection_path(base, pixel_subsamples, soft_aperture)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("set", choices=SET_NAMES)
    parser.add_argument("--box", type=float, default=19.2, help="block side in nm (19.2)")
    parser.add_argument("--workers", type=int, default=None, help="processes (one per core)")
    parser.add_argument("--partial", action="store_true", help="assemble finished runs only")
    parser.add_argument(
        "--pixel-subsamples",
        type=int,
        nargs="+",
        default=[0, 8],
        help="detections of each multislice: 0 rebins the FFT, n integrates n x n points a pixel",
    )
    parser.add_argument(
        "--hard-aperture", action="store_true", help="a hard probe aperture (abTEM's is soft)"
    )
    args = parser.parse_args()
    path = build_heldout(
        rebuilt_path(args.set, args.box),
        plan(args.set),
        settings=MultisliceSettings(box_nm=args.box),
        progress=True,
        partial=args.partial,
        workers=args.workers,
        pixel_subsamples=args.pixel_subsamples,
        soft_aperture=not args.hard_aperture,
    )
    print(path)


if __name__ == "__main__":
    main()
