"""Runs written by a real RunEngine through the embedded server, read back by every lookup."""

from __future__ import annotations

import numpy as np
import pytest


def test_scan_is_read_back(RE, tiled_catalog):
    import bluesky.plans as bp
    from ophyd.sim import det, motor

    (uid,) = RE(bp.scan([det], motor, -1, 1, 5))

    run = tiled_catalog.client[uid]
    assert run.metadata["start"]["plan_name"] == "scan"
    assert run.metadata["stop"]["exit_status"] == "success"
    primary = run["primary"]
    np.testing.assert_allclose(primary["motor"].read(), np.linspace(-1, 1, 5))
    np.testing.assert_allclose(primary["det"].read(), np.exp(-(np.linspace(-1, 1, 5) ** 2) / 2))


def test_runs_container_spec(tiled_catalog):
    from bluesky_tiled_plugins import CatalogOfBlueskyRuns

    runs = tiled_catalog.client
    assert isinstance(runs, CatalogOfBlueskyRuns)
    assert runs.is_sql  # spec CatalogOfBlueskyRuns 3.0: partial uids are SQL LIKE queries
    assert [(s.name, s.version) for s in runs.specs] == [("CatalogOfBlueskyRuns", "3.0")]


def test_lookup_by_partial_uid_latest_and_scan_id(RE, tiled_catalog):
    import bluesky.plans as bp
    from bluesky_tiled_plugins.queries import ScanIDRange
    from ophyd.sim import det
    from tiled.queries import Eq

    RE.md["scan_id"] = 9000  # Unique in the shared session catalog.
    uids = [RE(bp.count([det], num=1))[0] for _ in range(3)]
    runs = tiled_catalog.client

    def uid_of(run):
        return run.metadata["start"]["uid"]

    assert uid_of(runs[uids[1]]) == uids[1]
    assert uid_of(runs[uids[1][:8]]) == uids[1]
    assert uid_of(runs.uid[uids[1][:6]]) == uids[1]
    assert uid_of(runs[-1]) == uids[2]
    # Tiled slices from the end only backwards: runs[-3:] is refused by tiled.
    assert [uid_of(run) for run in runs[-1:-4:-1]] == uids[::-1]
    assert uid_of(runs[9002]) == uids[1]
    assert uid_of(runs.scan_id[9003]) == uids[2]
    assert list(runs.search(ScanIDRange(9001, 9003))) == uids[:2]  # End excluded.
    assert list(runs.search(Eq("plan_name", "count")).search(Eq("scan_id", 9003))) == [uids[2]]
    with pytest.raises(KeyError):
        runs[123456789]
    with pytest.raises(ValueError, match="too short"):
        runs[uids[0][:3]]


def test_external_hdf5_frames_are_served(RE, tiled_catalog):
    import bluesky.plans as bp
    from ophyd_async.core import StaticPathProvider, UUIDFilenameProvider, init_devices
    from ophyd_async.sim import SimBlobDetector

    provider = StaticPathProvider(UUIDFilenameProvider(), tiled_catalog.hdf5_dir)
    with init_devices():
        blob = SimBlobDetector(provider)

    (uid,) = RE(bp.count([blob], num=3))

    run = tiled_catalog.client[uid]
    frames = run["primary"]["blob"].read()  # Served by Tiled from the detector's HDF5 file.
    assert frames.shape[0] == 3 and frames.shape[-2:] == (240, 320)
    assert frames.any()
    assert list(tiled_catalog.hdf5_dir.glob("*.h5"))
