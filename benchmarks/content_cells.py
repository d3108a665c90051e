"""Time one strained-cell content cell (the shipped training recipe's unit of work) per library.

For each of the six beam libraries: the strained-cell multislice of one content-strain grid
point, as :class:`sim_devices.strain_contents.StrainContents` (``engine="multislice"``) runs
it (its incident directions, every second of the library's, and all stored thicknesses), in
seconds; then the same intensities with every direction propagated (``use_two_fold=False``,
what a cell cost before), and the largest difference between the two.

Run: ``.venv/bin/python benchmarks/content_cells.py [--device cuda] [--threads 2]``.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from sim_devices.cbed_library import LibrarySpec, load_or_build
from sim_devices.cell_multislice import CPU_CHUNK
from sim_devices.strain_contents import StrainContents

LIBRARIES = (
    ("Si", "110", 80.0),
    ("Si", "110", 200.0),
    ("Si", "110", 300.0),
    ("SrTiO3", "001", 80.0),
    ("SrTiO3", "001", 200.0),
    ("SrTiO3", "001", 300.0),
)
#: The grid point timed (0.5 % steps: exx -1 %, eyy +1.5 %, exy +1 %).
VOXEL = (-2, 3, 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="where the waves are propagated")
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    chunk = CPU_CHUNK if torch.device(args.device).type == "cpu" else None
    print(f"{'library':18s} {'cell s':>7s} {'every direction s':>18s} {'max |diff|':>11s}")
    cells, every_times = [], []
    for material, zone_axis, voltage in LIBRARIES:
        library = load_or_build(LibrarySpec(material, zone_axis, voltage))
        contents = StrainContents(library, engine="multislice", device=args.device)
        strain = tuple(v * contents.step for v in VOXEL)
        timed = {}
        for use_two_fold in (True, False):
            start = time.perf_counter()
            timed[use_two_fold] = contents.cell.intensities(
                strain,
                contents.directions,
                contents.exit_slices(),
                library.hk,
                chunk=chunk or len(contents.directions),
                device=args.device,
                use_two_fold=use_two_fold,
            )
            (cells if use_two_fold else every_times).append(time.perf_counter() - start)
        diff = float(np.abs(timed[True] - timed[False]).max())
        name = f"{material} {voltage:g} kV"
        print(f"{name:18s} {cells[-1]:7.2f} {every_times[-1]:18.2f} {diff:11.1e}", flush=True)
    print(f"{'mean':18s} {np.mean(cells):7.2f} {np.mean(every_times):18.2f}")


if __name__ == "__main__":
    main()
