"""Forward-model throughput (fast and exact CBED frames/s) and the fast-vs-exact agreement.

Run ``stem-loop bench forward --help``. Figures printed:

* fast model, noise-free patterns/s and with Poisson counting noise (uint16 frames/s), in
  batches, on the machine's cores, for the positions of the built-in ``si_inclusion`` sample:
  with strain-dependent contents (the default model) once their Bloch-wave corrections are
  computed, the first pass that computes them (content grid points and seconds per point),
  and with unstrained contents on random descriptors;
* exact model (abTEM multislice), seconds per pattern at one thickness and per thickness series
  (all exit planes from one run);
* with ``--validate N``: N random strains (each component in ±2 %) and tilts (±3 mrad) at
  10, 45 and 80 nm, fast vs exact: pattern correlation and largest disk-position difference.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import numpy as np


def _random_descriptors(n: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return dict(
        exx=rng.uniform(-0.02, 0.02, n),
        eyy=rng.uniform(-0.02, 0.02, n),
        exy=rng.uniform(-0.02, 0.02, n),
        thickness_nm=rng.uniform(10, 80, n),
        tilt_x_mrad=rng.uniform(-3, 3, n),
        tilt_y_mrad=rng.uniform(-3, 3, n),
    )


def run_forward_bench(
    n_fast: int = 4096,
    *,
    exact: bool = True,
    exact_thickness_nm: float = 45.0,
    validate: int = 0,
    seed: int = 0,
    verbose: bool = True,
) -> dict[str, Any]:
    """Measure the forward models; return the figures as a dict (see module docstring)."""
    import torch

    from sim_devices import Beam, Detector
    from sim_devices.builtin_samples import builtin_sample
    from sim_devices.cbed_exact import ExactCBED
    from sim_devices.cbed_fast import FastCBED
    from sim_devices.noise import poisson_counts

    beam, detector = Beam(), Detector()
    start = time.perf_counter()
    fast = FastCBED.for_conditions("Si", "110", beam, detector)
    load_s = time.perf_counter() - start
    plain = FastCBED(fast.library, beam, detector, strain_contents=False)
    descriptors = _random_descriptors(n_fast, seed)
    plain.patterns({k: v[:16] for k, v in descriptors.items()})  # warm-up
    start = time.perf_counter()
    plain.patterns(descriptors)
    plain_s = time.perf_counter() - start

    sample = builtin_sample("si_inclusion")
    maps = {k: np.asarray(v, float).ravel() for k, v in sample.maps.items()}
    take = np.random.default_rng(seed).integers(len(maps["exx"]), size=n_fast)
    scan = {k: v[take] for k, v in maps.items()}
    assert fast.contents is not None
    points = len(
        np.unique(
            fast.contents.voxels(np.stack([scan[k] for k in ("exx", "eyy", "exy")], 1)), axis=0
        )
    )
    start = time.perf_counter()
    fast.patterns(scan)  # computes the content corrections of every grid point touched
    cold_s = time.perf_counter() - start
    start = time.perf_counter()
    patterns = fast.patterns(scan)
    render_s = time.perf_counter() - start
    start = time.perf_counter()
    poisson_counts(patterns, detector.dose, np.random.default_rng(seed))
    noise_s = time.perf_counter() - start

    exact_model = ExactCBED("Si", "110", beam, detector)
    result: dict[str, Any] = {
        "conditions": {
            "material": "Si",
            "zone_axis": "110",
            "voltage_kv": beam.voltage_kv,
            "convergence_mrad": beam.convergence_mrad,
            "pixels": detector.pixels,
            "mrad_per_pixel": detector.mrad_per_pixel,
            "dose": detector.dose,
            "sampling_a": exact_model.settings.sampling_a,
            "exact_box_nm": exact_model.settings.box_nm,
        },
        "threads": torch.get_num_threads(),
        "fast_library_load_s": load_s,
        "fast_patterns_per_s": n_fast / render_s,
        "fast_frames_per_s_with_noise": n_fast / (render_s + noise_s),
        "fast_content_points": points,
        "fast_first_pass_s": cold_s,
        "fast_content_setup_s_per_point": max(cold_s - render_s, 0.0) / max(points, 1),
        "fast_unstrained_contents_patterns_per_s": n_fast / plain_s,
    }
    if exact:
        strain, tilt = (0.01, -0.005, 0.002), (1.0, -0.5)
        start = time.perf_counter()
        exact_model.thickness_series(strain, tilt, [exact_thickness_nm])
        result["exact_s_per_pattern"] = time.perf_counter() - start
        result["exact_thickness_nm"] = exact_thickness_nm
        series = [10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0, 80.0]
        start = time.perf_counter()
        exact_model.thickness_series(strain, tilt, series)
        result["exact_s_per_thickness_series"] = time.perf_counter() - start
        result["exact_series_thicknesses_nm"] = series
    if validate:
        from sim_devices.validation import compare, random_conditions

        cases = []
        for strain, tilt in random_conditions(validate, seed=seed):
            cases += [
                c.as_dict() | {"passed": c.passed()}
                for c in compare(fast, exact_model, strain, tilt, [10.0, 45.0, 80.0])
            ]
        result["validation"] = cases
        result["validation_min_correlation"] = min(c["correlation"] for c in cases)
        result["validation_max_disk_shift_px"] = max(c["max_disk_shift_px"] for c in cases)
        result["validation_passed"] = all(c["passed"] for c in cases)
    if verbose:
        _print(result)
    return result


def _print(r: dict[str, Any]) -> None:
    c = r["conditions"]
    print(
        f"forward models: {c['material']} [{c['zone_axis']}], {c['voltage_kv']:g} kV, "
        f"{c['convergence_mrad']:g} mrad, {c['pixels']}x{c['pixels']} px at "
        f"{c['mrad_per_pixel']} mrad/px, sampling {c['sampling_a']} A, {r['threads']} threads"
    )
    print(
        f"  fast  : {r['fast_patterns_per_s']:8.0f} patterns/s noise-free, "
        f"{r['fast_frames_per_s_with_noise']:8.0f} frames/s with Poisson noise "
        f"(dose {c['dose']:g}); si_inclusion positions, strained contents"
    )
    print(
        f"          first pass {r['fast_first_pass_s']:.1f} s: {r['fast_content_points']} content "
        f"grid points, {r['fast_content_setup_s_per_point']:.2f} s each (Bloch waves, once)"
    )
    print(
        f"          {r['fast_unstrained_contents_patterns_per_s']:8.0f} patterns/s with unstrained "
        "contents (random descriptors)"
    )
    if "exact_s_per_pattern" in r:
        print(
            f"  exact : {r['exact_s_per_pattern']:8.1f} s per pattern at "
            f"{r['exact_thickness_nm']:g} nm, {r['exact_s_per_thickness_series']:.1f} s per "
            f"series of {len(r['exact_series_thicknesses_nm'])} thicknesses "
            f"({c['exact_box_nm']:g} nm block)"
        )
    if "validation" in r:
        print("  fast vs exact (strain, tilt, thickness -> correlation, max disk shift px):")
        for v in r["validation"]:
            strain = f"({v['exx']:+.4f},{v['eyy']:+.4f},{v['exy']:+.4f})"
            tilt = f"({v['tilt_x_mrad']:+.2f},{v['tilt_y_mrad']:+.2f})"
            verdict = "ok" if v["passed"] else "FAIL"
            print(
                f"    e={strain} tilt={tilt} t={v['thickness_nm']:4.0f} nm -> "
                f"{v['correlation']:.4f}, {v['max_disk_shift_px']:.3f} px over "
                f"{v['disks_compared']} disks {verdict}"
            )
        print(
            f"  worst: correlation {r['validation_min_correlation']:.4f}, "
            f"disk shift {r['validation_max_disk_shift_px']:.3f} px"
        )


def main(argv: list[str] | None = None) -> None:
    """Command-line entry (``stem-loop bench forward``)."""
    parser = argparse.ArgumentParser(
        prog="stem-loop bench forward",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--frames", type=int, default=4096, help="fast-model frames to time")
    parser.add_argument(
        "--exact-thickness", type=float, default=45.0, help="nm, for the single exact pattern"
    )
    parser.add_argument(
        "--validate",
        type=int,
        default=0,
        metavar="N",
        help="also compare fast vs exact at N random strain/tilt conditions",
    )
    parser.add_argument("--no-exact", action="store_true", help="skip timing the exact model")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true", help="print the result as JSON (last line)")
    args = parser.parse_args(argv)
    result = run_forward_bench(
        args.frames,
        exact=not args.no_exact,
        exact_thickness_nm=args.exact_thickness,
        validate=args.validate,
        seed=args.seed,
    )
    if args.json:
        print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
