"""A pixelated (4D-STEM) detector that writes frames to HDF5 and streams them by reference."""

from __future__ import annotations

from ophyd_async.core import (
    PathProvider,
    StandardDetector,
    soft_signal_r_and_setter,
    soft_signal_rw,
)

from ._backends import FrameSource
from ._frame_logics import FrameAcquireLogic, FrameDataLogic, FrameTriggerLogic
from ._frame_recorder import FrameRecorder


class PixelatedDetector(StandardDetector):
    """A 4D-STEM camera: one diffraction frame per probe position.

    Frames go to one HDF5 file per stage (dataset ``/entry/data/data``, 16 frames per chunk,
    the source's dtype, ``uint16`` for the simulated microscope) as they are read out; events
    carry only references: data key ``<name>-image`` with ``external="STREAM:"``, a
    StreamResource per file and StreamDatum ranges per collect. Step mode: each ``trigger()``
    records one frame at the current beam position. Batch mode: ``prepare(TriggerInfo(
    trigger=DetectorTrigger.EXTERNAL_EDGE, number_of_events=N))`` arms it for ``N`` frames
    triggered by the scan generator's position list (see :func:`stem_loop.plans.sparse_scan`).

    Configuration (in every descriptor): ``dwell_s`` (exposure per frame; a TriggerInfo
    ``livetime`` overrides it), ``dose`` (electrons per frame), ``frame_rows``, ``frame_cols``.

    Parameters
    ----------
    source : FrameSource
        The camera read-out (a real camera backend, or
        :class:`sim_devices.backends.SimFrameSource`).
    path_provider : PathProvider
        Where files go, e.g. :class:`stem_loop.devices.Hdf5PathProvider`.
    chunk_frames : int
        Most frames read out and appended at once in batch mode.
    name : str
        Device name; the contract name is ``det``.
    """

    def __init__(
        self,
        source: FrameSource,
        path_provider: PathProvider,
        *,
        chunk_frames: int = 128,
        name: str = "",
    ) -> None:
        self.source = source
        rows, cols = source.frame_shape
        self.dwell_s = soft_signal_rw(float, 0.0, units="s")
        self.dose, _ = soft_signal_r_and_setter(
            float, units="e-/frame", getter=lambda: float(source.dose)
        )
        self.frame_rows, _ = soft_signal_r_and_setter(int, int(rows))
        self.frame_cols, _ = soft_signal_r_and_setter(int, int(cols))
        self.recorder = FrameRecorder(source, chunk_frames)
        self.add_detector_logics(
            FrameTriggerLogic(self.recorder, self.dwell_s),
            FrameAcquireLogic(self.recorder),
            FrameDataLogic(self.recorder, path_provider),
        )
        self.add_config_signals(self.dwell_s, self.dose, self.frame_rows, self.frame_cols)
        super().__init__(name=name)

    @property
    def frame_shape(self) -> tuple[int, int]:
        """Shape ``(rows, cols)`` of one frame."""
        return tuple(self.source.frame_shape)  # type: ignore[return-value]

    @property
    def image_key(self) -> str:
        """Data key of the frames in the event stream (``<name>-image``)."""
        return f"{self.name}-image"
