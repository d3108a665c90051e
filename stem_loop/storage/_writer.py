"""Write RunEngine documents into the catalog without ever stopping the RunEngine."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from pathlib import Path

from ._catalog import Catalog

logger = logging.getLogger(__name__)

# Events and StreamDatums are sent in batches of this size (and at the end of each run):
# small enough to browse a run while it is recorded, large enough to keep requests few.
DEFAULT_BATCH_SIZE = 16


class SafeTiledWriter:
    """A `TiledWriter` whose failures are logged and whose documents are never lost.

    When writing a run fails (the server went away, a request was refused), the writer stops
    sending that run to Tiled and keeps the whole run, from its start document on, in
    ``backup_dir/<uid prefix>.jsonl`` instead; `replay` writes it to Tiled later. Exceptions
    never reach the RunEngine.

    Parameters
    ----------
    client : CatalogOfBlueskyRuns
        The runs container.
    backup_dir : Path
        Where runs that could not be written are kept as JSON lines.
    batch_size : int
        Events or StreamDatums collected before they are written.
    """

    def __init__(self, client, backup_dir: Path, *, batch_size: int = DEFAULT_BATCH_SIZE) -> None:
        from bluesky_tiled_plugins import TiledWriter

        self.backup_dir = Path(backup_dir)
        self.backup_dir.mkdir(parents=True, exist_ok=True)
        # TiledWriter's own backup (a per-run buffer flushed to JSONL on the first failure).
        self._writer = TiledWriter(
            client, backup_directory=str(self.backup_dir), batch_size=batch_size
        )

    def __call__(self, name: str, doc: dict) -> None:
        try:
            self._writer(name, doc)
        except Exception:
            # Only reached if routing itself fails; keep the document where replay finds it.
            logger.exception("writing a %r document to Tiled failed; keeping it on disk", name)
            self._keep(name, doc)

    def _keep(self, name: str, doc: dict) -> None:
        path = self.backup_dir / f"unrouted-{time.strftime('%Y%m%d')}.jsonl"
        try:
            with path.open("a") as file:
                file.write(json.dumps({"name": name, "doc": doc}, default=repr) + "\n")
        except Exception:
            logger.exception("could not keep a %r document in %s", name, path)


def make_writer(catalog: Catalog, *, batch_size: int = DEFAULT_BATCH_SIZE) -> SafeTiledWriter:
    """Build the document callback that writes runs into ``catalog``.

    Parameters
    ----------
    catalog : Catalog
        From `open_catalog`.
    batch_size : int
        Events or StreamDatums collected before they are written.

    Returns
    -------
    SafeTiledWriter
        Callable ``(name, doc)``; backups go to ``catalog.backup_dir``.
    """
    return SafeTiledWriter(catalog.client, catalog.backup_dir, batch_size=batch_size)


def subscribe_writer(RE, catalog: Catalog, *, batch_size: int = DEFAULT_BATCH_SIZE) -> int:  # noqa: N803 - RE is the Bluesky name
    """Subscribe a `SafeTiledWriter` for ``catalog`` to the RunEngine ``RE``.

    Parameters
    ----------
    RE : bluesky.RunEngine
    catalog : Catalog
    batch_size : int
        Events or StreamDatums collected before they are written.

    Returns
    -------
    int
        The subscription token (``RE.unsubscribe(token)`` removes it).
    """
    writer: Callable[[str, dict], None] = make_writer(catalog, batch_size=batch_size)
    return RE.subscribe(writer)
