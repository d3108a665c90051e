"""Moves frames from a frame source into an HDF5 file as they are read out."""

from __future__ import annotations

import asyncio
from contextlib import suppress
from pathlib import Path

import numpy as np
from ophyd_async.core import soft_signal_r_and_setter

from ._backends import FrameSource
from ._hdf5_stream_file import Hdf5StreamFile

#: Dataset of the frames inside a detector file.
FRAMES_DATASET = "/entry/data/data"
#: Frames per HDF5 chunk of that dataset. h5py pays a lookup per chunk: a reader of
#: 128 x 128 uint16 frames got 70,000 frames/s with one frame per chunk, 125,000 with 16 and
#: 149,000 with 64 (2 cores, batches of 4,096), and a GPU predictor reads 134,000/s. A partly
#: filled chunk is rewritten at each flush; step scans recorded as fast as before (about 345
#: positions/s), batch scans faster (40,500 against 32,000 positions/s).
FILE_CHUNK_FRAMES = 16


class FrameRecorder:
    """The state shared by the detector's trigger, acquire and data logics.

    Holds the open file, the number of frames written (a signal the detector watches) and the
    acquisition task that pulls frames from the source and appends them, chunk by chunk,
    flushing nothing itself (the data provider flushes before announcing frames).

    Parameters
    ----------
    source : FrameSource
        Where frames come from.
    chunk_frames : int
        Most frames pulled and appended at once in batch mode.
    file_chunk_frames : int
        Frames per HDF5 chunk of the file (see :data:`FILE_CHUNK_FRAMES`).
    """

    def __init__(
        self,
        source: FrameSource,
        chunk_frames: int = 128,
        file_chunk_frames: int = FILE_CHUNK_FRAMES,
    ) -> None:
        if file_chunk_frames < 1:
            raise ValueError(f"file_chunk_frames must be at least 1, got {file_chunk_frames}")
        self.source = source
        self.chunk_frames = int(chunk_frames)
        self.file_chunk_frames = int(file_chunk_frames)
        self.frames_written, self._set_frames_written = soft_signal_r_and_setter(int, 0)
        self.file: Hdf5StreamFile | None = None
        self._n_frames = 1
        self._dwell_s = 0.0
        self._external = False
        self._task: asyncio.Task | None = None

    def open(self, path: Path) -> None:
        """Create the file for this stage (frames dataset in chunks of ``file_chunk_frames``)."""
        self.close()
        shape = tuple(self.source.frame_shape)
        dataset = (shape, np.dtype(self.source.dtype), self.file_chunk_frames)
        self.file = Hdf5StreamFile(path, {FRAMES_DATASET: dataset})
        self._set_frames_written(0)

    def close(self) -> None:
        """Flush and close the file (idempotent); frames already appended stay in it."""
        if self.file is not None:
            self.file.close()

    def setup(self, n_frames: int, dwell_s: float, external: bool) -> None:
        """Frames per arm, exposure, and whether the scan engine triggers them."""
        self._n_frames, self._dwell_s, self._external = int(n_frames), float(dwell_s), external

    async def start(self) -> None:
        """Arm the source and start appending ``n_frames`` frames in the background."""
        await self.source.arm(self._n_frames, self._dwell_s, self._external)
        self._task = asyncio.create_task(self._record(self._n_frames))

    async def _record(self, n_frames: int) -> None:
        file = self.file
        if file is None or file.closed:
            raise RuntimeError("frame recorder: no open file (was the detector prepared?)")
        done = 0
        while done < n_frames:
            frames = await self.source.read_frames(min(self.chunk_frames, n_frames - done))
            if file.closed:
                return
            self._set_frames_written(file.append(FRAMES_DATASET, frames))
            done += len(frames)

    async def wait(self) -> None:
        """Wait for the current acquisition to finish (re-raising its error)."""
        if self._task is not None:
            await self._task

    async def stop(self) -> None:
        """Cancel the acquisition task and disarm the source."""
        if self._task is not None:
            self._task.cancel()
            with suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self.source.disarm()
