"""Frames recorded by the devices read back through a real Tiled server, uint16 intact."""

from __future__ import annotations

import random

import bluesky.plans as bp
import numpy as np
import pytest
from bluesky import RunEngine

from sim_devices.backends import make_sim_devices
from stem_loop.plans import sparse_scan
from stem_loop.storage import subscribe_writer


@pytest.fixture
def tiled_RE(tiled_catalog, docs):  # noqa: N802 - the Bluesky name
    engine = RunEngine({}, call_returns_result=False)
    subscribe_writer(engine, tiled_catalog)
    engine.subscribe(docs)
    # The catalog is shared by the session: make this engine's scan ids unambiguous.
    engine.md["scan_id"] = random.randrange(10**6, 10**9)
    yield engine
    if engine.state != "idle":
        engine.halt()


@pytest.fixture
def tiled_devices(tiled_catalog, fresh_microscope):
    return make_sim_devices(fresh_microscope(), tiled_catalog.hdf5_dir)


def _resources(docs) -> dict[str, dict]:
    return {r["data_key"]: r for r in docs.of("stream_resource")}


def test_grid_scan_frames_read_back_from_tiled(
    tiled_RE, tiled_catalog, tiled_devices, docs, read_resource
):
    scan_gen, det = tiled_devices
    (uid,) = tiled_RE(bp.grid_scan([det], scan_gen.y, 20, 75, 6, scan_gen.x, 20, 75, 6))
    primary = tiled_catalog.client[uid]["primary"]

    frames = primary["det-image"].read()
    expected = read_resource(_resources(docs)["det-image"])
    assert frames.dtype == np.uint16
    assert frames.shape == (36, 128, 128)
    np.testing.assert_array_equal(np.asarray(frames), expected)
    y = np.asarray(primary["scan_gen-y"].read())
    np.testing.assert_allclose(y, np.repeat(np.linspace(20, 75, 6), 6))


def test_sparse_batch_frames_and_positions_read_back_from_tiled(
    tiled_RE, tiled_catalog, tiled_devices, docs, read_resource
):
    scan_gen, det = tiled_devices
    rng = np.random.default_rng(7)
    x, y = rng.uniform(0, 96, 200), rng.uniform(0, 96, 200)
    (uid,) = tiled_RE(sparse_scan([det], scan_gen, x, y, mode="batch"))
    client = tiled_catalog.client
    primary = client[uid]["primary"]

    frames = primary["det-image"].read()
    assert frames.dtype == np.uint16
    np.testing.assert_array_equal(np.asarray(frames), read_resource(_resources(docs)["det-image"]))
    np.testing.assert_array_equal(np.asarray(primary["scan_gen-x"].read()), x)
    np.testing.assert_array_equal(np.asarray(primary["scan_gen-y"].read()), y)

    (start,) = docs.of("start")
    assert client[-1].metadata["start"]["uid"] == uid
    assert client[uid[:8]].metadata["start"]["uid"] == uid
    assert client[start["scan_id"]].metadata["start"]["uid"] == uid


def test_two_batches_in_one_run_read_back_as_one_stream(
    tiled_RE, tiled_catalog, tiled_devices, docs, read_resource
):
    import bluesky.preprocessors as bpp

    from stem_loop.plans import fly_positions

    scan_gen, det = tiled_devices
    rng = np.random.default_rng(9)
    first, second = rng.uniform(0, 96, (2, 40)), rng.uniform(0, 96, (2, 25))

    @bpp.stage_decorator([det, scan_gen])
    @bpp.run_decorator()
    def plan():
        yield from fly_positions([det], scan_gen, *first)
        yield from fly_positions([det], scan_gen, *second, declare_stream=False)

    (uid,) = tiled_RE(plan())
    primary = tiled_catalog.client[uid]["primary"]
    np.testing.assert_array_equal(
        np.asarray(primary["scan_gen-x"].read()), np.concatenate([first[0], second[0]])
    )
    frames = np.asarray(primary["det-image"].read())
    np.testing.assert_array_equal(frames, read_resource(_resources(docs)["det-image"]))
    assert frames.shape == (65, 128, 128) and frames.dtype == np.uint16
