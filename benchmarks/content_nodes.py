"""Content nodes: what they cost per library, and how close they bring the fast model to exact.

``time``: for each of the six beam libraries, the seconds to build its library from the strained
cell at zero strain (``LibrarySpec(source="cell")``) and to run the 27 node multislices of
:mod:`sim_devices.content_nodes` (nothing is written to the cache), and their sum.

``fidelity``: for every held-out crystal (both shipped sets) at the given voltages, the fast
model (pixel-integrated edges, as the held-out evaluation's fast twin) against the exact
patterns at 10^5 electrons: chi^2 (median over the crystal's thicknesses) and the lattice-fit
disk positions (:func:`sim_devices.validation.compare_patterns`), with the disk contents of
the strained cell at the crystal's 0.5 % grid point (``multislice``), of the nodes (``nodes``)
and of the unstrained library (``unstrained``); then each variant's median chi^2 and rms /
largest disk-position difference over all the patterns.

Run: ``.venv/bin/python benchmarks/content_nodes.py time`` (about 35 minutes on 2 cores) or
``.venv/bin/python benchmarks/content_nodes.py fidelity --voltages 80`` (computes the nodes of
the 80 kV libraries if they are not cached, and one cell per crystal).
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace

import numpy as np
import torch

from sim_devices.cbed_fast import FastCBED
from sim_devices.cbed_library import LibrarySpec, build_library, load_or_build
from sim_devices.cell_multislice import CPU_CHUNK
from sim_devices.content_nodes import node_strains
from sim_devices.strain_contents import StrainContents
from sim_devices.validation import compare_patterns
from stem_loop.inference.conditions import MATERIALS, TRAINING_VOLTAGES_KV
from stem_loop.inference.evaluation import load_heldout
from stem_loop.inference.heldout import SECOND_HELDOUT, SHIPPED_HELDOUT, STORED_DOSE
from stem_loop.inference.refine import EDGE_SUBPIXELS

DESCRIPTORS = ("exx", "eyy", "exy", "thickness_nm", "tilt_x_mrad", "tilt_y_mrad")
CONTENTS = ("multislice", "nodes", "unstrained")


def time_libraries(materials: tuple[str, ...], voltages: tuple[float, ...]) -> None:
    """Seconds per library: its build from the cell, and its 27 node multislices."""
    print(f"{'library':18s} {'cell library s':>15s} {'27 nodes s':>11s}", flush=True)
    totals = np.zeros(2)
    for material, zone_axis in MATERIALS:
        if material not in materials:
            continue
        for voltage in voltages:
            spec = LibrarySpec(material=material, zone_axis=zone_axis, voltage_kv=voltage)
            start = time.perf_counter()
            library = build_library(replace(spec, source="cell"))
            built = time.perf_counter() - start
            contents = StrainContents(library, engine="nodes")
            start = time.perf_counter()
            for strain in node_strains():
                contents.cell.intensities(
                    tuple(float(v) for v in strain),
                    contents.directions,
                    contents.exit_slices(),
                    library.hk,
                    chunk=CPU_CHUNK,
                )
            nodes = time.perf_counter() - start
            totals += (built, nodes)
            print(f"{material + f' {voltage:g} kV':18s} {built:15.1f} {nodes:11.1f}", flush=True)
    print(f"{'total':18s} {totals[0]:15.1f} {totals[1]:11.1f}  ({totals.sum() / 60:.1f} min)")


def _model(library, conditions, offset, contents: str) -> FastCBED:
    return FastCBED(
        library,
        conditions.beam,
        conditions.detector(offset),
        strain_contents=contents != "unstrained",
        content_engine="nodes" if contents == "nodes" else "multislice",
        edge_subpixels=EDGE_SUBPIXELS,
    )


def fidelity(voltages: tuple[float, ...]) -> None:
    """Fast against exact held-out patterns, by where the disk contents come from."""
    from stem_loop.inference.evaluation import _run_conditions

    chi2 = {c: [] for c in CONTENTS}
    shift = {c: [] for c in CONTENTS}
    print(f"{'set':6s} {'run':>3s} {'crystal':18s} " + " ".join(f"{c:>24s}" for c in CONTENTS))
    for name, path in (("first", SHIPPED_HELDOUT), ("second", SECOND_HELDOUT)):
        heldout = load_heldout(path)
        for run, (conditions, offset) in enumerate(_run_conditions(heldout["meta"])):
            if conditions.voltage_kv not in voltages:
                continue
            rows = np.flatnonzero(heldout["run_index"] == run)
            library = load_or_build(conditions.library_spec())
            values = {k: heldout[k][rows].astype(np.float64) for k in DESCRIPTORS}
            strain = tuple(float(values[k][0]) for k in ("exx", "eyy", "exy"))
            tilt = (float(values["tilt_x_mrad"][0]), float(values["tilt_y_mrad"][0]))
            exact = heldout["counts"][rows].astype(np.float64)
            cells = []
            for contents in CONTENTS:
                fast = _model(library, conditions, offset, contents)
                model = fast.patterns(values).astype(np.float64) * STORED_DOSE
                x = ((model - exact) ** 2 / np.maximum(model, 1.0)).sum(axis=(1, 2))
                cases = compare_patterns(
                    fast, exact / STORED_DOSE, strain, tilt, list(values["thickness_nm"])
                )
                d = np.array([c.max_disk_shift_px for c in cases])
                chi2[contents].extend(x)
                shift[contents].extend(d)
                cells.append(f"{np.median(x):9.0f} {np.sqrt(np.mean(d**2)):6.3f} {d.max():6.3f}")
            crystal = f"{conditions.material} {conditions.voltage_kv:g} kV"
            print(f"{name:6s} {run:3d} {crystal:18s} " + " ".join(f"{c:>24s}" for c in cells))
    print("\nover all patterns: median chi^2, disk positions rms / max (px)")
    for contents in CONTENTS:
        d = np.array(shift[contents])
        print(
            f"  {contents:11s} {np.median(chi2[contents]):8.0f} "
            f"{np.sqrt(np.mean(d**2)):6.3f} {d.max():6.3f}  ({len(d)} patterns)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=("time", "fidelity"))
    parser.add_argument("--voltages", type=float, nargs="+", default=list(TRAINING_VOLTAGES_KV))
    parser.add_argument(
        "--materials", nargs="+", default=[m for m, _ in MATERIALS], help="time these only"
    )
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.what == "time":
        time_libraries(tuple(args.materials), tuple(args.voltages))
    else:
        fidelity(tuple(args.voltages))


if __name__ == "__main__":
    main()
