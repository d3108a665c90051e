"""The pixelated detector writes uint16 frames to HDF5 and streams them by reference."""

from __future__ import annotations

import bluesky.plan_stubs as bps
import bluesky.plans as bp
import h5py
import numpy as np

from stem_loop.devices import FILE_CHUNK_FRAMES, FRAMES_DATASET


def test_count_streams_frames_by_reference(RE, devices, docs, data_dir, read_resource):
    scan_gen, det = devices
    RE(bp.count([det], num=3))

    (descriptor,) = docs.of("descriptor")
    key = descriptor["data_keys"]["det-image"]
    assert key["external"] == "STREAM:"
    assert key["shape"] == [128, 128]
    assert key["dtype_numpy"] == np.dtype(np.uint16).str
    for event in docs.of("event"):
        assert "det-image" not in event["data"]  # frames are never inlined

    (resource,) = docs.of("stream_resource")
    assert resource["data_key"] == "det-image"
    assert resource["mimetype"] == "application/x-hdf5"
    assert resource["uri"].startswith(f"file://localhost{data_dir.resolve()}/")
    assert resource["parameters"]["dataset"] == FRAMES_DATASET
    assert tuple(resource["parameters"]["chunk_shape"]) == (FILE_CHUNK_FRAMES, 128, 128)

    datums = docs.of("stream_datum")
    assert [(d["indices"]["start"], d["indices"]["stop"]) for d in datums] == [
        (0, 1),
        (1, 2),
        (2, 3),
    ]
    assert all(d["stream_resource"] == resource["uid"] for d in datums)

    frames = read_resource(resource)
    assert frames.shape == (3, 128, 128) and frames.dtype == np.uint16
    with h5py.File(data_dir.resolve() / resource["uri"].rsplit("/", 1)[-1]) as f:
        assert f[FRAMES_DATASET].chunks == (FILE_CHUNK_FRAMES, 128, 128)


def test_uint16_frames_equal_the_microscope_with_the_same_seed(
    RE, devices, docs, fresh_microscope, read_resource
):
    scan_gen, det = devices
    xs, ys = [10.0, 50.0, 90.0], [80.0, 48.0, 3.0]
    RE(bp.list_scan([det], scan_gen.x, xs, scan_gen.y, ys))
    (resource,) = docs.of("stream_resource")
    recorded = read_resource(resource)

    reference = fresh_microscope()  # same seed, same physics
    expected = np.concatenate([reference.acquire([x], [y]) for x, y in zip(xs, ys, strict=True)])
    assert recorded.dtype == np.uint16
    np.testing.assert_array_equal(recorded, expected)
    assert recorded.max() > 0


def test_configuration_reports_dwell_dose_and_frame_shape(RE, devices, docs, sim_microscope):
    scan_gen, det = devices
    RE(bps.mv(det.dwell_s, 0.001))
    RE(bp.count([det]))
    (descriptor,) = docs.of("descriptor")
    config = descriptor["configuration"]["det"]["data"]
    assert config["det-dwell_s"] == 0.001
    assert config["det-dose"] == sim_microscope.detector.dose
    assert (config["det-frame_rows"], config["det-frame_cols"]) == det.frame_shape == (128, 128)


def test_one_file_per_stage(RE, devices, docs, data_dir):
    scan_gen, det = devices
    RE(bp.count([det], num=2))
    RE(bp.count([det], num=2))
    uris = {d["uri"] for d in docs.of("stream_resource")}
    assert len(uris) == 2
    assert len(list(data_dir.glob("det-image-*.h5"))) == 2
