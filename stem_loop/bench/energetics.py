"""Energetics benchmark: DFT cost, DFT calls per position, surrogate error vs direct DFT.

Run ``stem-loop bench energetics --help``. Figures printed:

* seconds per DFT structure (median wall time of the loop's GPAW jobs, each on one core);
* the relaxed reference (lattice constant, bulk modulus) and how long it took;
* DFT calls per position when the descriptors of N random positions of a built-in sample
  go through the surrogate (``--tolerance``), and the surrogate's error against direct DFT
  at ``--validate`` randomly chosen positions it answered (goal: <= 10 % calls, <= 1 meV/atom);
* with ``--series``: energies of uniaxial and shear strains from 0.1 % to 2 % (resolution);
* with ``--compare-executors``: start-up and per-job overhead of the process pool and Dask.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from typing import Any

import numpy as np

SERIES = [
    (0.001, 0.0, 0.0),
    (-0.001, 0.0, 0.0),
    (0.01, 0.0, 0.0),
    (-0.01, 0.0, 0.0),
    (0.02, 0.0, 0.0),
    (-0.02, 0.0, 0.0),
    (0.0, 0.01, 0.0),
    (0.0, 0.0, 0.001),
    (0.0, 0.0, 0.01),
    (0.0, 0.0, -0.01),
]


def _echo(job):
    """A job that does nothing: measures the executor's own overhead."""
    return job


def _sample_strains(sample: str, n: int, seed: int) -> np.ndarray:
    from sim_devices import builtin_sample

    s = builtin_sample(sample)
    width, height = s.extent_nm
    rng = np.random.default_rng(seed)
    d = s.descriptors_at(rng.uniform(0, width, n), rng.uniform(0, height, n))
    return np.column_stack([d["exx"], d["eyy"], d["exy"]])


def _compare_executors(settings, workers: int, jobs: int) -> dict[str, Any]:
    from stem_loop.energetics import Dispatcher, DispatchSettings, build_structure

    atoms = [
        build_structure({"exx": e, "eyy": 0.0, "exy": 0.0}, "Si", lattice_constant_a=5.47)
        for e in np.linspace(-0.01, 0.01, jobs)
    ]
    out = {}
    for kind in ("process", "dask"):
        start = time.perf_counter()
        echo = Dispatcher(DispatchSettings(executor=kind, workers=workers), function=_echo)
        with echo:
            echo.submit(echo.job(atoms[0], settings)).result()  # workers up
            startup = time.perf_counter() - start
            latencies = []
            for _ in range(20):
                t0 = time.perf_counter()
                echo.submit(echo.job(atoms[0], settings)).result()
                latencies.append(time.perf_counter() - t0)
        with Dispatcher(DispatchSettings(executor=kind, workers=workers)) as d:
            d.submit(d.job(atoms[0], settings)).result()  # warm
            t0 = time.perf_counter()
            results = [f.result() for f in [d.submit(d.job(a, settings)) for a in atoms]]
            elapsed = time.perf_counter() - t0
        busy = sum(r.wall_s for r in results) / workers
        out[kind] = {
            "startup_s": startup,
            "round_trip_ms": 1000 * statistics.median(latencies),
            "gpaw_jobs": jobs,
            "gpaw_elapsed_s": elapsed,
            "overhead_s_per_job": max(elapsed - busy, 0.0) / jobs * workers,
        }
    return out


def run_energetics_bench(
    *,
    material: str = "Si",
    preset: str = "production",
    sample: str = "si_inclusion",
    positions: int = 300,
    tolerance_mev: float = 0.1,
    validate: int = 10,
    executor: str = "process",
    workers: int = 2,
    series: bool = False,
    compare_executors: bool = False,
    seed: int = 0,
    verbose: bool = True,
) -> dict[str, Any]:
    """Run the benchmark; return the figures as a dict (see module docstring)."""
    from stem_loop.energetics import (
        Dispatcher,
        DispatchSettings,
        EnergyService,
        relax_reference,
        settings_for,
    )
    from stem_loop.energetics.reference import cache_path

    settings = settings_for(material, preset)
    strains = _sample_strains(sample, positions, seed)
    result: dict[str, Any] = {
        "material": material,
        "preset": preset,
        "calculator": settings.as_dict(),
        "sample": sample,
        "positions": positions,
        "tolerance_mev": tolerance_mev,
        "executor": executor,
        "workers": workers,
    }
    start = time.perf_counter()
    with Dispatcher(DispatchSettings(executor=executor, workers=workers)) as dispatcher:
        cached = cache_path(material, settings).exists()
        t0 = time.perf_counter()
        reference = relax_reference(material, settings, dispatcher)
        result["reference"] = {
            "lattice_constant_a": reference.lattice_constant_a,
            "bulk_modulus_gpa": reference.bulk_modulus_gpa,
            "energy_ev_per_atom": reference.energy_ev_per_atom,
            "from_cache": cached,
            "wall_s": reference.wall_s if not cached else time.perf_counter() - t0,
        }
        service = EnergyService(
            material, settings, dispatcher, tolerance_mev=tolerance_mev, reference=reference
        )
        t0 = time.perf_counter()
        service.request_many(strains)
        service.wait()
        result["loop_wall_s"] = time.perf_counter() - t0
        answers = service.ordered_results()
        sources = [a.source for a in answers]
        dft_walls = [a.wall_s for a in answers if a.source == "dft"]
        result["dft_calls"] = service.dft_calls
        result["dft_calls_per_position"] = service.dft_calls / positions
        result["answers_by_source"] = {s: sources.count(s) for s in sorted(set(sources))}
        result["s_per_dft_structure"] = statistics.median(dft_walls) if dft_walls else None
        result["max_std_mev"] = max(a.std_mev_per_atom for a in answers)

        surrogate = [a for a in answers if a.source == "surrogate"]
        rng = np.random.default_rng(seed + 1)
        picks = rng.choice(len(surrogate), size=min(validate, len(surrogate)), replace=False)
        check = [surrogate[i] for i in sorted(picks)]
        direct = EnergyService(
            material, settings, dispatcher, tolerance_mev=None, reference=reference
        )
        direct.request_many([a.strain for a in check])
        direct.wait()
        validation = []
        for predicted, computed in zip(check, direct.ordered_results(), strict=True):
            validation.append(
                {
                    "strain": list(predicted.strain),
                    "surrogate_mev": predicted.energy_mev_per_atom,
                    "surrogate_std_mev": predicted.std_mev_per_atom,
                    "dft_mev": computed.energy_mev_per_atom,
                    "error_mev": predicted.energy_mev_per_atom - computed.energy_mev_per_atom,
                }
            )
        errors = np.array([v["error_mev"] for v in validation])
        result["validation"] = validation
        result["max_abs_error_mev"] = float(np.abs(errors).max()) if len(errors) else None
        result["rms_error_mev"] = float(np.sqrt(np.mean(errors**2))) if len(errors) else None
        result["goal_met"] = bool(
            result["dft_calls_per_position"] <= 0.10
            and result["max_abs_error_mev"] is not None
            and result["max_abs_error_mev"] <= 1.0
        )
        if series:
            exact = EnergyService(
                material, settings, dispatcher, tolerance_mev=None, reference=reference
            )
            exact.request_many(SERIES)
            exact.wait()
            result["series"] = [
                {
                    "strain": list(a.strain),
                    "energy_mev_per_atom": a.energy_mev_per_atom,
                    "wall_s": a.wall_s,
                    "max_force_ev_per_a": (a.extra.get("attempts") or [{}])[-1].get(
                        "max_force_ev_per_a"
                    ),
                }
                for a in exact.ordered_results()
            ]
    result["wall_s"] = time.perf_counter() - start
    if compare_executors:
        result["executors"] = _compare_executors(settings_for(material, "quick"), workers, 4)
    if verbose:
        _print(result)
    return result


