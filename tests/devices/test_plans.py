"""Standard plans and sparse_scan record frames with their probe positions, row for row."""

from __future__ import annotations

import bluesky.plans as bp
import bluesky.preprocessors as bpp
import numpy as np
import pytest

from stem_loop.plans import fly_positions, sparse_scan


def _event_column(docs, key: str) -> np.ndarray:
    return np.array([e["data"][key] for e in docs.of("event")])


def test_grid_scan_records_36_frames_at_the_grid_positions(RE, devices, docs, read_resource):
    scan_gen, det = devices
    RE(bp.grid_scan([det], scan_gen.y, 20, 75, 6, scan_gen.x, 20, 75, 6))
    assert len(docs.of("event")) == 36
    (resource,) = docs.of("stream_resource")
    assert read_resource(resource).shape == (36, 128, 128)
    grid = np.linspace(20, 75, 6)
    np.testing.assert_allclose(_event_column(docs, "scan_gen-y"), np.repeat(grid, 6))
    xs = _event_column(docs, "scan_gen-x")
    assert sorted(set(xs.round(6))) == list(grid.round(6))
    (stop,) = docs.of("stop")
    assert stop["exit_status"] == "success" and stop["num_events"]["primary"] == 36


def test_list_scan_and_count(RE, devices, docs, read_resource):
    scan_gen, det = devices
    RE(bp.list_scan([det], scan_gen.x, [5.0, 6.0], scan_gen.y, [7.0, 8.0]))
    np.testing.assert_array_equal(_event_column(docs, "scan_gen-x"), [5.0, 6.0])
    np.testing.assert_array_equal(_event_column(docs, "scan_gen-y"), [7.0, 8.0])
    docs.clear()
    RE(bp.count([det, scan_gen], num=2))
    assert len(docs.of("event")) == 2
    assert _event_column(docs, "scan_gen-x").tolist() == [6.0, 6.0]
    (resource,) = docs.of("stream_resource")
    assert read_resource(resource).shape == (2, 128, 128)


def test_sparse_scan_batch_records_every_position_beside_its_frame(
    RE, devices, docs, read_resource, fresh_microscope
):
    scan_gen, det = devices
    rng = np.random.default_rng(3)
    n = 300  # > one 128-frame chunk, not a multiple of it
    x, y = rng.uniform(0, 96, n), rng.uniform(0, 96, n)
    RE(sparse_scan([det], scan_gen, x, y, mode="batch"))

    assert docs.of("event") == []  # everything is by reference in batch mode
    (descriptor,) = docs.of("descriptor")
    assert descriptor["name"] == "primary"
    assert set(descriptor["data_keys"]) == {"det-image", "scan_gen-x", "scan_gen-y"}
    assert all(k["external"] == "STREAM:" for k in descriptor["data_keys"].values())
    resources = {r["data_key"]: r for r in docs.of("stream_resource")}
    assert set(resources) == {"det-image", "scan_gen-x", "scan_gen-y"}

    for key, resource in resources.items():
        ranges = [
            (d["indices"]["start"], d["indices"]["stop"])
            for d in docs.of("stream_datum")
            if d["stream_resource"] == resource["uid"]
        ]
        assert ranges[0][0] == 0 and ranges[-1][1] == n, key
        assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:], strict=False)), key
        assert len(ranges) < n  # many frames per StreamDatum

    frames = read_resource(resources["det-image"])
    assert frames.shape == (n, 128, 128) and frames.dtype == np.uint16
    np.testing.assert_array_equal(read_resource(resources["scan_gen-x"]), x)
    np.testing.assert_array_equal(read_resource(resources["scan_gen-y"]), y)
    # Row i is the frame at (x[i], y[i]): the same seed gives the same counts when the
    # microscope is asked for the same read-out chunks (the noise is drawn per call).
    reference, chunk = fresh_microscope(), det.recorder.chunk_frames
    expected = [reference.acquire(x[i : i + chunk], y[i : i + chunk]) for i in range(0, n, chunk)]
    np.testing.assert_array_equal(frames, np.concatenate(expected))

    (stop,) = docs.of("stop")
    assert stop["exit_status"] == "success" and stop["num_events"]["primary"] == n
    assert scan_gen._backend.position == (x[-1], y[-1])


def test_sparse_scan_step_records_positions_as_events(RE, devices, docs, read_resource):
    scan_gen, det = devices
    x, y = np.array([1.0, 95.0, 48.0]), np.array([2.0, 3.0, 94.0])
    RE(sparse_scan([det], scan_gen, x, y, mode="step"))
    np.testing.assert_array_equal(_event_column(docs, "scan_gen-x"), x)
    np.testing.assert_array_equal(_event_column(docs, "scan_gen-y"), y)
    (resource,) = docs.of("stream_resource")
    assert read_resource(resource).shape == (3, 128, 128)


@pytest.mark.parametrize("mode", ["batch", "step"])
def test_sparse_scan_metadata(RE, devices, docs, mode):
    scan_gen, det = devices
    RE(sparse_scan([det], scan_gen, [10.0, 20.0], [30.0, 40.0], mode=mode, md={"sample": "si"}))
    (start,) = docs.of("start")
    assert start["plan_name"] == "sparse_scan"
    assert start["plan_args"]["x_nm"] == [10.0, 20.0]
    assert start["plan_args"]["mode"] == mode
    assert start["num_points"] == 2
    assert start["motors"] == ["scan_gen-x", "scan_gen-y"]
    assert start["hints"]["dimensions"] == [
        (["scan_gen-x"], "primary"),
        (["scan_gen-y"], "primary"),
    ]
    assert start["sample"] == "si"


def test_sparse_scan_rejects_unknown_mode(RE, devices, docs):
    scan_gen, det = devices
    with pytest.raises(ValueError, match="mode"):
        RE(sparse_scan([det], scan_gen, [1.0], [1.0], mode="raster"))
    assert docs.docs == []


def two_batches(det, scan_gen, first, second):
    @bpp.stage_decorator([det, scan_gen])
    @bpp.run_decorator(md={"plan_name": "two_batches"})
    def inner():
        yield from fly_positions([det], scan_gen, *first)
        yield from fly_positions([det], scan_gen, *second, declare_stream=False)

    return (yield from inner())


def test_batches_append_to_one_stream_within_a_run(RE, devices, docs, read_resource):
    scan_gen, det = devices
    rng = np.random.default_rng(5)
    first = rng.uniform(0, 96, (2, 150))
    second = rng.uniform(0, 96, (2, 70))
    RE(two_batches(det, scan_gen, first, second))

    resources = {r["data_key"]: r for r in docs.of("stream_resource")}
    assert len(docs.of("stream_resource")) == 3  # one file per device per stage
    for resource in resources.values():
        ranges = [
            (d["indices"]["start"], d["indices"]["stop"])
            for d in docs.of("stream_datum")
            if d["stream_resource"] == resource["uid"]
        ]
        assert ranges[0][0] == 0 and ranges[-1][1] == 220
        assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:], strict=False))
    np.testing.assert_array_equal(
        read_resource(resources["scan_gen-x"]), np.concatenate([first[0], second[0]])
    )
    assert read_resource(resources["det-image"]).shape == (220, 128, 128)
    assert docs.of("stop")[0]["num_events"]["primary"] == 220
