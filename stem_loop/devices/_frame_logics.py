"""The trigger, acquire and data logics of :class:`PixelatedDetector`."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from ophyd_async.core import (
    DetectorAcquireLogic,
    DetectorDataLogic,
    DetectorTriggerLogic,
    PathProvider,
    SignalR,
    StreamableDataProvider,
    StreamResourceInfo,
    TriggerInfo,
)

from ._frame_recorder import FRAMES_DATASET, FrameRecorder
from ._stream_provider import Hdf5StreamProvider


class FrameTriggerLogic(DetectorTriggerLogic):
    """Software-triggered frames (step mode) or one frame per scan-engine trigger (batch).

    A ``livetime`` of 0 in the TriggerInfo means "use the detector's ``dwell_s``".
    """

    def __init__(self, recorder: FrameRecorder, dwell_s: SignalR[float]) -> None:
        self.recorder = recorder
        self.dwell_s = dwell_s

    async def _dwell(self, livetime: float) -> float:
        return livetime or await self.dwell_s.get_value()

    async def prepare_internal(self, num: int, livetime: float, deadtime: float) -> None:
        self.recorder.setup(num, await self._dwell(livetime), external=False)

    async def prepare_edge(self, num: int, livetime: float) -> None:
        self.recorder.setup(num, await self._dwell(livetime), external=True)

    async def default_trigger_info(self) -> TriggerInfo:
        return TriggerInfo()


class FrameAcquireLogic(DetectorAcquireLogic):
    """Start, await and stop the recorder's acquisition task."""

    def __init__(self, recorder: FrameRecorder) -> None:
        self.recorder = recorder

    async def start_acquiring(self) -> None:
        await self.recorder.start()

    async def wait_for_idle(self) -> None:
        await self.recorder.wait()

    async def ensure_stopped(self) -> None:
        await self.recorder.stop()


class FrameDataLogic(DetectorDataLogic):
    """One HDF5 file per stage, announced as ``<det>-image`` StreamResource/StreamDatum."""

    datakey_suffix = "-image"

    def __init__(self, recorder: FrameRecorder, path_provider: PathProvider) -> None:
        self.recorder = recorder
        self.path_provider = path_provider

    async def prepare_unbounded(self, datakey_name: str) -> StreamableDataProvider:
        info = self.path_provider(datakey_name)
        self.recorder.open(Path(info.directory_path) / f"{info.filename}.h5")
        rows, cols = self.recorder.source.frame_shape
        resource = StreamResourceInfo(
            data_key=datakey_name,
            shape=(rows, cols),
            chunk_shape=(self.recorder.file_chunk_frames, rows, cols),
            dtype_numpy=np.dtype(self.recorder.source.dtype).str,
            parameters={"dataset": FRAMES_DATASET},
        )
        assert self.recorder.file is not None
        return Hdf5StreamProvider(
            self.recorder.file,
            f"{info.directory_uri}{info.filename}.h5",
            [resource],
            self.recorder.frames_written,
        )

    async def stop(self) -> None:
        self.recorder.close()

    def get_hinted_fields(self, datakey_name: str) -> Sequence[str]:
        # Frames are not hinted: hinted fields are tabulated and plotted live.
        return []