def _print(r: dict[str, Any]) -> None:
    c, ref = r["calculator"], r["reference"]
    print(
        f"energetics: {r['material']}, GPAW PW {c['ecut_ev']:g} eV, k {c['kpts']} (Gamma), "
        f"{c['xc']}; {r['executor']} with {r['workers']} workers"
    )
    origin = "cache" if ref["from_cache"] else f"relaxed in {ref['wall_s']:.0f} s"
    print(
        f"  reference      : a = {ref['lattice_constant_a']:.4f} A, "
        f"B = {ref['bulk_modulus_gpa']:.0f} GPa ({origin})"
    )
    if r["s_per_dft_structure"] is not None:
        print(f"  DFT structure  : {r['s_per_dft_structure']:.1f} s (median, one core each)")
    print(
        f"  DFT calls      : {r['dft_calls']} for {r['positions']} positions of "
        f"{r['sample']} = {100 * r['dft_calls_per_position']:.1f} % "
        f"(tolerance {r['tolerance_mev']:g} meV/atom; answers {r['answers_by_source']})"
    )
    if r["max_abs_error_mev"] is not None:
        print(
            f"  surrogate error: max {r['max_abs_error_mev']:.4f}, rms "
            f"{r['rms_error_mev']:.4f} meV/atom vs direct DFT at {len(r['validation'])} "
            f"positions; goal (<=10 % calls, <=1 meV/atom) {'met' if r['goal_met'] else 'MISSED'}"
        )
    for s in r.get("series", []):
        exx, eyy, exy = s["strain"]
        print(
            f"  strain ({exx:+.3f},{eyy:+.3f},{exy:+.3f}): "
            f"{s['energy_mev_per_atom']:9.4f} meV/atom  ({s['wall_s']:.1f} s)"
        )
    for kind, e in r.get("executors", {}).items():
        print(
            f"  {kind:7s}: start {e['startup_s']:.1f} s, round trip {e['round_trip_ms']:.1f} ms, "
            f"{e['gpaw_jobs']} quick GPAW jobs {e['gpaw_elapsed_s']:.1f} s "
            f"(overhead {e['overhead_s_per_job']:.2f} s/job)"
        )
    print(f"  total {r['wall_s']:.0f} s")


def main(argv: list[str] | None = None) -> None:
    """Command-line entry (``stem-loop bench energetics``)."""
    parser = argparse.ArgumentParser(
        prog="stem-loop bench energetics",
        description=__doc__.split("\n\n")[0],
    )
    parser.add_argument("--material", default="Si")
    parser.add_argument("--settings", choices=("production", "quick"), default="production")
    parser.add_argument("--sample", default="si_inclusion", help="built-in sample")
    parser.add_argument("--positions", type=int, default=300)
    parser.add_argument("--tolerance", type=float, default=0.1, help="surrogate σ, meV/atom")
    parser.add_argument("--validate", type=int, default=10, help="direct DFT checks")
    parser.add_argument("--executor", default="process")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--series", action="store_true", help="strain series 0.1 %% to 2 %%")
    parser.add_argument(
        "--compare-executors", action="store_true", help="process pool vs Dask overhead"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true", help="print the result as JSON last")
    args = parser.parse_args(argv)
    result = run_energetics_bench(
        material=args.material,
        preset=args.settings,
        sample=args.sample,
        positions=args.positions,
        tolerance_mev=args.tolerance,
        validate=args.validate,
        executor=args.executor,
        workers=args.workers,
        series=args.series,
        compare_executors=args.compare_executors,
        seed=args.seed,
    )
    if args.json:
        print(json.dumps(result), flush=True)
