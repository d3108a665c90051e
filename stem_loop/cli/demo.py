"""``stem-loop demo``: a sparse scan of the built-in sample, recorded into Tiled.

Until the autonomous loop exists this records frames at random (seeded) positions through the
Ophyd devices in batch mode and says where to browse them.
"""

from __future__ import annotations

import argparse
import shlex
import time

from ._common import add_data_option, add_json_option, emit
from .serve import DEFAULT_HOST, DEFAULT_PORT

SERVE_URI = f"http://{DEFAULT_HOST}:{DEFAULT_PORT}/api/v1"


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``demo`` subcommand."""
    parser = subparsers.add_parser(
        "demo",
        help="record a sparse scan of the built-in sample into Tiled",
        description="Record CBED frames at random positions of a simulated sample through "
        "the Ophyd devices (batch mode) into the Tiled catalog, then print a summary and "
        "where to browse the run.",
    )
    parser.add_argument(
        "--sample",
        metavar="NAME|PATH",
        help="built-in sample name or sample .npz (default: $STEM_LOOP_SAMPLE or built-in)",
    )
    parser.add_argument("--positions", type=int, default=500, help="probe positions (default: 500)")
    parser.add_argument("--seed", type=int, default=0, help="positions and noise seed")
    add_data_option(parser)
    add_json_option(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Record the scan and print the summary."""
    import numpy as np

    from stem_loop.plans import sparse_scan
    from stem_loop.session import build_session

    from ._common import CommandError

    if args.positions < 1:
        raise CommandError("--positions must be at least 1")
    try:
        session = build_session(
            data_dir=args.data, sample=args.sample, seed=args.seed, best_effort=False
        )
    except (FileNotFoundError, ValueError) as err:
        raise CommandError(str(err)) from None
    with session:
        width, height = session.scan_gen.field_of_view_nm
        rng = np.random.default_rng(args.seed)
        x_nm, y_nm = rng.uniform(0, width, args.positions), rng.uniform(0, height, args.positions)
        sample = session.microscope.sample
        md = {"purpose": "stem-loop demo", "sample": getattr(sample, "name", None)}
        start = time.perf_counter()
        (uid,) = session.RE(
            sparse_scan([session.det], session.scan_gen, x_nm, y_nm, mode="batch", md=md)
        )
        wall_s = time.perf_counter() - start
        recorded = session.tiled_client[uid]
        catalog = session.catalog
        serve = f"stem-loop serve --data {shlex.quote(str(catalog.data_dir))}"
        # This process's embedded server stops with it: point at where 'serve' listens.
        snippet = catalog.python_snippet(SERVE_URI if catalog.server is not None else None)
        result = {
            "run_uid": uid,
            "scan_id": recorded.metadata["start"].get("scan_id"),
            "sample": md["sample"],
            "positions": args.positions,
            "field_of_view_nm": [width, height],
            "wall_s": round(wall_s, 3),
            "frames_per_s": round(args.positions / wall_s, 1),
            "data_dir": str(catalog.data_dir),
            "streams": sorted(recorded),
            "browse": {"serve": serve, "python": snippet},
        }
        text = "\n".join(
            [
                f"Recorded {args.positions} positions of {md['sample']} in {wall_s:.2f} s "
                f"({result['frames_per_s']:.0f} frames/s) as run {uid} "
                f"(scan_id {result['scan_id']}).",
                f"Data: {catalog.data_dir}",
                f"Browse: {serve}",
                "Python" + (" (while 'stem-loop serve' runs):" if catalog.server else ":"),
                *(f"  {line}" for line in snippet.splitlines()),
                f"  runs[{uid[:8]!r}]['primary']['det-image'][0]",
            ]
        )
        emit(result, text, as_json=args.json)
    return 0
