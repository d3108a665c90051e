"""The disk lattice of an unstrained, untilted crystal: exact physics, its fast twin, the truth.

For one material and beam, the exact model's multislice of an unstrained, untilted crystal is
detected both ways (its FFT rebinned, and every pixel integrated on ``n x n`` points of the
exit wave's exact transform), and its fast twin (the fast model closest to physics, the
networks' training physics) is rendered at the same thicknesses. The edge-registered disk
lattice of each is read as strain against the nominal lattice (where the disks' centres are,
the truth) and the exact ones against the twin (what a network trained on the fast model
would misread). With no strain and no tilt, any reading is the registration's or the
reference's own.

Run: ``.venv/bin/python benchmarks/zero_strain.py [--material Si] [--voltage 200]
[--convergence 3.0] [--box 19.2] [--thicknesses 10 20 40] [--subsamples 0 8]`` (one
multislice: 40 nm of Si at 200 kV on a 19.2 nm block, minutes on one core).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from lattice_gap import STRAIN, lattice_strain  # the sibling script (benchmarks/ on sys.path)

from sim_devices.cbed_exact import ExactCBED, MultisliceSettings
from sim_devices.cbed_library import load_or_build
from sim_devices.disk_positions import fit_lattice, lattice_deformation, measure_disk_positions
from sim_devices.validation import bright_disks, crystal_descriptors
from stem_loop.inference.conditions import MATERIALS, BeamConditions, standard_mrad_per_pixel
from stem_loop.inference.evaluation import TWIN_CONTENT_STEP
from stem_loop.inference.refine import closest_fast_model

ZERO = (0.0, 0.0, 0.0)


def nominal_strain(pattern: np.ndarray, fast, guide: np.ndarray) -> np.ndarray:
    """``(exx, eyy, exy)`` of the pattern's fitted disk lattice against the nominal one (the
    disks' true centres, through which the same lattice is fitted)."""
    nominal, hk, weights = bright_disks(fast, ZERO, guide)
    radius = fast.alpha / fast.pixel
    _, basis = fit_lattice(measure_disk_positions(pattern, nominal, radius), hk, weights)
    _, truth = fit_lattice(nominal, hk, weights)
    e = lattice_deformation(basis, truth)
    return np.array([e[0, 0], e[1, 1], 0.5 * (e[0, 1] + e[1, 0])])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--material", choices=[m for m, _ in MATERIALS], default="Si")
    parser.add_argument("--voltage", type=float, default=200.0, help="kV")
    parser.add_argument("--convergence", type=float, default=3.0, help="mrad")
    parser.add_argument("--box", type=float, default=19.2, help="crystal block side, nm")
    parser.add_argument("--thicknesses", type=float, nargs="+", default=[10.0, 20.0, 40.0])
    parser.add_argument("--subsamples", type=int, nargs="+", default=[0, 8])
    args = parser.parse_args()
    zone_axis = dict(MATERIALS)[args.material]
    conditions = BeamConditions(
        args.material,
        zone_axis,
        args.voltage,
        args.convergence,
        standard_mrad_per_pixel(args.voltage),
    )
    exact = ExactCBED(
        args.material,
        zone_axis,
        conditions.beam,
        conditions.detector((0.0, 0.0)),
        MultisliceSettings(box_nm=args.box),
    )
    start = time.perf_counter()
    waves, sampling = exact.exit_waves(ZERO, (0.0, 0.0), args.thicknesses)
    print(
        f"{args.material} {args.voltage:g} kV {args.convergence:g} mrad, block {args.box:g} nm:"
        f" multislice {time.perf_counter() - start:.0f} s"
    )
    detected = {n: exact.detect(waves, sampling, n).astype(np.float64) for n in args.subsamples}
    del waves
    fast = closest_fast_model(
        load_or_build(conditions.library_spec()),
        conditions,
        (0.0, 0.0),
        content_step=TWIN_CONTENT_STEP,
    )
    twin = fast.patterns(crystal_descriptors(ZERO, (0.0, 0.0), args.thicknesses))
    twin = twin.astype(np.float64)
    print(f"lattice as strain (%), {' '.join(STRAIN)}: against the nominal lattice | exact - twin")
    for t, thickness in enumerate(args.thicknesses):
        rows = {"fast twin": twin[t]}
        rows.update({_label(n): p[t] for n, p in detected.items()})
        for label, pattern in rows.items():
            against_truth = 100 * nominal_strain(pattern, fast, twin[t])
            line = f"  {thickness:4.0f} nm  {label:16s} " + " ".join(
                f"{v:+.3f}" for v in against_truth
            )
            if label != "fast twin":
                gap = 100 * lattice_strain(pattern, twin[t], fast, ZERO)
                line += "  |  " + " ".join(f"{v:+.3f}" for v in gap)
            print(line)


def _label(subsamples: int) -> str:
    return f"exact {subsamples}x{subsamples}" if subsamples else "exact rebinned"


if __name__ == "__main__":
    main()
