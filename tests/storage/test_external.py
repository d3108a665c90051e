"""STEM_LOOP_TILED_URI + TILED_API_KEY point stem-loop at a server it did not start."""

from __future__ import annotations

import pytest

from stem_loop.storage import (
    API_KEY_ENV,
    URI_ENV,
    EmbeddedTiledServer,
    open_catalog,
    subscribe_writer,
)


@pytest.fixture(scope="module")
def other_server(tmp_path_factory):
    """A second, independent Tiled server on loopback with its own key."""
    directory = tmp_path_factory.mktemp("other-tiled")
    with EmbeddedTiledServer(directory, "otherserverkey42") as server:
        yield server


def test_env_vars_select_an_existing_server(other_server, tmp_path, monkeypatch):
    import bluesky.plans as bp
    from bluesky import RunEngine
    from ophyd.sim import det
    from tiled.client import from_uri

    monkeypatch.setenv(URI_ENV, other_server.uri)
    monkeypatch.setenv(API_KEY_ENV, other_server.api_key)
    with open_catalog(data_dir=tmp_path) as catalog:
        assert catalog.server is None
        assert catalog.uri == other_server.uri
        assert not (tmp_path / "api_key").exists()
        RE = RunEngine({})
        subscribe_writer(RE, catalog)
        (uid,) = RE(bp.count([det], num=2))

    runs = from_uri(other_server.uri, api_key=other_server.api_key, trust_env=False)["runs"]
    assert runs[uid]["primary"]["det"].read().shape == (2,)


def test_uri_of_a_runs_container_is_used_as_is(other_server, tmp_path):
    uri = f"{other_server.uri}/metadata/runs"
    key = other_server.api_key
    with open_catalog(data_dir=tmp_path, uri=other_server.uri, api_key=key) as catalog:
        assert catalog.runs_uri == uri  # Created (or found) under the root.
    with open_catalog(data_dir=tmp_path, uri=uri, api_key=key) as catalog:
        assert catalog.runs_uri == uri
        assert "runs" not in list(catalog.client.keys())  # Not nested one level deeper.


def test_servers_in_one_process_keep_their_own_keys(other_server, tiled_catalog):
    import httpx

    ours, theirs = tiled_catalog.uri, other_server.uri
    for uri, key, status in [
        (ours, tiled_catalog.api_key, 200),
        (ours, other_server.api_key, 401),
        (theirs, other_server.api_key, 200),
        (theirs, tiled_catalog.api_key, 401),
    ]:
        with httpx.Client(trust_env=False) as http:  # A fresh client: no key cookie carried over.
            response = http.get(f"{uri}/metadata/", headers={"Authorization": f"Apikey {key}"})
        assert response.status_code == status, (uri, key)
