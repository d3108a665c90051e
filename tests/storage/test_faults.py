"""Tiled unreachable at start: a clear error. Tiled lost mid-run: nothing lost, replayable."""

from __future__ import annotations

import socket
import time

import pytest

from stem_loop.storage import (
    URI_ENV,
    TiledUnreachableError,
    open_catalog,
    pending_backups,
    replay,
    subscribe_writer,
)

pytestmark = pytest.mark.usefixtures("embedded_only")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_unreachable_server_is_a_clear_and_quick_error(tmp_path, monkeypatch):
    uri = f"http://127.0.0.1:{_free_port()}/api/v1"
    monkeypatch.setenv(URI_ENV, uri)
    start = time.monotonic()
    with pytest.raises(TiledUnreachableError, match=uri.replace(".", r"\.")):
        open_catalog(data_dir=tmp_path)
    assert time.monotonic() - start < 10


def test_server_lost_mid_run_keeps_the_run_for_replay(tmp_path, monkeypatch):
    import bluesky.plan_stubs as bps
    import bluesky.preprocessors as bpp
    from bluesky import RunEngine
    from ophyd.sim import det, motor

    # Give up on a dead server after ~1 s instead of tiled's default 45 s.
    monkeypatch.setattr("tiled.client.utils.TILED_RETRY_ATTEMPTS", 2)
    monkeypatch.setattr("tiled.client.utils.TILED_RETRY_TIMEOUT", 1.0)

    catalog = open_catalog(data_dir=tmp_path)
    RE = RunEngine({})
    subscribe_writer(RE, catalog, batch_size=1)

    @bpp.run_decorator(md={"purpose": "fault injection"})
    def plan():
        yield from bps.trigger_and_read([det, motor])
        catalog.server.close()  # Tiled goes away in the middle of the run.
        yield from bps.trigger_and_read([det, motor])
        yield from bps.trigger_and_read([det, motor])

    (uid,) = RE(plan())  # The RunEngine is not disturbed.
    catalog.close()

    (backup,) = pending_backups(tmp_path / "backup")
    assert backup.name.startswith(uid.split("-")[0])

    with open_catalog(data_dir=tmp_path) as restarted:
        assert uid in restarted.client  # Partially written before the server went away.
        assert "stop" not in restarted.client[uid].metadata
        assert replay(restarted) == [uid]
        run = restarted.client[uid]
        assert run.metadata["stop"]["exit_status"] == "success"
        assert run["primary"]["det"].read().shape == (3,)
        assert pending_backups(restarted) == []
