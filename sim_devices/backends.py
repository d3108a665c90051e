"""Sim backends: the simulated microscope behind the stem-loop Ophyd devices.

:class:`SimScanBackend` implements :class:`stem_loop.devices.ScanBackend` (the beam position
and a position list), :class:`SimFrameSource` implements :class:`stem_loop.devices.FrameSource`
by simulating CBED frames where the beam is, and :class:`ReplayFrameSource` hands out
pre-simulated frames (to measure the data path alone). :func:`make_sim_devices` builds the
contract pair ``(scan_gen, det)``.

In the simulation the detector is the clock: each frame it reads out takes the next position
of the loaded path (in hardware the scan engine steps and triggers the detector).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np

from stem_loop.devices import Hdf5PathProvider, PixelatedDetector, ScanGenerator

from .microscope import Microscope


class SimScanBackend:
    """The microscope's beam deflection: a position, and a position list in batch mode.

    Parameters
    ----------
    microscope : Microscope
        Provides the field of view and position validation.
    """

    def __init__(self, microscope: Microscope) -> None:
        self.microscope = microscope
        self.position = (0.0, 0.0)
        self._path: tuple[np.ndarray, np.ndarray] | None = None
        self._index = 0
        self._running = asyncio.Event()
        self._done = asyncio.Event()

    @property
    def field_of_view_nm(self) -> tuple[float, float]:
        return self.microscope.field_of_view_nm

    def check_positions(self, x_nm, y_nm) -> tuple[np.ndarray, np.ndarray]:
        return self.microscope.check_positions(x_nm, y_nm)

    async def move_axis(self, axis: str, value_nm: float) -> None:
        x, y = self.position
        self.position = (float(value_nm), y) if axis == "x" else (x, float(value_nm))

    async def get_position(self) -> tuple[float, float]:
        return self.position

    async def load_path(self, x_nm: np.ndarray, y_nm: np.ndarray, dwell_s: float) -> None:
        # dwell_s is honoured by the frame source, which paces the read-out.
        self._path = (np.asarray(x_nm, float), np.asarray(y_nm, float))
        self._index = 0
        self._running.clear()
        self._done = asyncio.Event()

    async def start_path(self) -> None:
        if self._path is None:
            raise RuntimeError("no position list loaded")
        self._running.set()

    async def positions_done(self) -> int:
        return self._index

    async def wait_path(self) -> None:
        await self._done.wait()

    async def stop(self) -> None:
        self._path = None
        self._running.clear()
        self._done.set()

    async def next_positions(
        self, max_positions: int, triggered: bool
    ) -> tuple[np.ndarray, np.ndarray]:
        """Where the next frames are exposed.

        Software-triggered (step mode): one frame at the current position. Triggered by the
        scan engine (batch mode): wait for the path to run, then its next positions.
        """
        if not triggered:
            x, y = self.position
            return np.array([x]), np.array([y])
        await self._running.wait()
        assert self._path is not None
        xs, ys = self._path
        start = self._index
        stop = min(start + max_positions, len(xs))
        if stop == start:
            raise RuntimeError("the detector expects more frames than the path has positions")
        self._index = stop
        self.position = (float(xs[stop - 1]), float(ys[stop - 1]))
        if stop == len(xs):
            self._path = None
            self._running.clear()
            self._done.set()
        return xs[start:stop], ys[start:stop]


class SimFrameSource:
    """Frames simulated by the microscope where the beam is (uint16 counts, live physics).

    Parameters
    ----------
    microscope : Microscope
        Renders the frames (forward model + counting noise).
    beam : SimScanBackend
        Tells where each frame is exposed.
    """

    def __init__(self, microscope: Microscope, beam: SimScanBackend) -> None:
        self.microscope = microscope
        self.beam = beam
        self._dwell_s = 0.0
        self._external = False

    @property
    def frame_shape(self) -> tuple[int, int]:
        return self.microscope.frame_shape

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self.microscope.dtype)

    @property
    def dose(self) -> float:
        return float(self.microscope.detector.dose)

    async def arm(self, n_frames: int, dwell_s: float, external: bool) -> None:
        self._dwell_s, self._external = dwell_s, external

    async def read_frames(self, max_frames: int) -> np.ndarray:
        x, y = await self.beam.next_positions(max_frames, self._external)
        started = asyncio.get_running_loop().time()
        frames = await asyncio.to_thread(self._render, x, y)
        await _pace(started, len(frames) * self._dwell_s)
        return frames

    def _render(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        return self.microscope.acquire(x, y)

    async def disarm(self) -> None:
        pass


class ReplayFrameSource(SimFrameSource):
    """Pre-simulated frames handed out in a loop: the data path without the physics.

    Positions still come from the beam, so documents and files are exactly those of a live
    run; only the frame contents repeat. Use it to measure acquisition throughput.

    Parameters
    ----------
    microscope : Microscope
        Provides shape, dtype and dose.
    beam : SimScanBackend
        Tells where each frame is (nominally) exposed.
    frames : ndarray
        ``(K, rows, cols)`` frames of the microscope's dtype.
    """

    def __init__(self, microscope: Microscope, beam: SimScanBackend, frames: np.ndarray) -> None:
        super().__init__(microscope, beam)
        frames = np.asarray(frames)
        if frames.ndim != 3 or frames.shape[1:] != tuple(self.frame_shape):
            raise ValueError(f"replay frames must be (K, {self.frame_shape}), got {frames.shape}")
        if frames.dtype != self.dtype:
            raise ValueError(f"replay frames must be {self.dtype}, got {frames.dtype}")
        self.frames = frames
        self._next = 0

    async def read_frames(self, max_frames: int) -> np.ndarray:
        x, _ = await self.beam.next_positions(max_frames, self._external)
        started = asyncio.get_running_loop().time()
        idx = (self._next + np.arange(len(x))) % len(self.frames)
        self._next = int(idx[-1]) + 1
        frames = self.frames[idx]
        await _pace(started, len(frames) * self._dwell_s)
        return frames


async def _pace(started: float, duration_s: float) -> None:
    if duration_s > 0:
        await asyncio.sleep(max(0.0, started + duration_s - asyncio.get_running_loop().time()))


def make_sim_devices(
    microscope: Microscope,
    data_dir: str | Path,
    name_prefix: str = "",
    *,
    replay_frames: np.ndarray | None = None,
    chunk_frames: int = 128,
) -> tuple[ScanGenerator, PixelatedDetector]:
    """Build the contract devices ``scan_gen`` and ``det`` on a simulated microscope.

    Parameters
    ----------
    microscope : Microscope
        The simulated instrument.
    data_dir : str or Path
        Directory of the HDF5 files (one per stage and device).
    name_prefix : str
        Prepended to the device names (``f"{name_prefix}scan_gen"``, ``f"{name_prefix}det"``).
    replay_frames : ndarray, optional
        Hand out these pre-simulated frames instead of simulating (data path only).
    chunk_frames : int
        Frames read out and written at once in batch mode.

    Returns
    -------
    scan_gen : ScanGenerator
    det : PixelatedDetector
    """
    beam = SimScanBackend(microscope)
    source = (
        SimFrameSource(microscope, beam)
        if replay_frames is None
        else ReplayFrameSource(microscope, beam, replay_frames)
    )
    paths = Hdf5PathProvider(data_dir)
    scan_gen = ScanGenerator(beam, paths, name=f"{name_prefix}scan_gen")
    det = PixelatedDetector(source, paths, chunk_frames=chunk_frames, name=f"{name_prefix}det")
    return scan_gen, det
