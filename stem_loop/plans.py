"""Plans of stem-loop: sparse scans over a list of probe positions.

``adaptive_4dstem`` lives beside these once written; it builds on :func:`sparse_scan`'s
batch pattern (prepare, kickoff, collect into ``primary``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import bluesky.plan_stubs as bps
import bluesky.preprocessors as bpp
import numpy as np
from bluesky.utils import MsgGenerator, short_uid
from ophyd_async.core import DetectorTrigger, TriggerInfo

from stem_loop.devices import ScanGenerator, ScanPath

#: Position lists longer than this are summarised in ``plan_args`` (the data are in the run).
MAX_POSITIONS_IN_METADATA = 1000
#: Seconds between collects while a batch is being recorded.
BATCH_FLUSH_PERIOD_S = 0.25
#: Longest wait for the next chunk of frames in batch mode (live physics can be slow).
BATCH_READOUT_TIMEOUT_S = 300.0


def fly_positions(
    detectors: Sequence[Any],
    scan_gen: ScanGenerator,
    x_nm: Sequence[float] | np.ndarray,
    y_nm: Sequence[float] | np.ndarray,
    *,
    stream_name: str = "primary",
    declare_stream: bool = True,
) -> MsgGenerator[None]:
    """Fly through a position list inside an open run (plan stub).

    Uploads the positions to the scan generator, arms the detectors for one frame per
    position triggered by it, starts them, and collects frames (``<det>-image``) and positions
    (``scan_gen-x``, ``scan_gen-y``) into ``stream_name`` while the batch runs. Call it again
    in the same run (``declare_stream=False``) to append further batches to the stream, e.g.
    from an adaptive plan. The devices must be staged by the caller.

    Parameters
    ----------
    detectors : list of PixelatedDetector
        Detectors triggered by the scan generator.
    scan_gen : ScanGenerator
        The scan generator.
    x_nm, y_nm : array_like
        Probe positions in nm; validated before anything moves (``ValueError``).
    stream_name : str
        Stream the batch is collected into.
    declare_stream : bool
        Declare the stream first (only for the first batch of a run).

    Yields
    ------
    msg : Msg
        Messages for the RunEngine.
    """
    x, y = scan_gen.check_positions(x_nm, y_nm)
    n = len(x)
    yield from bps.prepare(scan_gen, ScanPath(x, y), wait=True)
    dwell_s = yield from bps.rd(scan_gen.dwell_s)
    info = TriggerInfo(
        trigger=DetectorTrigger.EXTERNAL_EDGE,
        number_of_events=n,
        livetime=dwell_s,
        exposure_timeout=dwell_s + BATCH_READOUT_TIMEOUT_S,
    )
    group = short_uid("fly_positions_prepare")
    for det in detectors:
        yield from bps.prepare(det, info, group=group)
    yield from bps.wait(group=group)
    flyers = [*detectors, scan_gen]
    if declare_stream:
        yield from bps.declare_stream(*flyers, name=stream_name, collect=True)
    # Detectors first: the scan generator triggers them as soon as it starts.
    yield from bps.kickoff_all(*detectors, wait=True)
    yield from bps.kickoff(scan_gen, wait=True)
    yield from bps.collect_while_completing(
        flyers, flyers, flush_period=BATCH_FLUSH_PERIOD_S, stream_name=stream_name
    )


def sparse_scan(
    detectors: Sequence[Any],
    scan_gen: ScanGenerator,
    x_nm: Sequence[float] | np.ndarray,
    y_nm: Sequence[float] | np.ndarray,
    *,
    mode: Literal["batch", "step"] = "batch",
    md: Mapping[str, Any] | None = None,
) -> MsgGenerator[str]:
    """Record frames at an arbitrary list of probe positions, in one run.

    Every position is validated before the run opens: a position outside the field of
    view, NaN or inf raises ``ValueError`` and nothing is staged, moved or recorded.

    Parameters
    ----------
    detectors : list of devices
        Usually ``[det]``. In batch mode they must be flyable detectors triggered by the
        scan generator (:class:`~stem_loop.devices.PixelatedDetector`); in step mode any
        triggerable readable works.
    scan_gen : ScanGenerator
        The scan generator whose axes place the probe.
    x_nm, y_nm : array_like
        Probe positions in nm, 1-D and of equal length, visited in this order.
    mode : {"batch", "step"}
        ``"batch"`` uploads the list to the scan generator and flies through it at detector
        speed (prepare, kickoff, complete, collect); the positions are collected as
        ``scan_gen-x``/``scan_gen-y`` StreamDatum beside the frames. ``"step"`` moves,
        triggers and reads once per position (``scan_gen-x``/``scan_gen-y`` are event data).
    md : dict, optional
        Extra start-document metadata.

    Yields
    ------
    msg : Msg
        Messages for the RunEngine; the plan returns the run uid.

    See Also
    --------
    fly_positions : the batch part as a plan stub, for plans that own their run.
    bluesky.plans.list_scan : the step-scan equivalent for any movables.
    """
    if mode not in ("batch", "step"):
        raise ValueError(f"mode must be 'batch' or 'step', got {mode!r}")
    x, y = scan_gen.check_positions(x_nm, y_nm)
    n = len(x)
    if n == 0:
        raise ValueError("sparse_scan needs at least one position")
    detectors = list(detectors)
    axes = [scan_gen.x, scan_gen.y]
    listed = n <= MAX_POSITIONS_IN_METADATA
    _md = {
        "plan_name": "sparse_scan",
        "plan_args": {
            "detectors": [repr(d) for d in detectors],
            "scan_gen": repr(scan_gen),
            "x_nm": x.tolist() if listed else f"<{n} positions, see the primary stream>",
            "y_nm": y.tolist() if listed else f"<{n} positions, see the primary stream>",
            "mode": mode,
        },
        "detectors": [d.name for d in detectors],
        "motors": [a.name for a in axes],
        "num_points": n,
        "num_intervals": n - 1,
        "scan_mode": mode,
        "hints": {"dimensions": [([a.name], "primary") for a in axes]},
    }
    _md.update(md or {})

    @bpp.stage_decorator([*detectors, scan_gen])
    @bpp.run_decorator(md=_md)
    def _batch() -> MsgGenerator[None]:
        yield from fly_positions(detectors, scan_gen, x, y, stream_name="primary")

    @bpp.stage_decorator([*detectors, scan_gen])
    @bpp.run_decorator(md=_md)
    def _step() -> MsgGenerator[None]:
        for xi, yi in zip(x, y, strict=True):
            yield from bps.mv(scan_gen.x, xi, scan_gen.y, yi)
            yield from bps.trigger_and_read([*detectors, *axes])

    return (yield from (_batch() if mode == "batch" else _step()))
