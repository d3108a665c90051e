"""Where the devices write their HDF5 files."""

from __future__ import annotations

import uuid
from datetime import datetime
from pathlib import Path

from ophyd_async.core import PathInfo, PathProvider


class Hdf5PathProvider(PathProvider):
    """Give every stage of every device a new, uniquely named file in one directory.

    Files are named ``<data key>-<YYYYmmddTHHMMSS>-<8 hex>.h5``; their URIs are
    ``file://localhost/<absolute path>`` so that a Tiled server whose ``readable_storage``
    includes ``directory`` can register them as external data.

    Parameters
    ----------
    directory : str or Path
        Directory of the files (created on first use), e.g. ``$STEM_LOOP_DATA/hdf5/2025/01/31``.
    """

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory).expanduser().resolve()

    def __call__(self, datakey_name: str | None = None) -> PathInfo:
        stamp = datetime.now().strftime("%Y%m%dT%H%M%S")
        filename = f"{datakey_name or 'data'}-{stamp}-{uuid.uuid4().hex[:8]}"
        return PathInfo(directory_path=self.directory, filename=filename)
