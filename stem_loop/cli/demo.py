"""``stem-loop demo``: a sparse scan of the built-in sample, read live, recorded into Tiled.

Until the autonomous loop exists this records frames at random (seeded) positions through the
Ophyd devices in batch mode, with the inference agent reading each frame as the scan runs (the
shipped networks; the run gains a ``descriptors`` stream), scores the descriptors read back
from Tiled against the sample's own, and says where to browse them.
"""

from __future__ import annotations

import argparse
import shlex
import time
from typing import Any

from ._common import add_data_option, add_json_option, emit
from .serve import DEFAULT_HOST, DEFAULT_PORT

SERVE_URI = f"http://{DEFAULT_HOST}:{DEFAULT_PORT}/api/v1"


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``demo`` subcommand."""
    parser = subparsers.add_parser(
        "demo",
        help="record a sparse scan of the built-in sample, read live, into Tiled",
        description="Record CBED frames at random positions of a simulated sample through "
        "the Ophyd devices (batch mode) into the Tiled catalog while the inference agent "
        "reads their descriptors into the run's 'descriptors' stream, then print a summary "
        "(the descriptors' error against the sample's own) and where to browse the run.",
    )
    parser.add_argument(
        "--sample",
        metavar="NAME|PATH",
        help="built-in sample name or sample .npz (default: $STEM_LOOP_SAMPLE or built-in)",
    )
    parser.add_argument("--positions", type=int, default=500, help="probe positions (default: 500)")
    parser.add_argument("--seed", type=int, default=0, help="positions and noise seed")
    parser.add_argument(
        "--no-inference",
        action="store_true",
        help="record the frames only, without the live inference agent",
    )
    add_data_option(parser)
    add_json_option(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Record the scan and print the summary."""
    import numpy as np

    from stem_loop.agents.inference import InferenceAgent, microscope_conditions
    from stem_loop.plans import sparse_scan
    from stem_loop.session import build_session

    from ._common import CommandError

    if args.positions < 1:
        raise CommandError("--positions must be at least 1")
    agent = None if args.no_inference else InferenceAgent()
    try:
        session = build_session(
            data_dir=args.data,
            sample=args.sample,
            seed=args.seed,
            best_effort=False,
            wrap_writer=None if agent is None else agent.forward_to,
        )
    except (FileNotFoundError, ValueError) as err:
        raise CommandError(str(err)) from None
    if agent is not None:
        agent.conditions = microscope_conditions(session.microscope)
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
        if agent is not None:
            agent.close()
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
            "descriptors": (
                None if agent is None else descriptor_summary(recorded, session.microscope)
            ),
            "browse": {"serve": serve, "python": snippet},
        }
        text = "\n".join(
            [
                f"Recorded {args.positions} positions of {md['sample']} in {wall_s:.2f} s "
                f"({result['frames_per_s']:.0f} frames/s) as run {uid} "
                f"(scan_id {result['scan_id']}).",
                *_descriptor_lines(result["descriptors"]),
                f"Data: {catalog.data_dir}",
                f"Browse: {serve}",
                "Python" + (" (while 'stem-loop serve' runs):" if catalog.server else ":"),
                *(f"  {line}" for line in snippet.splitlines()),
                f"  runs[{uid[:8]!r}]['primary']['det-image'][0]",
            ]
        )
        emit(result, text, as_json=args.json)
    return 0


def descriptor_summary(run: Any, microscope: Any) -> dict[str, Any]:
    """What the inference agent wrote into ``run``'s ``descriptors`` stream, read back from
    Tiled and scored against the simulated sample's own descriptors at the probe positions.

    Returns
    -------
    dict
        ``frames``, ``ood``, ``thickness_refined``, ``mirror_views``, ``precision`` and, over
        the frames not flagged, ``rms_error`` and ``coverage_1sigma`` (the fraction within the
        published 1 sigma) per descriptor.
    """
    import numpy as np

    from sim_devices.sample import DESCRIPTOR_NAMES

    from .predict import errors_against_truth

    stream = run["descriptors"]
    table = stream.read()
    values = {name: np.asarray(table[name], dtype=float) for name in DESCRIPTOR_NAMES}
    std = {name: np.asarray(table[f"{name}_std"], dtype=float) for name in DESCRIPTOR_NAMES}
    ood = np.asarray(table["ood"], dtype=bool)
    truth = microscope.descriptors_at(np.asarray(table["x_nm"]), np.asarray(table["y_nm"]))
    rms, coverage = errors_against_truth(values, std, truth, ood)
    configuration = stream.metadata["configuration"]["inference"]["data"]
    return {
        "frames": len(ood),
        "ood": int(ood.sum()),
        "thickness_refined": int(np.asarray(table["thickness_refined"], dtype=bool).sum()),
        "mirror_views": int(configuration["inference-mirror_views"]),
        "precision": configuration["inference-precision"],
        "rms_error": rms,
        "coverage_1sigma": coverage,
    }


def _descriptor_lines(summary: dict[str, Any] | None) -> list[str]:
    if summary is None:
        return ["Descriptors: not read (--no-inference)."]
    rms = summary["rms_error"]

    def strain(name: str) -> str:
        return f"{name} {100 * rms[name]:.3f} %"

    return [
        f"Descriptors (stream 'descriptors', read live by the shipped networks, "
        f"{summary['mirror_views']} view(s) a frame in {summary['precision']}): "
        f"{summary['frames']} frames, {summary['ood']} out of distribution, "
        f"{summary['thickness_refined']} thicknesses refined.",
        "  rms error against the sample (frames from the fast model): "
        + ", ".join(strain(n) for n in ("exx", "eyy", "exy"))
        + f", thickness {rms['thickness_nm']:.2f} nm, tilt "
        f"{rms['tilt_x_mrad']:.3f} / {rms['tilt_y_mrad']:.3f} mrad",
    ]
