"""The embedded server refuses anonymous clients and keeps its key private."""

from __future__ import annotations

import stat

import httpx
import pytest

from stem_loop.storage import TiledAuthError, open_catalog


def test_server_listens_on_loopback(tiled_catalog):
    assert tiled_catalog.uri.startswith("http://127.0.0.1:")
    assert tiled_catalog.server is not None


def test_anonymous_write_is_refused(tiled_catalog):
    with httpx.Client(trust_env=False) as http:
        created = http.post(
            f"{tiled_catalog.uri}/metadata/",
            json={
                "data_sources": [],
                "metadata": {},
                "specs": [],
                "structure_family": "container",
                "id": "intruder",
            },
        )
        listed = http.get(f"{tiled_catalog.uri}/search/")
    assert created.status_code == 401
    assert listed.status_code == 401
    assert (
        "intruder"
        not in tiled_catalog.client.context.http_client.get(f"{tiled_catalog.uri}/search/").text
    )


def test_anonymous_client_is_refused(tiled_catalog):
    from tiled.client import from_uri

    with pytest.raises(RuntimeError, match="API key"):
        from_uri(tiled_catalog.uri, trust_env=False)


def test_wrong_key_is_a_clear_error(tiled_catalog, tmp_path):
    with pytest.raises(TiledAuthError, match="refused the API key"):
        open_catalog(data_dir=tmp_path, uri=tiled_catalog.uri, api_key="wrong")


def test_api_key_file_is_private(tiled_catalog):
    key_file = tiled_catalog.data_dir / "api_key"
    assert key_file.read_text().strip() == tiled_catalog.api_key
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
