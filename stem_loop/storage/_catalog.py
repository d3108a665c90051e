"""Open the catalog runs are recorded in: embedded by default, an existing server on request."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import httpx

from ._api_key import API_KEY_ENV, load_or_create_api_key
from ._errors import CatalogBusyError, TiledAuthError, TiledUnreachableError
from ._layout import DataLayout, resolve_data_dir
from ._server import EmbeddedTiledServer, advertised_server

logger = logging.getLogger(__name__)

URI_ENV = "STEM_LOOP_TILED_URI"
RUNS_KEY = "runs"
RUNS_SPEC_NAME = "CatalogOfBlueskyRuns"
# bluesky-tiled-plugins only runs SQL queries (partial uid via LIKE) for version 3.x.
RUNS_SPEC_VERSION = "3.0"


@dataclass
class Catalog:
    """An open catalog of Bluesky runs.

    Attributes
    ----------
    uri : str
        API URI of the Tiled server (no key in it), e.g. ``http://127.0.0.1:8000/api/v1``.
    api_key : str or None
        Key clients present; None for an external server that allows anonymous access.
    client : bluesky_tiled_plugins.CatalogOfBlueskyRuns
        The runs container: ``client[uid]``, ``client["1a2b3"]`` (partial uid),
        ``client[-1]`` (latest), ``client[scan_id]``.
    data_dir : Path
        The ``STEM_LOOP_DATA`` directory (HDF5 files, backups, the embedded catalog).
    server : EmbeddedTiledServer or None
        The server this process started; None when using an external or shared one.
    """

    uri: str
    api_key: str | None
    client: object
    data_dir: Path
    server: EmbeddedTiledServer | None = None

    @property
    def layout(self) -> DataLayout:
        """Paths under `data_dir`."""
        return DataLayout(self.data_dir)

    @property
    def hdf5_dir(self) -> Path:
        """Where detectors write HDF5 files (readable by the embedded server)."""
        return self.layout.hdf5

    @property
    def backup_dir(self) -> Path:
        """JSONL backups of runs that failed to reach Tiled."""
        return self.layout.backup

    @property
    def runs_uri(self) -> str:
        """API URI of the runs container, for ``tiled.client.from_uri``."""
        return self.client.uri

    def python_snippet(self, server_uri: str | None = None) -> str:
        """Python that opens the runs container from another process.

        Parameters
        ----------
        server_uri : str, optional
            API URI to connect to instead of `uri`, e.g. where ``stem-loop serve`` listens
            (``http://127.0.0.1:8000/api/v1``) once this process's embedded server is gone.

        Returns
        -------
        str
            Import and ``from_uri`` lines; the key is read from where it is kept, not printed.
        """
        runs_uri = self.runs_uri
        if server_uri is not None:
            runs_uri = server_uri.rstrip("/") + runs_uri[len(self.uri.rstrip("/")) :]
        lines = ["from tiled.client import from_uri"]
        key = ""
        if self.api_key:
            key_file = self.layout.api_key_file
            if key_file.exists() and key_file.read_text().strip() == self.api_key:
                lines.insert(0, "from pathlib import Path")
                key = f", api_key=Path({str(key_file)!r}).read_text().strip()"
            elif os.environ.get(API_KEY_ENV) == self.api_key:
                lines.insert(0, "import os")
                key = f", api_key=os.environ[{API_KEY_ENV!r}]"
            else:
                key = f", api_key={self.api_key!r}"
        lines.append(f"runs = from_uri({runs_uri!r}{key})  # runs[-1], runs[uid], runs[scan_id]")
        return "\n".join(lines)

    def close(self) -> None:
        """Close the client and stop the embedded server, if this process started one."""
        try:
            self.client.context.close()
        finally:
            if self.server is not None:
                self.server.close()

    def __enter__(self) -> Catalog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_catalog(
    data_dir: str | os.PathLike[str] | None = None,
    uri: str | None = None,
    api_key: str | None = None,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    runs_key: str = RUNS_KEY,
    embedded: bool = False,
    join: bool = True,
) -> Catalog:
    """Open (and if needed start) the catalog that runs are written to.

    Parameters
    ----------
    data_dir : path-like, optional
        Data directory; default ``$STEM_LOOP_DATA`` or ``./stem-loop-data``.
    uri : str, optional
        An existing Tiled server; default ``$STEM_LOOP_TILED_URI``. When neither is set, an
        embedded server is started on ``host:port`` with its catalog under ``data_dir/tiled``
        (or a server another process already runs on that directory is joined).
    api_key : str, optional
        Default ``$TILED_API_KEY``; for the embedded server, else the key stored in
        ``data_dir/api_key`` (generated on first use, mode 0600).
    host, port : str, int
        Where an embedded server listens (port 0: any free port).
    runs_key : str
        Name of the runs container under the server's root, created with the spec
        ``CatalogOfBlueskyRuns`` 3.0 when missing. A URI that already points at such a
        container is used as is.
    embedded : bool
        Use the embedded server even if ``$STEM_LOOP_TILED_URI`` is set (``stem-loop serve``).
    join : bool
        Join an embedded server another process runs on ``data_dir``; if False, raise
        `CatalogBusyError` instead (the table store admits one server at a time).

    Returns
    -------
    Catalog

    Raises
    ------
    TiledUnreachableError
        Nothing answers at the URI.
    TiledAuthError
        The server refused the API key.
    CatalogBusyError
        ``join`` is False and another process serves ``data_dir``.
    """
    layout = DataLayout(resolve_data_dir(data_dir)).create()
    if pending := sorted(layout.backup.glob("*.jsonl")):
        logger.warning(
            "%d run backup(s) in %s are not in Tiled yet; write them with "
            "stem_loop.storage.replay(catalog)",
            len(pending),
            layout.backup,
        )
    uri = None if embedded else (uri or os.environ.get(URI_ENV) or None)
    server = None
    if uri:
        api_key = api_key or os.environ.get(API_KEY_ENV) or None
        root = _connect(uri, api_key, trust_env=True)
    else:
        api_key = load_or_create_api_key(layout.api_key_file, api_key)
        uri = advertised_server(layout.server_file)
        if uri is not None and not join:
            raise CatalogBusyError(f"{layout.root} is already served at {uri}")
        if uri is not None:
            logger.info("joining the Tiled server already serving %s at %s", layout.root, uri)
        else:
            server = EmbeddedTiledServer(layout.tiled, api_key, [layout.hdf5], host=host, port=port)
            server.advertise(layout.server_file)
            uri = server.uri
        try:
            runs = _runs_container(_connect(uri, api_key, trust_env=False), runs_key)
        except BaseException:
            if server is not None:
                server.close()
            raise
        return Catalog(uri=uri, api_key=api_key, client=runs, data_dir=layout.root, server=server)
    runs = _runs_container(root, runs_key)
    return Catalog(uri=uri, api_key=api_key, client=runs, data_dir=layout.root, server=server)


def _connect(uri: str, api_key: str | None, *, trust_env: bool):
    from tiled.client import from_uri
    from tiled.client.utils import ClientError

    # Probe once without tiled's retries (which take ~25 s) to fail fast and clearly. Only a
    # failure to connect counts: a slow answer (busy machine) is left to tiled's retries.
    try:
        with httpx.Client(trust_env=trust_env) as http:
            http.get(uri, timeout=httpx.Timeout(30.0, connect=5.0))
    except (httpx.ConnectError, httpx.ConnectTimeout, httpx.UnsupportedProtocol) as err:
        raise TiledUnreachableError(
            f"No Tiled server answers at {uri} ({err}). Start it, fix ${URI_ENV}, "
            f"or unset ${URI_ENV} to use the embedded server."
        ) from None
    except httpx.TransportError:
        pass
    try:
        return from_uri(uri, api_key=api_key, trust_env=trust_env)
    except ClientError as err:
        if err.response.status_code in (401, 403):
            raise TiledAuthError(
                f"The Tiled server at {uri} refused the API key (set ${API_KEY_ENV})."
            ) from None
        raise
    except RuntimeError as err:
        if "API key" in str(err):
            raise TiledAuthError(
                f"The Tiled server at {uri} requires an API key (set ${API_KEY_ENV})."
            ) from None
        raise


def _runs_spec(node) -> object | None:
    return next((spec for spec in node.specs if spec.name == RUNS_SPEC_NAME), None)


def _runs_container(root, key: str):
    from tiled.client.utils import ClientError
    from tiled.structures.core import Spec

    if _runs_spec(root) is not None:
        return root
    if key not in root:
        try:
            root.create_container(key, specs=[Spec(RUNS_SPEC_NAME, version=RUNS_SPEC_VERSION)])
        except ClientError as err:
            if err.response.status_code != 409:  # Another process created it first.
                raise
    runs = root[key]
    if _runs_spec(runs) is None:
        raise ValueError(f"{runs.uri} exists but is not a {RUNS_SPEC_NAME} container")
    return runs
