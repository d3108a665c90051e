"""Where stem-loop keeps its catalog, HDF5 files and document backups on disk."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

DATA_ENV = "STEM_LOOP_DATA"
DEFAULT_DATA_DIR = "stem-loop-data"


def resolve_data_dir(data_dir: str | os.PathLike[str] | None = None) -> Path:
    """Return the absolute data directory.

    Parameters
    ----------
    data_dir : path-like, optional
        Explicit directory; wins over the environment.

    Returns
    -------
    Path
        ``data_dir``, else ``$STEM_LOOP_DATA``, else ``./stem-loop-data``, made absolute.
    """
    chosen = data_dir if data_dir is not None else os.environ.get(DATA_ENV) or DEFAULT_DATA_DIR
    return Path(chosen).expanduser().resolve()


@dataclass(frozen=True)
class DataLayout:
    """The files under one stem-loop data directory.

    Parameters
    ----------
    root : Path
        The data directory (``STEM_LOOP_DATA``).
    """

    root: Path

    @property
    def tiled(self) -> Path:
        """The embedded Tiled server's directory (catalog, table store, logs)."""
        return self.root / "tiled"

    @property
    def hdf5(self) -> Path:
        """Where detectors write HDF5 files; the server can read them."""
        return self.root / "hdf5"

    @property
    def backup(self) -> Path:
        """JSONL copies of runs that could not be written to Tiled (see `replay`)."""
        return self.root / "backup"

    @property
    def api_key_file(self) -> Path:
        """The embedded server's API key, readable by the owner only."""
        return self.root / "api_key"

    @property
    def server_file(self) -> Path:
        """Written while an embedded server runs, so other processes can join it."""
        return self.tiled / "server.json"

    def create(self) -> DataLayout:
        """Create the directories and return ``self``."""
        for path in (self.root, self.tiled, self.hdf5, self.backup):
            path.mkdir(parents=True, exist_ok=True)
        return self
