"""An aborted scan keeps every frame already written, and its documents stay consistent."""

from __future__ import annotations

import bluesky.plan_stubs as bps
import bluesky.preprocessors as bpp
import h5py
import numpy as np
import pytest
from bluesky import Msg
from bluesky.utils import RunEngineInterrupted

from sim_devices.backends import make_sim_devices
from stem_loop.plans import sparse_scan


def _pause_after(plan, command: str, count: int):
    """Run ``plan`` and pause the RunEngine (as Ctrl-C would) after its count-th ``command``."""
    seen = 0

    def pause():
        yield Msg("pause", defer=False)

    def mutate(msg):
        nonlocal seen
        if msg.command == command:
            seen += 1
            if seen == count:
                return None, pause()
        return None, None

    return bpp.plan_mutator(plan, mutate)


def _check_consistent(docs, read_resource):
    """Every StreamDatum points at rows that are in the (closed, readable) file."""
    stops = {}
    for datum in docs.of("stream_datum"):
        stops[datum["stream_resource"]] = datum["indices"]["stop"]
    announced = {}
    for resource in docs.of("stream_resource"):
        rows = read_resource(resource)
        announced[resource["data_key"]] = (stops.get(resource["uid"], 0), len(rows), rows)
        assert stops.get(resource["uid"], 0) <= len(rows)
    return announced


def test_abort_mid_step_scan_keeps_frames(RE, devices, docs, read_resource):
    scan_gen, det = devices
    x = np.linspace(5, 90, 40)
    with pytest.raises(RunEngineInterrupted):
        RE(_pause_after(sparse_scan([det], scan_gen, x, x, mode="step"), "save", 5))
    RE.abort("test abort")

    (stop,) = docs.of("stop")
    assert stop["exit_status"] == "abort"
    n_events = len(docs.of("event"))
    assert 5 <= n_events < 40
    announced = _check_consistent(docs, read_resource)
    datum_stop, rows, frames = announced["det-image"]
    assert datum_stop == n_events and rows >= n_events
    assert frames.dtype == np.uint16 and frames[:n_events].any()


def test_abort_mid_batch_keeps_frames_and_positions(
    RE, docs, sim_microscope, data_dir, read_resource
):
    replay = np.ones((4, 128, 128), np.uint16)
    scan_gen, det = make_sim_devices(
        sim_microscope, data_dir, replay_frames=replay, chunk_frames=16
    )
    RE(bps.mv(det.dwell_s, 0.002))  # 1000 positions take ~2 s
    x = np.linspace(5, 90, 1000)
    with pytest.raises(RunEngineInterrupted):
        RE(_pause_after(sparse_scan([det], scan_gen, x, x[::-1], mode="batch"), "collect", 3))
    RE.abort("test abort")

    (stop,) = docs.of("stop")
    assert stop["exit_status"] == "abort"
    announced = _check_consistent(docs, read_resource)
    frames_stop, frame_rows, _ = announced["det-image"]
    x_stop, x_rows, x_written = announced["scan_gen-x"]
    assert 0 < frames_stop < 1000 and frame_rows < 1000
    assert x_stop == frames_stop  # the stream stays aligned row for row
    np.testing.assert_array_equal(x_written, x[:x_rows])
    for path in data_dir.glob("*.h5"):
        with h5py.File(path, "r") as f:  # closed cleanly, readable
            assert f["entry"]
