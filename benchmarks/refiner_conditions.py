"""Time the live thickness refiner on each held-out crystal's conditions.

For every run of the shipped held-out exact set: one Poisson draw of its eight patterns at
10^5 electrons, repeated to ``--frames``, read by the shipped networks, then refined by
:func:`stem_loop.inference.refine.live_refiner` (unstrained contents, the agent's refiner)
every frame; the best of ``--repeats`` wall times, in ms a frame. ``stem-loop bench
inference`` gives the refiner's rate on the bench's own frames only.

Run: ``.venv/bin/python benchmarks/refiner_conditions.py [--frames 64 --repeats 3]``.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from stem_loop.inference import BeamConditions, Predictor
from stem_loop.inference.evaluation import load_heldout
from stem_loop.inference.refine import live_refiner


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=64, help="frames refined per crystal")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats (best kept)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    heldout = load_heldout()
    predictor = Predictor()
    times = []
    print(f"{'crystal':32s} {'disk radius px':>14s} {'ms/frame':>9s}")
    for run, meta in enumerate(heldout["meta"]["runs"]):
        conditions = BeamConditions(**meta["conditions"])
        rows = np.flatnonzero(heldout["run_index"] == run)
        rate = heldout["counts"][rows][np.arange(args.frames) % len(rows)].astype(np.float64)
        frames = np.minimum(np.random.default_rng(run).poisson(rate), 65535).astype(np.uint16)
        reading = predictor.predict(frames, conditions)
        refiner = live_refiner(conditions)
        refiner.refine(frames, reading)  # warm-up
        best = np.inf
        for _ in range(args.repeats):
            start = time.perf_counter()
            refiner.refine(frames, reading)
            best = min(best, time.perf_counter() - start)
        times.append(best / args.frames * 1e3)
        name = (
            f"{conditions.material} {conditions.voltage_kv:g} kV "
            f"{conditions.convergence_mrad:.2f} mrad"
        )
        radius = conditions.convergence_mrad / conditions.mrad_per_pixel
        print(f"{name:32s} {radius:14.1f} {times[-1]:9.2f}")
    print(f"{'mean':32s} {'':14s} {np.mean(times):9.2f}")


if __name__ == "__main__":
    main()
