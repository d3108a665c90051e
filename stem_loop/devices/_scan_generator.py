"""The scan generator: beam position in step mode, a position list in batch (fly) mode."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import numpy as np
from bluesky.protocols import (
    Collectable,
    Flyable,
    Preparable,
    StreamAsset,
    WritesStreamAssets,
)
from event_model import DataKey
from ophyd_async.core import (
    AsyncStatus,
    PathProvider,
    StandardReadable,
    StreamResourceInfo,
    soft_signal_r_and_setter,
    soft_signal_rw,
)
from ophyd_async.core import StandardReadableFormat as Format

from ._backends import ScanBackend
from ._hdf5_stream_file import Hdf5StreamFile
from ._scan_axis import ScanAxis
from ._scan_path import ScanPath
from ._stream_provider import Hdf5StreamProvider

#: Datasets of the positions file written in batch mode.
X_DATASET = "/entry/scan/x_nm"
Y_DATASET = "/entry/scan/y_nm"
_POSITION_CHUNK = 4096


class ScanGenerator(StandardReadable, Preparable, Flyable, Collectable, WritesStreamAssets):
    """A 4D-STEM scan generator with movable ``x``/``y`` axes in nm and a batch mode.

    Step mode: ``scan_gen.x`` and ``scan_gen.y`` are ordinary movables (``bps.mv``,
    ``bp.grid_scan``); each reads as ``scan_gen-x`` / ``scan_gen-y``. After each move the
    generator waits ``settle_s``.

    Batch (fly) mode: ``prepare(ScanPath(x, y))`` uploads a position list, ``kickoff`` starts
    it (the engine triggers the detector once per position), ``complete`` finishes when all
    positions are visited. The visited positions are written to an HDF5 file and collected as
    ``scan_gen-x`` / ``scan_gen-y`` StreamDatum ranges, so they land row for row beside the
    detector's frames when both are collected into one stream.

    Every position, in both modes, is validated by the backend before the beam moves: a
    position outside the field of view, NaN or inf raises ``ValueError`` and nothing moves.

    Parameters
    ----------
    backend : ScanBackend
        The scan engine (see :class:`~stem_loop.devices.ScanBackend` for how a real one
        plugs in; :class:`sim_devices.backends.SimScanBackend` drives the simulation).
    path_provider : PathProvider
        Where batch mode writes its positions file.
    name : str
        Device name; the contract name is ``scan_gen``.
    """

    def __init__(self, backend: ScanBackend, path_provider: PathProvider, name: str = "") -> None:
        self._backend = backend
        self._path_provider = path_provider
        self._position = (0.0, 0.0)
        self._path: ScanPath | None = None
        self._offset = 0
        self._file: Hdf5StreamFile | None = None
        self._provider: Hdf5StreamProvider | None = None
        self._rows_written, self._set_rows_written = soft_signal_r_and_setter(int, 0)
        with self.add_children_as_readables():
            self.x = ScanAxis(lambda v: self._check_axis(0, v), lambda v: self._move_axis(0, v))
            self.y = ScanAxis(lambda v: self._check_axis(1, v), lambda v: self._move_axis(1, v))
        with self.add_children_as_readables(Format.CONFIG_SIGNAL):
            self.dwell_s = soft_signal_rw(float, 0.0, units="s")
            self.settle_s = soft_signal_rw(float, 0.0, units="s")
        super().__init__(name=name)
        self._stage_funcs += (self._on_stage,)
        self._unstage_funcs += (self._on_unstage,)

    # -- validation --------------------------------------------------------------------------
    @property
    def field_of_view_nm(self) -> tuple[float, float]:
        """Scan field ``(width_x, height_y)`` in nm."""
        return self._backend.field_of_view_nm

    def check_positions(self, x_nm, y_nm) -> tuple[np.ndarray, np.ndarray]:
        """Validate probe positions without moving; raise ``ValueError`` naming the bad one."""
        return self._backend.check_positions(x_nm, y_nm)

    def _check_axis(self, axis: int, value: float) -> float:
        target = list(self._position)
        target[axis] = value
        try:
            self._backend.check_positions(np.array([target[0]]), np.array([target[1]]))
        except ValueError as err:
            raise ValueError(
                f"{self.name}: refused to move {'xy'[axis]} to {value!r} nm: {err}"
            ) from None
        return float(value)

    # -- step mode ---------------------------------------------------------------------------
    async def _move_axis(self, axis: int, value: float) -> None:
        await self._backend.move_axis("xy"[axis], value)
        settle = await self.settle_s.get_value()
        if settle > 0:
            await asyncio.sleep(settle)
        await self._update_position()

    async def _update_position(self) -> None:
        x, y = await self._backend.get_position()
        self._position = (x, y)
        self.x.update_readback(x)
        self.y.update_readback(y)

    # -- batch (fly) mode ----------------------------------------------------------------------
    def prepare(self, value: ScanPath) -> AsyncStatus:
        """Validate and upload a position list; ``ValueError`` at once if any is unreachable."""
        x, y = self._backend.check_positions(value.x_nm, value.y_nm)
        return AsyncStatus(self._prepare(ScanPath(x, y, value.dwell_s)), name=self.name)

    async def _prepare(self, path: ScanPath) -> None:
        await self._record_visited()  # a previous path of this stage, if any
        dwell = path.dwell_s if path.dwell_s is not None else await self.dwell_s.get_value()
        await self._backend.load_path(path.x_nm, path.y_nm, dwell)
        if self._file is None:
            self._open_file()
        assert self._file is not None
        self._path = path
        # Paths prepared within one stage append to one file and one pair of resources.
        self._offset = self._file.rows(X_DATASET)

    def _open_file(self) -> None:
        info = self._path_provider(self.name)
        chunk = _POSITION_CHUNK
        self._file = Hdf5StreamFile(
            info.directory_path / f"{info.filename}.h5",  # type: ignore[arg-type]
            {X_DATASET: ((), np.dtype("<f8"), chunk), Y_DATASET: ((), np.dtype("<f8"), chunk)},
        )
        self._set_rows_written(0)
        resources = [
            StreamResourceInfo(
                data_key=axis.name,
                shape=(),
                chunk_shape=(chunk,),
                dtype_numpy="<f8",
                parameters={"dataset": dataset},
            )
            for axis, dataset in ((self.x, X_DATASET), (self.y, Y_DATASET))
        ]
        self._provider = Hdf5StreamProvider(
            self._file, f"{info.directory_uri}{info.filename}.h5", resources, self._rows_written
        )

    @AsyncStatus.wrap
    async def kickoff(self) -> None:
        """Start stepping through the prepared positions."""
        if self._path is None:
            raise RuntimeError(f"{self.name}: prepare(ScanPath(...)) before kickoff")
        await self._backend.start_path()

    @AsyncStatus.wrap
    async def complete(self) -> None:
        """Finish once every position of the path has been visited."""
        await self._backend.wait_path()
        await self._record_visited()
        await self._update_position()

    async def _record_visited(self) -> int:
        if self._file is None or self._file.closed:
            return 0
        start = self._file.rows(X_DATASET)
        if self._path is not None:
            done = self._offset + min(await self._backend.positions_done(), len(self._path))
            if done > start:
                path_rows = slice(start - self._offset, done - self._offset)
                self._file.append(X_DATASET, self._path.x_nm[path_rows])
                self._file.append(Y_DATASET, self._path.y_nm[path_rows])
                self._set_rows_written(done)
        return self._file.rows(X_DATASET)

    async def describe_collect(self) -> dict[str, DataKey]:
        """Data keys ``<name>-x`` and ``<name>-y``, external (``STREAM:``) in batch mode."""
        if self._provider is None:
            raise RuntimeError(f"{self.name}: prepare(ScanPath(...)) before describe_collect")
        return await self._provider.make_datakeys(1)

    async def get_index(self) -> int:
        """Number of positions visited (and written) so far."""
        return await self._record_visited()

    async def collect_asset_docs(self, index: int | None = None) -> AsyncIterator[StreamAsset]:
        """StreamResource (first time) and StreamDatum for positions up to ``index``."""
        written = await self.get_index()
        if self._provider is None:
            return
        index = written if index is None else min(index, written)
        async for doc in self._provider.make_stream_docs(index, 1):
            yield doc

    # -- staging ----------------------------------------------------------------------------
    @AsyncStatus.wrap
    async def _on_stage(self) -> None:
        await self._backend.stop()
        self._close_file()
        await self._update_position()

    @AsyncStatus.wrap
    async def _on_unstage(self) -> None:
        await self._backend.stop()
        await self._record_visited()
        self._close_file()
        await self._update_position()

    def _close_file(self) -> None:
        if self._file is not None:
            self._file.close()
        self._file = None
        self._provider = None
        self._path = None
        self._offset = 0
