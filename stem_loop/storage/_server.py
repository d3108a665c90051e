"""An embedded Tiled server: SQLite catalog, DuckDB table store, files, on a background thread.

Modelled on `tiled.server.simple.SimpleTiledServer`, with a configurable host, a fixed API key
and the HDF5 directory in the readable storage so externally written detector files can be served.
"""

from __future__ import annotations

import atexit
import copy
import json
import os
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import quote_plus, urlparse

import httpx
import uvicorn

_STARTUP_TIMEOUT_S = 30.0


def _log_config(directory: Path) -> dict:
    from tiled.server.logging_config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    for handler, filename in (("access", "access.log"), ("default", "error.log")):
        config["handlers"][handler]["class"] = "logging.FileHandler"
        del config["handlers"][handler]["stream"]
        config["handlers"][handler]["filename"] = str(directory / filename)
    return config


class EmbeddedTiledServer:
    """A Tiled server owned by this process, persisted in ``directory``.

    Parameters
    ----------
    directory : Path
        Holds ``catalog.db`` (SQLite), ``storage.duckdb`` (tables), ``data/`` (arrays) and logs.
        Reusing a directory serves the same catalog again.
    api_key : str
        The single key that grants access; anonymous clients can neither read nor write.
    readable_storage : list of Path
        Extra directories the server may read registered files from (the HDF5 directory).
    host : str
        Interface to listen on; loopback by default.
    port : int
        0 picks a free port.
    """

    def __init__(
        self,
        directory: Path,
        api_key: str,
        readable_storage: Sequence[Path] = (),
        *,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        from tiled.catalog import from_uri as catalog_from_uri
        from tiled.config import Authentication, StreamingCacheConfig
        from tiled.server.app import build_app
        from tiled.server.simple import ThreadedServer
        from tiled.storage import get_storage
        from tiled.utils import ensure_uri

        directory = Path(directory).resolve()
        (directory / "data").mkdir(parents=True, exist_ok=True)
        table_uri = ensure_uri(f"duckdb:///{directory / 'storage.duckdb'}")
        catalog = catalog_from_uri(
            directory / "catalog.db",
            writable_storage=[directory / "data", table_uri],
            readable_storage=[Path(p).resolve() for p in readable_storage],
            # Initialising runs a subprocess (seconds): only for a new directory.
            init_if_not_exists=not (directory / "catalog.db").exists(),
            cache_config=StreamingCacheConfig(uri="memory").model_dump(),
        )
        app = build_app(catalog, authentication=Authentication(single_user_api_key=api_key))
        _isolate_settings(app)
        self._server = ThreadedServer(
            uvicorn.Config(
                app, host=host, port=port, loop="asyncio", log_config=_log_config(directory)
            )
        )
        # A daemon thread closed by atexit: a forgotten server never blocks interpreter exit,
        # and a normal exit still shuts it down gracefully (atexit runs before daemons die).
        self._thread = threading.Thread(
            target=self._server.run, name="stem-loop-tiled", daemon=True
        )
        self._thread.start()
        try:
            base = self._wait_ready(directory)
        except BaseException:
            self._stop_thread()
            raise
        atexit.register(self.close)
        self._table_storage = get_storage(table_uri)
        self.directory = directory
        self.api_key = api_key
        self.host, self.port = host, urlparse(base).port
        self.base_url = f"http://{_url_host(host)}:{self.port}"
        self.uri = f"{self.base_url}/api/v1"
        self._closed = False

    def _wait_ready(self, directory: Path) -> str:
        # uvicorn opens the socket before FastAPI's startup completes: then poll /healthz.
        deadline = time.monotonic() + _STARTUP_TIMEOUT_S
        failed = "Tiled server failed to start"
        while not self._server.started:
            if not self._thread.is_alive():
                raise RuntimeError(_failure(failed, directory))
            if time.monotonic() > deadline:
                raise TimeoutError(f"Tiled server did not start in {_STARTUP_TIMEOUT_S:.0f} s")
            time.sleep(0.05)
        host, port = self._server.servers[0].sockets[0].getsockname()[:2]
        base = f"http://{_url_host(host)}:{port}"
        with httpx.Client(trust_env=False) as http:
            while time.monotonic() < deadline:
                if not self._thread.is_alive():
                    raise RuntimeError(_failure(failed, directory))
                try:
                    if http.get(f"{base}/healthz", timeout=1.0).status_code == 200:
                        return base
                except httpx.RequestError:
                    pass
                time.sleep(0.1)
        raise TimeoutError(f"Tiled server did not become ready in {_STARTUP_TIMEOUT_S:.0f} s")

    def _stop_thread(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=_STARTUP_TIMEOUT_S)

    @property
    def web_ui_url(self) -> str:
        """Browser address, with the API key so the page can read the catalog."""
        return f"{self.base_url}/?api_key={quote_plus(self.api_key)}"

    def advertise(self, path: Path) -> None:
        """Write ``path`` (JSON: uri, pid) so other processes on this directory join this server."""
        path.write_text(json.dumps({"uri": self.uri, "pid": os.getpid()}))
        self._advertised = path

    def close(self) -> None:
        """Stop serving and release the table store; safe to call twice."""
        if self._closed:
            return
        self._closed = True
        advertised = getattr(self, "_advertised", None)
        if advertised is not None:
            advertised.unlink(missing_ok=True)
        atexit.unregister(self.close)
        self._stop_thread()
        self._table_storage.dispose()

    def __enter__(self) -> EmbeddedTiledServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<EmbeddedTiledServer {self.uri} in {self.directory}>"


def _isolate_settings(app) -> None:
    """Give ``app`` its own copy of tiled's settings.

    tiled's ``build_app`` writes the API key into one process-wide ``Settings`` object, so with
    two servers in a process the key of the last one would unlock (and be required by) both.
    """
    from tiled.server.settings import get_settings

    private = app.dependency_overrides[get_settings]().model_copy(deep=True)
    app.dependency_overrides[get_settings] = lambda: private


def _failure(message: str, directory: Path) -> str:
    log = directory / "error.log"
    try:
        errors = [line for line in log.read_text().splitlines() if "ERROR" in line]
    except OSError:
        errors = []
    reason = f": {errors[-1].split('ERROR', 1)[-1].strip(' :-')}" if errors else ""
    return f"{message}{reason} (log: {log})"


def _url_host(host: str) -> str:
    # A wildcard bind is reachable on loopback; IPv6 literals need brackets in URLs.
    if host in ("0.0.0.0", ""):
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host


def advertised_server(path: Path) -> str | None:
    """Return the URI of a live embedded server advertised in ``path``, if any.

    Parameters
    ----------
    path : Path
        The ``server.json`` written by `EmbeddedTiledServer.advertise`.

    Returns
    -------
    str or None
        The server's API URI when its process lives and it answers; otherwise None.
    """
    try:
        info = json.loads(path.read_text())
        uri, pid = info["uri"], int(info["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass  # Alive, owned by someone else.
    try:
        with httpx.Client(trust_env=False) as http:
            http.get(uri.replace("/api/v1", "/healthz"), timeout=2.0).raise_for_status()
    except httpx.HTTPError:
        return None
    return uri
