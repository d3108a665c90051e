"""One beam-deflection axis of the scan generator, movable in nm."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from bluesky.protocols import Locatable, Location, Stoppable
from ophyd_async.core import AsyncStatus, StandardReadable, soft_signal_r_and_setter
from ophyd_async.core import StandardReadableFormat as Format


class ScanAxis(StandardReadable, Locatable[float], Stoppable):
    """A movable probe-position axis (``scan_gen.x`` or ``scan_gen.y``).

    It reads as one value named like the axis (``scan_gen-x``), in nm. ``set`` validates the
    target synchronously, so a position outside the field of view, NaN or inf raises
    ``ValueError`` before any status exists and before the beam moves.

    Parameters
    ----------
    check : callable
        ``check(value) -> float``: validate a target and return it, or raise ``ValueError``.
    move : callable
        ``move(value) -> awaitable``: move the beam to a validated target and update
        :meth:`update_readback`.
    name : str
        Device name.
    """

    def __init__(
        self,
        check: Callable[[float], float],
        move: Callable[[float], Awaitable[None]],
        name: str = "",
    ) -> None:
        self._check = check
        self._move = move
        with self.add_children_as_readables(Format.HINTED_SIGNAL):
            self.readback, self._set_readback = soft_signal_r_and_setter(
                float, 0.0, units="nm", precision=3
            )
        self.setpoint, self._set_setpoint = soft_signal_r_and_setter(float, 0.0, units="nm")
        super().__init__(name=name)

    def set_name(self, name: str, *, child_name_separator: str | None = None) -> None:
        super().set_name(name, child_name_separator=child_name_separator)
        # Read as the axis itself: "scan_gen-x", not "scan_gen-x-readback".
        self.readback.set_name(name)

    def update_readback(self, value: float) -> None:
        """Record where the beam is along this axis (called by the scan generator)."""
        self._set_readback(value)

    def set(self, value: float) -> AsyncStatus:
        """Move to ``value`` nm; raises ``ValueError`` at once if it is not reachable."""
        target = self._check(value)
        self._set_setpoint(target)
        return AsyncStatus(self._move(target), name=self.name)

    async def locate(self) -> Location[float]:
        """Where the axis was asked to go and where the beam is."""
        return Location(
            setpoint=await self.setpoint.get_value(), readback=await self.readback.get_value()
        )

    async def stop(self, success: bool = True) -> None:
        """Moves are single deflector writes; there is nothing to stop."""
