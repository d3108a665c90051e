"""The embedded catalog persists across restarts and is shared by processes on one directory."""

from __future__ import annotations

import numpy as np
import pytest

from stem_loop.storage import (
    API_KEY_ENV,
    CatalogBusyError,
    open_catalog,
    subscribe_writer,
)

pytestmark = pytest.mark.usefixtures("embedded_only")


def test_runs_survive_a_restart_on_the_same_directory(tmp_path):
    import bluesky.plans as bp
    from bluesky import RunEngine
    from ophyd.sim import det, motor

    with open_catalog(data_dir=tmp_path) as first:
        RE = RunEngine({})
        subscribe_writer(RE, first)
        (uid,) = RE(bp.scan([det], motor, 0, 1, 3))
        key = first.api_key

    with open_catalog(data_dir=tmp_path) as second:
        assert second.api_key == key  # Read back from $STEM_LOOP_DATA/api_key.
        assert second.server is not None
        np.testing.assert_allclose(second.client[uid]["primary"]["motor"].read(), [0, 0.5, 1])
        assert second.client[-1].metadata["start"]["uid"] == uid


def test_second_catalog_on_a_directory_joins_the_running_server(tmp_path):
    with open_catalog(data_dir=tmp_path) as first:
        assert (tmp_path / "tiled" / "server.json").exists()
        with open_catalog(data_dir=tmp_path) as second:
            assert second.server is None
            assert second.uri == first.uri
            assert second.runs_uri == first.runs_uri
        with pytest.raises(CatalogBusyError, match=first.uri):
            open_catalog(data_dir=tmp_path, join=False)
    assert not (tmp_path / "tiled" / "server.json").exists()


def test_explicit_key_is_used_by_the_embedded_server(tmp_path, monkeypatch):
    monkeypatch.setenv(API_KEY_ENV, "fromtheenvironment1")
    with open_catalog(data_dir=tmp_path) as catalog:
        assert catalog.api_key == "fromtheenvironment1"
        assert not (tmp_path / "api_key").exists()
