"""StreamResource / StreamDatum documents for rows of an :class:`Hdf5StreamFile`."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

from bluesky.protocols import StreamAsset
from event_model import DataKey
from ophyd_async.core import SignalR, StreamResourceDataProvider, StreamResourceInfo

from ._hdf5_stream_file import Hdf5StreamFile

HDF5_MIMETYPE = "application/x-hdf5"


class Hdf5StreamProvider(StreamResourceDataProvider):
    """Describe and announce the rows of an HDF5 file as external ``STREAM:`` data.

    Differences from ophyd-async's :class:`~ophyd_async.core.StreamResourceDataProvider`:
    with one collection per event, a data key has the shape of one row (``[rows, cols]`` for
    a frame, ``[]`` for a position) rather than a leading ``1``, so ``run["primary"][key]``
    reads back as ``(N, rows, cols)`` / ``(N,)``; and the file is flushed before any
    StreamDatum is emitted, so a document never points at rows a reader cannot see.

    Parameters
    ----------
    file : Hdf5StreamFile
        The open file the rows are appended to.
    uri : str
        ``file://localhost/<absolute path>`` of the file.
    resources : sequence of StreamResourceInfo
        One per data key (its ``parameters`` hold the ``dataset`` path).
    collections_written_signal : SignalR[int]
        Rows written so far (the same count for every resource).
    """

    def __init__(
        self,
        file: Hdf5StreamFile,
        uri: str,
        resources: Sequence[StreamResourceInfo],
        collections_written_signal: SignalR[int],
    ) -> None:
        super().__init__(
            uri=uri,
            resources=resources,
            mimetype=HDF5_MIMETYPE,
            collections_written_signal=collections_written_signal,
        )
        self.file = file

    async def make_datakeys(self, collections_per_event: int) -> dict[str, DataKey]:
        keys = await super().make_datakeys(collections_per_event)
        if collections_per_event == 1:
            for resource in self.resources:
                key = keys[resource.data_key]
                key["shape"] = list(resource.shape)
                key["dtype"] = "array" if resource.shape else "number"
        return keys

    async def make_stream_docs(
        self, collections_written: int, collections_per_event: int
    ) -> AsyncIterator[StreamAsset]:
        if collections_written // collections_per_event > self.last_emitted:
            self.file.flush()
        async for doc in super().make_stream_docs(collections_written, collections_per_event):
            yield doc
