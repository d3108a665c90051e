"""Acquisition throughput: probe positions per second into HDF5 (and Tiled).

Two frame sources are measured, and labelled as such:

``live``
    every frame is simulated by the microscope's forward model plus counting noise while
    the scan runs (physics + data path);
``replay``
    the frame source hands out frames simulated beforehand (data path alone: devices,
    RunEngine, documents, HDF5 writes, and Tiled registration when a writer is given).

Each in ``step`` mode (``sparse_scan(mode="step")``: move, trigger, read per position) and
``batch`` mode (``sparse_scan(mode="batch")``: one fly over the position list).

Run ``python -m stem_loop.bench.acquisition --help``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

_MODES = ("step", "batch")
_SOURCES = ("live", "replay")


def _random_positions(fov: tuple[float, float], n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.uniform(0, fov[0], n), rng.uniform(0, fov[1], n)


def _as_callback(tiled: Any) -> Callable[[str, dict], Any] | None:
    """A RunEngine callback from a Tiled client (wrapped in TiledWriter) or a callable."""
    if tiled is None or callable(tiled):
        return tiled
    from bluesky_tiled_plugins import TiledWriter

    return TiledWriter(tiled)


def run_acquisition_bench(
    n_positions: int = 5000,
    tiled: Any = None,
    *,
    n_step: int = 500,
    n_live: int = 300,
    modes: Sequence[str] = _MODES,
    sources: Sequence[str] = _SOURCES,
    data_dir: str | Path | None = None,
    microscope: Any = None,
    seed: int = 0,
    verbose: bool = True,
) -> dict[str, Any]:
    """Measure recorded probe positions per second for each mode and frame source.

    Parameters
    ----------
    n_positions : int
        Positions of a replay batch run (the headline figure; goal >= 5,000 positions/s).
    tiled : tiled client, callable or None
        If given, every document also goes to Tiled: a client is wrapped in
        ``bluesky_tiled_plugins.TiledWriter``; a callable is subscribed as is. Its
        ``readable_storage`` must include ``data_dir``.
    n_step : int
        Positions of a replay step run (step mode is per-point bound; fewer suffice).
    n_live : int
        Positions of the live runs (the physics costs milliseconds per frame).
    modes, sources : sequence of str
        Subsets of ``("step", "batch")`` and ``("live", "replay")`` to run.
    data_dir : str or Path, optional
        Where the HDF5 files go (default: a temporary directory, removed afterwards).
    microscope : sim_devices.Microscope, optional
        Default: the built-in sample with the ``"fast"`` forward model.
    seed : int
        Seed of the microscope noise and of the random positions.
    verbose : bool
        Print the table.

    Returns
    -------
    dict
        ``{"results": [{"mode", "source", "positions", "seconds", "positions_per_s",
        "mb_per_s"}, ...], "frame_shape", "dtype", "tiled", "note"}``.
    """
    from bluesky import RunEngine

    from sim_devices import Microscope, builtin_sample
    from sim_devices.backends import make_sim_devices
    from stem_loop.plans import sparse_scan

    if microscope is None:
        microscope = Microscope(builtin_sample(), forward="fast", seed=seed)
    fov = microscope.field_of_view_nm
    tmp = None
    if data_dir is None:
        tmp = tempfile.TemporaryDirectory(prefix="stem-loop-bench-")
        data_dir = tmp.name
    callback = _as_callback(tiled)
    replay = None
    if "replay" in sources:
        replay = microscope.acquire(*_random_positions(fov, 64, seed + 1))
    warmup_s = 0.0
    if "live" in sources:
        # the forward model computes the disk contents of each strain grid point once
        t0 = time.perf_counter()
        microscope.acquire(*_random_positions(fov, n_live, seed))
        warmup_s = time.perf_counter() - t0
    frame_bytes = int(np.prod(microscope.frame_shape)) * np.dtype(microscope.dtype).itemsize
    RE = RunEngine({}, call_returns_result=False)
    if callback is not None:
        RE.subscribe(callback)
    results = []
    try:
        for source in sources:
            scan_gen, det = make_sim_devices(
                microscope, data_dir, replay_frames=replay if source == "replay" else None
            )
            for mode in modes:
                if source == "live":
                    n = n_live
                else:
                    n = n_positions if mode == "batch" else n_step
                x, y = _random_positions(fov, n, seed)
                # warm-up: first-use costs (imports, descriptors) are not throughput
                RE(sparse_scan([det], scan_gen, x[:2], y[:2], mode=mode))
                t0 = time.perf_counter()
                RE(sparse_scan([det], scan_gen, x, y, mode=mode))
                seconds = time.perf_counter() - t0
                results.append(
                    {
                        "mode": mode,
                        "source": source,
                        "positions": n,
                        "seconds": round(seconds, 4),
                        "positions_per_s": round(n / seconds, 1),
                        "mb_per_s": round(n * frame_bytes / seconds / 1e6, 1),
                    }
                )
    finally:
        if tmp is not None:
            tmp.cleanup()
    report = {
        "results": results,
        "frame_shape": list(microscope.frame_shape),
        "dtype": np.dtype(microscope.dtype).name,
        "tiled": callback is not None,
        "forward_warmup_s": round(warmup_s, 2),
        "note": "live = frames simulated during the scan (after a first pass over the same "
        "positions that computes the forward model's strain contents); replay = pre-simulated "
        "frames "
        "(data path alone: devices, RunEngine, documents, HDF5"
        + (", Tiled)" if callback is not None else ")"),
    }
    if verbose:
        print(format_table(report))
    return report


def format_table(report: dict[str, Any]) -> str:
    """Render :func:`run_acquisition_bench` results as a text table."""
    lines = [
        f"acquisition into HDF5{' + Tiled' if report['tiled'] else ''}, frames "
        f"{report['frame_shape'][0]}x{report['frame_shape'][1]} {report['dtype']}",
        f"{'mode':<6} {'frames':<7} {'positions':>9} {'seconds':>9} {'positions/s':>12} "
        f"{'MB/s':>8}",
    ]
    for r in report["results"]:
        lines.append(
            f"{r['mode']:<6} {r['source']:<7} {r['positions']:>9} {r['seconds']:>9.3f} "
            f"{r['positions_per_s']:>12.1f} {r['mb_per_s']:>8.1f}"
        )
    lines.append(report["note"])
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Command-line entry: ``python -m stem_loop.bench.acquisition``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--positions", type=int, default=5000, help="replay batch positions")
    parser.add_argument("--step-positions", type=int, default=500, help="replay step positions")
    parser.add_argument("--live-positions", type=int, default=300, help="live run positions")
    parser.add_argument("--mode", choices=_MODES, action="append", help="default: both")
    parser.add_argument("--source", choices=_SOURCES, action="append", help="default: both")
    parser.add_argument("--data-dir", help="HDF5 directory (default: a temporary one)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--no-tiled",
        dest="tiled",
        action="store_false",
        help="HDF5 only: do not also write every run into an embedded Tiled server "
        "(by default a temporary one is started)",
    )
    parser.add_argument("--json", action="store_true", help="print the result as JSON last")
    args = parser.parse_args(argv)
    options = dict(
        n_step=args.step_positions,
        n_live=args.live_positions,
        modes=args.mode or _MODES,
        sources=args.source or _SOURCES,
        seed=args.seed,
    )
    if args.tiled:
        from stem_loop.storage import make_writer, open_catalog

        with (
            tempfile.TemporaryDirectory(prefix="stem-loop-bench-tiled-") as tmp,
            open_catalog(data_dir=tmp, embedded=True) as catalog,
        ):
            report = run_acquisition_bench(
                args.positions, make_writer(catalog), data_dir=catalog.hdf5_dir, **options
            )
    else:
        report = run_acquisition_bench(args.positions, data_dir=args.data_dir, **options)
    if args.json:
        print(json.dumps(report))
    return report


if __name__ == "__main__":
    main()
