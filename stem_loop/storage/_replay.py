"""Write runs kept in JSONL backups into the catalog once Tiled is back."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from ._catalog import Catalog

logger = logging.getLogger(__name__)

REPLAYED_SUFFIX = ".replayed"


def pending_backups(catalog_or_dir: Catalog | str | os.PathLike[str]) -> list[Path]:
    """List the JSONL backups not replayed yet.

    Parameters
    ----------
    catalog_or_dir : Catalog or path-like
        A catalog (its ``backup_dir``) or a backup directory.

    Returns
    -------
    list of Path
    """
    directory = (
        catalog_or_dir.backup_dir if isinstance(catalog_or_dir, Catalog) else Path(catalog_or_dir)
    )
    return sorted(directory.glob("*.jsonl")) if directory.is_dir() else []


def replay(
    catalog: Catalog,
    source: str | os.PathLike[str] | None = None,
    *,
    overwrite: bool = True,
) -> list[str]:
    """Write the runs in JSONL backups into ``catalog``.

    Parameters
    ----------
    catalog : Catalog
        Destination.
    source : path-like, optional
        One ``.jsonl`` file or a directory of them; default ``catalog.backup_dir``.
    overwrite : bool
        Replace a run already in the catalog (a backed-up run is incomplete there, since writing
        it failed); if False such runs are skipped.

    Returns
    -------
    list of str
        UIDs of the runs written. Each replayed file is renamed ``*.jsonl.replayed``.
    """
    from bluesky_tiled_plugins import TiledWriter

    source = Path(source) if source is not None else catalog.backup_dir
    paths = pending_backups(source) if source.is_dir() else [source]
    written: list[str] = []
    for path in paths:
        records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        starts = [rec["doc"]["uid"] for rec in records if rec["name"] == "start"]
        skip = set()
        for uid in starts:
            if uid in catalog.client:
                if overwrite:
                    catalog.client.delete_contents(uid, recursive=True, external_only=False)
                else:
                    skip.add(uid)
        writer = TiledWriter(catalog.client)
        current_skip = False
        for rec in records:
            if rec["name"] == "start":
                current_skip = rec["doc"]["uid"] in skip
            if not current_skip:
                writer(rec["name"], rec["doc"])
        written.extend(uid for uid in starts if uid not in skip)
        path.rename(path.with_name(path.name + REPLAYED_SUFFIX))
        logger.info("replayed %s into %s", path, catalog.runs_uri)
    return written
