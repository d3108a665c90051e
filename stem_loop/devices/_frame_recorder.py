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
    """

    def __init__(self, source: FrameSource, chunk_frames: int = 128) -> None:
        self.source = source
        self.chunk_frames = int(chunk_frames)
        self.frames_written, self._set_frames_written = soft_signal_r_and_setter(int, 0)
        self.file: Hdf5StreamFile | None = None
        self._n_frames = 1
        self._dwell_s = 0.0
        self._external = False
        self._task: asyncio.Task | None = None

    def open(self, path: Path) -> None:
        """Create the file for this stage with a per-frame-chunked frames dataset."""
        self.close()
        shape = tuple(self.source.frame_shape)
        self.file = Hdf5StreamFile(path, {FRAMES_DATASET: (shape, np.dtype(self.source.dtype), 1)})
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
