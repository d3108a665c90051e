"""The disk lattice of exact held-out patterns against their fast twin, as strain.

For every noise-free pattern of a held-out set, the disks of the exact pattern and of its fast
twin (the same crystal rendered by the fast model closest to physics, the networks' training
physics) are registered by their edges and a lattice is fitted through each
(:func:`sim_devices.validation.compare_patterns`' estimator). The deformation taking the twin's
lattice to the exact one, read as strain, is what a lattice-reading network trained on the fast
model would misread on the exact pattern. Printed per crystal (mean and rms over its
thicknesses, %) and over the set, beside what the shipped networks do: the mean of their reading
on the exact patterns minus on the twin (``--draws`` Poisson draws at 10^5 of each).

Measured (mean over the patterns; exx / eyy / exy, %):

=================================  ========================  ========================
set, block                         exact lattice vs twin     networks, exact - twin
=================================  ========================  ========================
first, 19.2 nm (shipped)           -0.043 / -0.058 / +0.003  -0.035 / -0.039 / +0.013
second, 19.2 nm (shipped)          +0.008 / -0.028 / -0.012  -0.001 / -0.014 / -0.007
first, 12.8 nm (shipped before)    -0.061 / -0.056 / +0.004  -0.042 / -0.031 / +0.014
second, 12.8 nm (shipped before)   +0.007 / -0.032 / -0.014  -0.004 / -0.011 / -0.002
=================================  ========================  ========================

An unstrained, untilted Si 80 kV crystal (3 mrad, 12.8 nm block) reads -0.095 / -0.045 % at
10 nm and -0.059 / -0.025 % at 20 nm, so the compression is not the strain's handling.

Run: ``.venv/bin/python benchmarks/lattice_gap.py [PATH]`` (a held-out ``.npz``; default the
shipped first set; a minute alone on 2 cores, 188 s beside a training run).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from sim_devices.cbed_library import load_or_build
from sim_devices.disk_positions import fit_lattice, lattice_deformation, measure_disk_positions
from sim_devices.validation import bright_disks
from stem_loop.inference import Predictor
from stem_loop.inference.conditions import BeamConditions
from stem_loop.inference.evaluation import (
    TWIN_CONTENT_STEP,
    fast_twin,
    load_heldout,
    predict_heldout,
    repeat_draws,
)
from stem_loop.inference.heldout import SHIPPED_HELDOUT
from stem_loop.inference.refine import closest_fast_model

STRAIN = ("exx", "eyy", "exy")


def lattice_strain(exact: np.ndarray, twin: np.ndarray, fast, strain) -> np.ndarray:
    """``(exx, eyy, exy)`` taking the twin's fitted disk lattice to the exact one's."""
    guesses, hk, weights = bright_disks(fast, strain, twin)
    radius = fast.alpha / fast.pixel
    bases = [
        fit_lattice(measure_disk_positions(p.astype(np.float64), guesses, radius), hk, weights)[1]
        for p in (exact, twin)
    ]
    return strain_components(lattice_deformation(*bases))


def strain_components(e: np.ndarray) -> np.ndarray:
    """``(exx, eyy, exy)`` of a 2 x 2 strain (its symmetric part)."""
    return np.array([e[0, 0], e[1, 1], 0.5 * (e[0, 1] + e[1, 0])])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", nargs="?", type=Path, default=SHIPPED_HELDOUT)
    parser.add_argument("--draws", type=int, default=8, help="Poisson draws of each pattern")
    parser.add_argument(
        "--per-thickness", action="store_true", help="also print every thickness of a crystal"
    )
    args = parser.parse_args()
    heldout = load_heldout(args.path)
    twin = fast_twin(heldout)
    predictor, n = Predictor(), len(heldout["run_index"])
    readings = [
        np.stack(
            [
                predict_heldout(predictor, repeat_draws(s, args.draws), 1e5)["values"][k]
                .reshape(args.draws, n)
                .mean(0)
                for k in STRAIN
            ],
            axis=1,
        )
        for s in (heldout, twin)
    ]
    networks = 100 * (readings[0] - readings[1])
    print(f"{args.path.name}: block {heldout['meta']['settings']['box_nm']:g} nm")
    print(
        "exact lattice against the twin's, as strain (%): mean / rms over the thicknesses; "
        "networks: mean of exact minus twin readings"
    )
    every = []
    for run, meta in enumerate(heldout["meta"]["runs"]):
        conditions = BeamConditions(**meta["conditions"])
        fast = closest_fast_model(
            load_or_build(conditions.library_spec()),
            conditions,
            tuple(meta["center_offset_px"]),
            content_step=TWIN_CONTENT_STEP,
        )
        rows = np.flatnonzero(heldout["run_index"] == run)
        found = 100 * np.array(
            [
                lattice_strain(heldout["counts"][i], twin["counts"][i], fast, meta["strain"])
                for i in rows
            ]
        )
        every.append(found)
        mean, rms = found.mean(0), np.sqrt((found**2).mean(0))
        print(
            f"  {conditions.material:6s} {conditions.voltage_kv:3.0f} kV "
            f"{conditions.convergence_mrad:.2f} mrad  exx eyy exy "
            + " ".join(f"{v:+.3f}" for v in mean)
            + "  /  "
            + " ".join(f"{v:.3f}" for v in rms)
            + "   networks "
            + " ".join(f"{v:+.3f}" for v in networks[rows].mean(0))
        )
        if args.per_thickness:
            for i, values in zip(rows, found, strict=True):
                print(
                    f"    {heldout['thickness_nm'][i]:4.0f} nm  "
                    + " ".join(f"{v:+.3f}" for v in values)
                    + "   networks "
                    + " ".join(f"{v:+.3f}" for v in networks[i])
                )
    found = np.concatenate(every)
    print(
        "all: mean "
        + " ".join(f"{v:+.3f}" for v in found.mean(0))
        + ", rms "
        + " ".join(f"{v:.3f}" for v in np.sqrt((found**2).mean(0)))
        + "; networks mean "
        + " ".join(f"{v:+.3f}" for v in networks.mean(0))
    )


if __name__ == "__main__":
    main()
