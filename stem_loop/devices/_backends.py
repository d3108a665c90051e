"""What the devices need from the hardware: a scan engine and a frame source.

The Ophyd devices in :mod:`stem_loop.devices` hold no physics and no vendor code. They talk to
two small protocols; anything implementing them plugs in (the simulated microscope in
:mod:`sim_devices.backends`, or a real scan generator and pixelated detector).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class ScanBackend(Protocol):
    """The beam-positioning part of a scan generator (scan engine).

    A real backend wraps the scan engine's control interface (e.g. a vendor SDK or an
    EPICS/Tango server): ``move_axis`` writes one deflector setpoint, ``load_path`` uploads a
    position list to the engine's buffer, ``start_path`` arms it so that it steps through the
    list and fires one detector trigger per position, and ``positions_done`` reports how many
    positions it has visited (its trigger counter). All positions are in nm in the scan frame,
    origin at the top-left corner of the field of view.

    ``check_positions`` must refuse, with a ``ValueError`` naming the offending position,
    anything the engine cannot reach (outside the field of view, NaN, inf). The devices call it
    before they move anything.
    """

    @property
    def field_of_view_nm(self) -> tuple[float, float]:
        """Scan field ``(width_x, height_y)`` in nm; positions run from 0 to these."""
        ...

    def check_positions(self, x_nm: np.ndarray, y_nm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Validate positions and return them as 1-D float arrays, or raise ``ValueError``."""
        ...

    async def move_axis(self, axis: str, value_nm: float) -> None:
        """Move one axis (``"x"`` or ``"y"``) to an already validated position."""
        ...

    async def get_position(self) -> tuple[float, float]:
        """Current beam position ``(x_nm, y_nm)``."""
        ...

    async def load_path(self, x_nm: np.ndarray, y_nm: np.ndarray, dwell_s: float) -> None:
        """Upload a validated position list; the beam does not move yet."""
        ...

    async def start_path(self) -> None:
        """Start stepping through the loaded list, triggering the detector at each position."""
        ...

    async def positions_done(self) -> int:
        """Number of positions of the loaded list visited so far."""
        ...

    async def wait_path(self) -> None:
        """Return once every position of the loaded list has been visited."""
        ...

    async def stop(self) -> None:
        """Abort a running path (idempotent); the beam stays where it is."""
        ...


@runtime_checkable
class FrameSource(Protocol):
    """The read-out side of a pixelated detector.

    A real backend wraps the camera's acquisition interface: ``arm`` sets the exposure and
    the number of frames and puts the camera in hardware-trigger mode when ``external`` is
    true (the scan engine then triggers one frame per probe position) or free-running
    software-triggered mode otherwise; ``read_frames`` hands over frames as the camera
    delivers them, in acquisition order. The backend never needs to know probe positions:
    they are recorded by the scan generator.
    """

    @property
    def frame_shape(self) -> tuple[int, int]:
        """Shape ``(rows, cols)`` of one frame."""
        ...

    @property
    def dtype(self) -> np.dtype:
        """Pixel dtype as read out (``uint16`` for the simulated microscope)."""
        ...

    @property
    def dose(self) -> float:
        """Mean number of incident electrons per frame at the current settings."""
        ...

    async def arm(self, n_frames: int, dwell_s: float, external: bool) -> None:
        """Prepare to deliver ``n_frames`` frames of ``dwell_s`` exposure."""
        ...

    async def read_frames(self, max_frames: int) -> np.ndarray:
        """Wait for the next frames and return ``(k, rows, cols)`` with ``1 <= k <= max_frames``."""
        ...

    async def disarm(self) -> None:
        """Stop acquiring (idempotent)."""
        ...
