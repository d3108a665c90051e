"""``python -m sim_devices build-library | exact-reference``: the fast model's precomputed data.

``build-library`` computes a beam library; ``exact-reference`` recomputes the converged exact
patterns the fast model is validated against (shipped in ``sim_devices/data``).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from .cbed_library import LibrarySpec, build_library, cache_dir


def main(argv: list[str] | None = None) -> None:
    """Build a beam library and save it (default: the cache the fast model loads from)."""
    parser = argparse.ArgumentParser(prog="python -m sim_devices", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    build = sub.add_parser("build-library", help="compute a beam-intensity library with abTEM")
    build.add_argument("--material", default="Si")
    build.add_argument("--zone-axis", default="110")
    build.add_argument("--voltage-kv", type=float, default=200.0)
    build.add_argument(
        "--out",
        type=Path,
        default=None,
        help="directory (default: $STEM_LOOP_CACHE or ~/.cache/stem-loop, where the fast model "
        "looks; it also looks in the package's sim_devices/data for shipped libraries)",
    )
    reference = sub.add_parser(
        "exact-reference",
        help="recompute the exact patterns of the validation corners (two processes, ~15 min)",
    )
    reference.add_argument("--out", type=Path, default=None, help="file (default: the shipped)")
    reference.add_argument("--box-nm", type=float, default=None, help="crystal block (nm)")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    if args.command == "exact-reference":
        from .validation import REFERENCE_BOX_NM, REFERENCE_FILE, build_exact_reference

        path = build_exact_reference(
            args.out or REFERENCE_FILE, box_nm=args.box_nm or REFERENCE_BOX_NM
        )
        print(f"wrote {path} ({time.perf_counter() - start:.0f} s)")
        return
    spec = LibrarySpec(material=args.material, zone_axis=args.zone_axis, voltage_kv=args.voltage_kv)
    library = build_library(spec, progress=True)
    path = library.save((args.out or cache_dir()) / spec.filename())
    print(f"wrote {path} ({library.intensity.shape}, {time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main()
