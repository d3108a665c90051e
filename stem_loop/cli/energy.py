"""``stem-loop energy``: DFT strain energies of the structures built from descriptors."""

from __future__ import annotations

import argparse
import math
import re
import time
from dataclasses import replace

from ._common import CommandError, add_json_option, emit


def parse_strain(text: str) -> tuple[float, float, float]:
    """``"EXX,EYY,EXY"`` -> three floats.

    Raises
    ------
    ValueError
        Unless the text is exactly three comma-separated numbers.
    """
    parts = text.split(",")
    try:
        if len(parts) != 3:
            raise ValueError
        values = tuple(float(p) for p in parts)
    except ValueError:
        raise ValueError(
            f"--strain {text!r}: expected EXX,EYY,EXY, three numbers (fractions: 0.01 = 1 %)"
        ) from None
    return values  # type: ignore[return-value]


def _kpts(text: str) -> tuple[int, int, int]:
    try:
        values = [int(p) for p in text.lower().replace("x", ",").split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected K or KxKxK, got {text!r}") from None
    if len(values) == 1:
        values *= 3
    if len(values) != 3 or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected K or KxKxK with K >= 1, got {text!r}")
    return tuple(values)  # type: ignore[return-value]


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``energy`` subcommand."""
    parser = subparsers.add_parser(
        "energy",
        help="DFT (GPAW) strain energies of strained crystals",
        description="Build the strained crystal for each in-plane scan-frame strain (plane "
        "stress, zone-axis orientation of the microscope), compute its GPAW energy and print "
        "it per atom relative to the relaxed unstrained reference (meV/atom). The reference "
        "lattice is relaxed once per settings and cached ($STEM_LOOP_CACHE or "
        "~/.cache/stem-loop), and so is every DFT energy: a structure computed before with "
        "the same settings is answered from the cache (source 'cache').",
    )
    parser.add_argument("--material", default="Si", help="Si ([110]) or SrTiO3 ([001])")
    parser.add_argument(
        "--strain",
        metavar="EXX,EYY,EXY",
        action="append",
        required=True,
        help="in-plane strain as fractions (0.01 = 1 %%), tensor shear; repeat for more",
    )
    parser.add_argument(
        "--executor",
        default="process",
        help="process (local pool, default), dask (a Dask LocalCluster) or tcp://HOST:PORT "
        "(an existing Dask scheduler)",
    )
    parser.add_argument("--workers", type=int, default=2, help="local workers (default: 2)")
    parser.add_argument(
        "--settings",
        choices=("production", "quick"),
        default="production",
        help="GPAW settings preset (default: production; quick is for tests)",
    )
    parser.add_argument("--ecut", type=float, help="override the plane-wave cutoff (eV)")
    parser.add_argument("--kpts", type=_kpts, help="override the k-point grid, K or KxKxK")
    parser.add_argument(
        "--timeout", type=float, default=600.0, help="seconds per GPAW attempt (default: 600)"
    )
    parser.add_argument(
        "--retries", type=int, default=2, help="SCF retries with safer settings (default: 2)"
    )
    parser.add_argument("--threads", type=int, default=1, help="OpenMP threads per GPAW process")
    parser.add_argument("--mpi-ranks", type=int, default=1, help="MPI ranks per GPAW process")
    parser.add_argument(
        "--recompute",
        action="store_true",
        help="run DFT for every structure even if an earlier run computed it (the new "
        "results are still added to the cache)",
    )
    add_json_option(parser)
    # "--strain -0.01,0,0": treat a leading minus followed by a digit or dot as a value.
    parser._negative_number_matcher = re.compile(r"^-\.?\d")
    parser.set_defaults(func=run)


def _check(args: argparse.Namespace):
    """Validate everything before a single job is submitted."""
    from stem_loop.energetics import (
        DispatchSettings,
        ParallelSettings,
        get_material,
        settings_for,
        validate_strain,
    )

    try:
        material = get_material(args.material)
        strains = [validate_strain(*parse_strain(s)) for s in args.strain]
        settings = settings_for(material.name, args.settings)
        if args.ecut is not None:
            if args.ecut < 100:
                raise ValueError(f"--ecut {args.ecut:g} eV is too low for PAW (use >= 100)")
            settings = replace(settings, ecut_ev=args.ecut)
        if args.kpts is not None:
            settings = replace(settings, kpts=args.kpts)
        if args.retries < 0 or args.threads < 1 or args.mpi_ranks < 1:
            raise ValueError("--retries must be >= 0, --threads and --mpi-ranks >= 1")
        dispatch = DispatchSettings(
            executor=args.executor,
            workers=args.workers,
            timeout_s=args.timeout,
            retries=args.retries,
            parallel=ParallelSettings(omp_threads=args.threads, mpi_ranks=args.mpi_ranks),
        )
    except ValueError as err:
        raise CommandError(str(err)) from None
    return material, strains, settings, dispatch


def run(args: argparse.Namespace) -> int:
    """Compute the energies and print them (JSON list last with ``--json``)."""
    material, strains, settings, dispatch = _check(args)
    from stem_loop.energetics import Dispatcher, EnergyService, ResultStore, scan_frame_strain

    start = time.perf_counter()
    try:
        dispatcher = Dispatcher(dispatch)
    except OSError as err:
        raise CommandError(f"cannot reach executor {args.executor}: {err}") from None
    with dispatcher:
        service = EnergyService(
            material.name,
            settings,
            dispatcher,
            tolerance_mev=None,
            store=ResultStore.for_settings(material.name, settings),
            reuse_stored=not args.recompute,
        )
        try:
            reference = service.wait_for_reference()
        except RuntimeError as err:
            raise CommandError(str(err)) from None
        service.request_many(strains)
        service.wait()
        where = dispatcher.description
    total_s = time.perf_counter() - start
    results = []
    for estimate in service.ordered_results():
        record = estimate.as_dict()
        ok = not math.isnan(record["energy_mev_per_atom"]) and estimate.source != "surrogate"
        record.update(
            material=material.name,
            zone_axis=material.zone_axis,
            scan_frame_strain=scan_frame_strain(*estimate.strain, material).tolist(),
            ok=ok,
            reference={
                "lattice_constant_a": reference.lattice_constant_a,
                "energy_ev_per_atom": reference.energy_ev_per_atom,
                "bulk_modulus_gpa": reference.bulk_modulus_gpa,
            },
            executor=where,
        )
        if not ok:
            record["energy_mev_per_atom"] = None
        results.append(record)
    lines = [
        f"{material.name} [{material.zone_axis}], GPAW PW {settings.ecut_ev:g} eV, "
        f"k {'x'.join(map(str, settings.kpts))} (Gamma-centred), {settings.xc}; "
        f"relaxed a = {reference.lattice_constant_a:.4f} A "
        f"(B = {reference.bulk_modulus_gpa:.0f} GPa); {where}",
        "      exx       eyy       exy   E (meV/atom)   wall s  source",
    ]
    for r in results:
        exx, eyy, exy = r["strain"]
        energy = "failed" if r["energy_mev_per_atom"] is None else f"{r['energy_mev_per_atom']:.4f}"
        note = f"  ({r['reason']})" if r["reason"] else ""
        lines.append(
            f"{exx:+9.5f} {eyy:+9.5f} {exy:+9.5f} {energy:>14} {r['wall_s']:8.2f}  "
            f"{r['source']}{note}"
        )
    lines.append(f"total {total_s:.1f} s")
    emit(results, "\n".join(lines), as_json=args.json)
    failed = [r for r in results if not r["ok"]]
    if failed:
        raise CommandError(f"{len(failed)} of {len(results)} calculations failed")
    return 0
