"""The disk lattice of an unstrained, untilted crystal: exact physics, its fast twin, the truth.

For one material and beam, the exact model's multislice of an unstrained, untilted crystal is
detected both ways (its FFT rebinned, and every pixel integrated on ``n x n`` points of the
exit wave's exact transform), and its fast twin (the fast model closest to physics, the
networks' training physics) is rendered at the same thicknesses. The edge-registered disk
lattice of each is read as strain against the nominal lattice (where the disks' centres are,
the truth) and the exact ones against the twin (what a network trained on the fast model
would misread). With no strain and no tilt, any reading is the registration's or the
reference's own.

At zero strain the block is exactly periodic, so the exact model's FFT samples are exact: the
plane-wave disk contents times the aperture, every ``lambda / box`` in angle. ``--emulate BOX
...`` renders the fast twin itself on such samples (a detector of ``lambda / box`` pixels,
centred on the optical axis) and rebins them as the exact model does: what the block's
sampling alone does to the lattice, with no multislice (seconds). ``--no-exact`` skips the
multislice.

Run: ``.venv/bin/python benchmarks/zero_strain.py [--material Si] [--voltage 200]
[--convergence 3.0] [--box 19.2] [--thicknesses 10 20 40] [--subsamples 0 8]`` (one
multislice: 40 nm of Si at 200 kV on a 19.2 nm block, minutes on one core).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from lattice_gap import (
    STRAIN,
    lattice_strain,
    strain_components,
)  # the sibling script (benchmarks/ on sys.path)

from sim_devices.cbed_exact import ExactCBED, MultisliceSettings
from sim_devices.cbed_fast import FastCBED
from sim_devices.cbed_library import load_or_build
from sim_devices.disk_positions import fit_lattice, lattice_deformation, measure_disk_positions
from sim_devices.optics import Detector
from sim_devices.rebin import rebin_pattern
from sim_devices.validation import bright_disks, crystal_descriptors
from stem_loop.inference.conditions import MATERIALS, BeamConditions, standard_mrad_per_pixel
from stem_loop.inference.evaluation import TWIN_CONTENT_STEP
from stem_loop.inference.refine import EDGE_SUBPIXELS, closest_fast_model

ZERO = (0.0, 0.0, 0.0)


def nominal_strain(pattern: np.ndarray, fast, guide: np.ndarray) -> np.ndarray:
    """``(exx, eyy, exy)`` of the pattern's fitted disk lattice against the nominal one (the
    disks' true centres, through which the same lattice is fitted)."""
    nominal, hk, weights = bright_disks(fast, ZERO, guide)
    radius = fast.alpha / fast.pixel
    _, basis = fit_lattice(measure_disk_positions(pattern, nominal, radius), hk, weights)
    _, truth = fit_lattice(nominal, hk, weights)
    return strain_components(lattice_deformation(basis, truth))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--material", choices=[m for m, _ in MATERIALS], default="Si")
    parser.add_argument("--voltage", type=float, default=200.0, help="kV")
    parser.add_argument("--convergence", type=float, default=3.0, help="mrad")
    parser.add_argument("--box", type=float, default=19.2, help="crystal block side, nm")
    parser.add_argument("--thicknesses", type=float, nargs="+", default=[10.0, 20.0, 40.0])
    parser.add_argument("--subsamples", type=int, nargs="+", default=[0, 8])
    parser.add_argument("--emulate", type=float, nargs="*", default=[], help="blocks, nm")
    parser.add_argument("--no-exact", action="store_true", help="skip the multislice")
    parser.add_argument(
        "--hard-aperture", action="store_true", help="the exact probe's aperture hard, not soft"
    )
    args = parser.parse_args()
    zone_axis = dict(MATERIALS)[args.material]
    conditions = BeamConditions(
        args.material,
        zone_axis,
        args.voltage,
        args.convergence,
        standard_mrad_per_pixel(args.voltage),
    )
    fast = closest_fast_model(
        load_or_build(conditions.library_spec()),
        conditions,
        (0.0, 0.0),
        content_step=TWIN_CONTENT_STEP,
    )
    twin = fast.patterns(crystal_descriptors(ZERO, (0.0, 0.0), args.thicknesses))
    twin = twin.astype(np.float64)
    detected: dict[str, np.ndarray] = {}
    if not args.no_exact:
        exact = ExactCBED(
            args.material,
            zone_axis,
            conditions.beam,
            conditions.detector((0.0, 0.0)),
            MultisliceSettings(box_nm=args.box),
            soft_aperture=not args.hard_aperture,
        )
        start = time.perf_counter()
        waves, sampling = exact.exit_waves(ZERO, (0.0, 0.0), args.thicknesses)
        print(
            f"{args.material} {args.voltage:g} kV {args.convergence:g} mrad, block {args.box:g} nm:"
            f" multislice {time.perf_counter() - start:.0f} s"
        )
        for n in args.subsamples:
            detected[_label(n)] = exact.detect(waves, sampling, n).astype(np.float64)
        del waves
    for box in args.emulate:
        detected[f"emulated {box:g} nm"] = emulated_block(conditions, box, args.thicknesses)
    print(f"lattice as strain (%), {' '.join(STRAIN)}: against the nominal lattice | exact - twin")
    for t, thickness in enumerate(args.thicknesses):
        rows = {"fast twin": twin[t]}
        rows.update({label: p[t] for label, p in detected.items()})
        for label, pattern in rows.items():
            against_truth = 100 * nominal_strain(pattern, fast, twin[t])
            line = f"  {thickness:4.0f} nm  {label:16s} " + " ".join(
                f"{v:+.3f}" for v in against_truth
            )
            if label != "fast twin":
                gap = 100 * lattice_strain(pattern, twin[t], fast, ZERO)
                line += "  |  " + " ".join(f"{v:+.3f}" for v in gap)
            print(line)


def emulated_block(
    conditions: BeamConditions, box_nm: float, thicknesses: list[float]
) -> np.ndarray:
    """The fast twin sampled every ``lambda / box`` in angle and rebinned onto the detector, as
    the exact model treats a periodic block's FFT samples."""
    detector = conditions.detector((0.0, 0.0))
    step = conditions.beam.wavelength_nm * 10.0 * 1e3 / (box_nm * 10.0)  # mrad
    half = int(np.ceil(detector.pixels * detector.mrad_per_pixel / 2 / step)) + 2
    fine = Detector(pixels=2 * half + 1, mrad_per_pixel=step)
    sampler = FastCBED(
        load_or_build(conditions.library_spec()),
        conditions.beam,
        fine,
        content_engine="multislice",
        content_step=TWIN_CONTENT_STEP,
        edge_subpixels=EDGE_SUBPIXELS,
    )
    samples = sampler.patterns(crystal_descriptors(ZERO, (0.0, 0.0), thicknesses))
    samples = np.swapaxes(samples.astype(np.float64), -1, -2)  # (x, y), as an FFT's
    axes = fine.angles_mrad()
    target = detector.angles_mrad()
    return rebin_pattern(samples, axes, (step, step), target, detector.mrad_per_pixel)


def _label(subsamples: int) -> str:
    return f"exact {subsamples}x{subsamples}" if subsamples else "exact rebinned"


if __name__ == "__main__":
    main()
