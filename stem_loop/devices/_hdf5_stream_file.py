"""An HDF5 file of row-appendable datasets, written as data arrive."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np


class Hdf5StreamFile:
    """Datasets that grow by whole rows (frames, positions) along their first axis.

    The file is opened in single-writer/multiple-reader mode, so that readers (a Tiled
    server, an analysis process) see every row up to the last :meth:`flush` while the
    acquisition goes on, and nothing already flushed is lost if the writer dies.

    Parameters
    ----------
    path : Path
        File to create; its directory is created if needed. An existing file is refused.
    datasets : dict of str to (row shape, dtype, chunk rows)
        Dataset path inside the file -> shape of one row, dtype, rows per chunk.
    """

    def __init__(
        self, path: Path, datasets: dict[str, tuple[tuple[int, ...], np.dtype, int]]
    ) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._file = h5py.File(path, "w-", libver="latest")
        self._datasets: dict[str, h5py.Dataset] = {}
        for name, (row_shape, dtype, chunk_rows) in datasets.items():
            self._datasets[name] = self._file.create_dataset(
                name,
                shape=(0, *row_shape),
                maxshape=(None, *row_shape),
                chunks=(chunk_rows, *row_shape),
                dtype=dtype,
            )
        self._file.swmr_mode = True
        self._rows = dict.fromkeys(datasets, 0)

    def rows(self, name: str) -> int:
        """Number of rows appended to a dataset so far."""
        return self._rows[name]

    def append(self, name: str, rows: np.ndarray) -> int:
        """Append rows to a dataset (dtype must match: no silent casting) and return the count."""
        dataset = self._datasets[name]
        if rows.dtype != dataset.dtype or rows.shape[1:] != dataset.shape[1:]:
            raise TypeError(
                f"{name}: got rows {rows.dtype}{rows.shape[1:]}, the dataset holds "
                f"{dataset.dtype}{dataset.shape[1:]}"
            )
        start = self._rows[name]
        stop = start + len(rows)
        dataset.resize(stop, axis=0)
        dataset[start:stop] = rows
        self._rows[name] = stop
        return stop

    def flush(self) -> None:
        """Make everything appended so far visible to readers and safe on disk."""
        if self._file:
            self._file.flush()

    def close(self) -> None:
        """Flush and close (idempotent)."""
        if self._file:
            self._file.flush()
            self._file.close()

    @property
    def closed(self) -> bool:
        """Whether the file has been closed."""
        return not self._file
