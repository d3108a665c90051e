"""How the shipped networks' reading moves when the exact held-out patterns are blurred.

A real pixelated detector spreads each electron over neighbouring pixels (its point-spread
function), and partial coherence softens the disk edges; the training data fix the edge
profile (a one-pixel linear ramp). This blurs every expected pattern of a held-out reference
with a Gaussian point-spread of ``--sigmas`` pixels (counts conserved) before the Poisson draws
at 10^5 electrons, and prints each blur's rms and the mean shift of the readings from the
unblurred ones: a model that reads the lattice, not the edge profile, should not move. Beside
them, the mean shift of the front end's lattice fit of the noise-free patterns (the estimate
the networks correct), which a symmetric blur moves too.

A model fine-tuned with a point-spread input (``stem-loop train --point-spread``) is told each
blur's sigma through the runs' conditions (``BeamConditions.point_spread_px``); the shipped
networks are not (they assume a sharp detector).

A Gaussian of sigma below about 0.3 px hardly spreads onto the neighbouring pixels (0.25 px
puts 3e-4 of each pixel on each side), so the blurs that matter start near 0.5 px.

Run: ``.venv/bin/python benchmarks/edge_blur.py [first|second] [--ref shipped]
[--sigmas 0 0.25 0.5 0.75] [--draws 4] [--weights DIR]`` (seconds per blur on 2 cores).
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from heldout_box import SETS, _reference  # the sibling script (benchmarks/ on sys.path)

from stem_loop.inference import BeamConditions, Predictor
from stem_loop.inference.evaluation import report
from stem_loop.inference.exact_calibration import blurred_runs
from stem_loop.inference.preprocess import Preprocessor

COLUMNS = (("exx", 100.0), ("eyy", 100.0), ("exy", 100.0), ("thickness_nm", 1.0))


def lattice_fit(heldout: dict, counts: np.ndarray) -> np.ndarray:
    """``(N, 3)`` strain of the front end's lattice fit of every (noise-free) pattern."""
    out = np.zeros((len(counts), 3))
    for index, run in enumerate(heldout["meta"]["runs"]):
        rows = np.flatnonzero(heldout["run_index"] == index)
        front_end = Preprocessor(BeamConditions(**run["conditions"]))
        out[rows] = front_end(torch.as_tensor(counts[rows])).fit.strain.numpy()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("set", nargs="?", choices=tuple(SETS), default="first")
    parser.add_argument("--ref", default="shipped", help="shipped, BOX, BOXpxN or BOXhard[pxN]")
    parser.add_argument("--sigmas", nargs="+", type=float, default=[0.0, 0.25, 0.5, 0.75])
    parser.add_argument("--draws", type=int, default=4, help="Poisson draws of each pattern")
    parser.add_argument("--weights", default=None, help="model directory (default: shipped)")
    args = parser.parse_args()
    heldout = _reference(args.set, args.ref)
    predictor = Predictor() if args.weights is None else Predictor(args.weights)
    print(f"{args.set} set, reference {args.ref}, {len(heldout['meta']['runs'])} crystals,")
    print(f"{args.draws} draws at 1e5; rms (strain %, thickness nm) and mean shift from sigma 0")
    header = " ".join(f"{k:>8s}" for k, _ in COLUMNS)
    strain = " ".join(f"{k:>6s}" for k, _ in COLUMNS[:3])
    print(f"{'sigma px':>8s} {header}   shift: {strain}   fit shift: {strain}")
    base = fit_base = None
    for sigma in args.sigmas:
        # a model that reads the point-spread is told it (as a facility would)
        blurred = blurred_runs(heldout, (sigma, sigma), stated=predictor.takes_point_spread)
        result = report(
            predictor, doses=(1e5,), heldout=blurred, shot_noise=False, draws=args.draws
        )
        s, values = result["summary"], result["readings"]["values"]
        fit = lattice_fit(heldout, blurred["counts"])
        if base is None:
            base, fit_base = values, fit
        shift = [f * np.nanmean(values[k] - base[k]) for k, f in COLUMNS[:3]]
        fit_shift = 100.0 * (fit - fit_base).mean(0)
        print(
            f"{sigma:8.2f} "
            + " ".join(f"{f * s[f'{k}_rms']:8.3f}" for k, f in COLUMNS)
            + "          "
            + " ".join(f"{d:+6.3f}" for d in shift)
            + "              "
            + " ".join(f"{d:+6.3f}" for d in fit_shift)
        )


if __name__ == "__main__":
    main()
