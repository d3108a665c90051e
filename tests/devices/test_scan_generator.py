"""The scan generator moves within the field of view and refuses anything else before moving."""

from __future__ import annotations

import asyncio

import bluesky.plan_stubs as bps
import numpy as np
import pytest
from bluesky.utils import FailedStatus

from stem_loop.devices import ScanPath
from stem_loop.plans import sparse_scan

BAD_TARGETS = [
    (-0.5, "outside the field of view"),
    (96.01, "outside the field of view"),
    (1e6, "outside the field of view"),
    (float("nan"), "not finite"),
    (float("inf"), "not finite"),
    (float("-inf"), "not finite"),
]


def test_axes_move_and_read_in_nm(RE, devices):
    scan_gen, _ = devices
    RE(bps.mv(scan_gen.x, 12.5, scan_gen.y, 40.0))
    reading = asyncio.run_coroutine_threadsafe(scan_gen.read(), RE.loop).result()
    assert reading["scan_gen-x"]["value"] == 12.5
    assert reading["scan_gen-y"]["value"] == 40.0
    assert scan_gen._backend.position == (12.5, 40.0)
    assert scan_gen.field_of_view_nm == (96.0, 96.0)


@pytest.mark.parametrize("axis", ["x", "y"])
@pytest.mark.parametrize(("target", "message"), BAD_TARGETS)
def test_refused_move_leaves_the_beam_where_it_was(RE, devices, docs, axis, target, message):
    scan_gen, _ = devices
    RE(bps.mv(scan_gen.x, 10.0, scan_gen.y, 20.0))
    with pytest.raises((ValueError, FailedStatus)) as info:
        RE(bps.mv(getattr(scan_gen, axis), target))
    text = str(info.value) + str(info.value.__cause__ or "")
    assert message in text
    assert f"refused to move {axis}" in text
    assert scan_gen._backend.position == (10.0, 20.0)
    reading = asyncio.run_coroutine_threadsafe(scan_gen.read(), RE.loop).result()
    assert (reading["scan_gen-x"]["value"], reading["scan_gen-y"]["value"]) == (10.0, 20.0)


def test_refused_set_raises_before_any_status(devices):
    scan_gen, _ = devices
    with pytest.raises(ValueError, match="outside the field of view"):
        scan_gen.x.set(-1.0)


def test_prepare_refuses_a_bad_path_before_loading(devices):
    scan_gen, _ = devices
    with pytest.raises(ValueError, match=r"probe position 2 .*outside"):
        scan_gen.prepare(ScanPath([1.0, 2.0, 200.0], [1.0, 2.0, 3.0]))
    assert scan_gen._backend._path is None
    with pytest.raises(ValueError, match="equal length"):
        ScanPath([1.0, 2.0], [1.0])


@pytest.mark.parametrize("mode", ["batch", "step"])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -3.0, 97.0])
def test_refused_position_list_records_nothing(RE, devices, docs, data_dir, mode, bad):
    scan_gen, det = devices
    x = np.array([5.0, 10.0, bad, 20.0])
    y = np.array([5.0, 10.0, 15.0, 20.0])
    with pytest.raises(ValueError, match="probe position 2"):
        RE(sparse_scan([det], scan_gen, x, y, mode=mode))
    assert docs.docs == []
    assert not data_dir.exists() or not any(data_dir.iterdir())
    assert scan_gen._backend.position == (0.0, 0.0)
