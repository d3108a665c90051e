"""Strain-dependent disk contents for the fast model: a correction of its library.

The beam library holds multislice intensities ``I_g(k, t)`` of the unstrained cell. For a
strained crystal the fast model renders, with the ``"bloch"`` engine (the default, about 2 s per
grid point), ``I_g(k, t) + [B_g(k, t; e) - B_g(k, t; 0)]``, where ``B`` is the Bloch-wave model
of :mod:`sim_devices.bloch`; with the ``"multislice"`` engine, the strained periodic cell's own
multislice intensities ``M_g(k, t; e)`` of :mod:`sim_devices.cell_multislice` (at zero strain
the library itself; it holds where the projected Bloch-wave model does not, e.g. SrTiO3 [001] at
80 kV; 7 to 11 s per grid point on 2 CPU cores, 0.15 s on an H200 with ``device="cuda"``).
The correction is computed for *content strains* on a grid of step ``step`` per component (the
strain of each frame is rounded to the grid for its contents; its disks still sit exactly at its
own strain), on every second incident direction of the library and interpolated bilinearly in
between. The ``"nodes"`` engine reads the strained cell's intensities from 27 node strains
spanning the training range instead (:mod:`sim_devices.content_nodes`: 27 cells per library,
then milliseconds per grid point; closer to exact physics than the unstrained contents, not as
close as the cell at each grid point).

Measured against exact probe multislice (Si [110], 200 kV, 19.2 nm block; strain +-2 % in
every component, tilt 3 mrad), lattice-fit disk positions at 80 nm move from 0.092 / 0.120 px
(unstrained contents) to 0.079 / 0.075 px, and to 0.082 / 0.077 px with the content strain off
by half a 0.5 % step in every component. One correction costs about 2 s on 2 cores.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

import numpy as np
import torch

from .bloch import BlochWaves, bloch_waves
from .cbed_library import BeamLibrary
from .cell_multislice import CPU_CHUNK, StrainedCellMultislice, strained_cell_multislice
from .content_nodes import NODE_SPAN, ContentNodes, content_nodes, lagrange_weights

#: Content-strain grid step (strain fraction).
DEFAULT_STEP = 0.005
#: Content engines: Bloch waves of the projected crystal, multislice of the strained cell at
#: each grid point, or that multislice at 27 node strains, interpolated.
ENGINES = ("bloch", "multislice", "nodes")
#: The engines that run the strained cell's multislice.
CELL_ENGINES = ("multislice", "nodes")
#: Bloch-wave results kept in memory per process (about 13 MB each for Si [110] at 200 kV).
CACHE_SIZE = 48

_cache: OrderedDict[tuple, torch.Tensor] = OrderedDict()
_cache_lock = threading.Lock()


class StrainContents:
    """Bloch-wave content corrections of one beam library on a grid of strains.

    Parameters
    ----------
    library : BeamLibrary
        The multislice library to correct (its beams, incident directions and thicknesses).
    step : float
        Grid step of the content strain, per component.
    engine : str
        ``"bloch"``, ``"multislice"`` or ``"nodes"`` (see the module docstring).
    device : str or torch.device
        Where the multislice engines propagate their waves (``"cuda"`` on a GPU machine: about
        0.15 s per grid point on an H200, against 7 to 11 s on 2 CPU cores); the Bloch engine runs
        on the CPU.
    node_span : float
        Half-width of the ``"nodes"`` engine's node grid per strain component; content strains
        beyond it are refused.
    """

    def __init__(
        self,
        library: BeamLibrary,
        step: float = DEFAULT_STEP,
        engine: str = "bloch",
        device: str | torch.device = "cpu",
        node_span: float = NODE_SPAN,
    ) -> None:
        if not step > 0:
            raise ValueError(f"content strain step must be positive, got {step}")
        if engine not in ENGINES:
            raise ValueError(f"content engine must be one of {ENGINES}, got {engine!r}")
        device = torch.device(device)
        if engine == "bloch" and device.type != "cpu":
            raise ValueError(f"the Bloch content engine runs on the CPU, not {device}")
        spec = library.spec
        self.library, self.step, self.engine, self.device = library, float(step), engine, device
        self.node_span = float(node_span)
        self.bloch: BlochWaves | None = None
        self.cell: StrainedCellMultislice | None = None
        self._nodes: ContentNodes | None = None
        if engine == "bloch":
            self.bloch = bloch_waves(spec.material, spec.zone_axis, spec.voltage_kv)
            index = {tuple(int(v) for v in hk): i for i, hk in enumerate(self.bloch.hk)}
            rows = np.array([index.get(tuple(int(v) for v in hk), -1) for hk in library.hk])
        else:  # CELL_ENGINES
            self.cell = strained_cell_multislice(
                spec.material, spec.zone_axis, spec.voltage_kv, spec.settings
            )
            rows = np.arange(len(library.hk))  # every library beam is on the cell's grid
        self.in_basis = rows >= 0  # library beams the engine holds
        self.rows = rows[self.in_basis]
        k = library.k_mrad
        self.coarse_k = k[::2] if (len(k) - 1) % 2 == 0 else k
        kx, ky = np.meshgrid(self.coarse_k, self.coarse_k)
        #: ``(K, 2)`` incident directions (mrad) the engine computes: every second of the library's.
        self.directions = np.stack([kx.ravel(), ky.ravel()], axis=1)
        self._key = (spec.key(), self.step, engine, self.node_span if engine == "nodes" else None)

    def voxels(self, strain: np.ndarray) -> np.ndarray:
        """Grid indices ``(N, 3)`` of the content strains of ``(N, 3)`` strains."""
        return np.rint(np.asarray(strain, float) / self.step).astype(np.int64)

    def _engine_values(self, voxel: tuple[int, int, int]) -> torch.Tensor:
        key = (*self._key, voxel)
        with _cache_lock:
            if key in _cache:
                _cache.move_to_end(key)
                return _cache[key]
        strain = tuple(float(v) * self.step for v in voxel)
        if self.bloch is not None:
            values = self.bloch.intensities(
                strain, self.directions, self.library.thickness_nm, dtype=torch.complex64
            )[:, self.rows]  # (T, G_in, Kc*Kc)
        elif self.engine == "nodes":
            # a grid point up to half a step past the span holds strains inside it: read at the
            # span (further out is refused by the nodes)
            reach = self.node_span + self.step / 2
            inside = tuple(
                float(np.clip(v, -self.node_span, self.node_span)) if abs(v) <= reach else v
                for v in strain
            )
            weights = lagrange_weights(inside, self.node_span)  # refused before nodes are made
            values = self.nodes().combine(weights)
        else:
            on_cpu = self.device.type == "cpu"
            values = self.cell.intensities(
                strain,
                self.directions,
                self.exit_slices(),
                self.library.hk,
                chunk=CPU_CHUNK if on_cpu else len(self.directions),
                device=self.device,
            )
        n = len(self.coarse_k)
        out = torch.as_tensor(values).reshape(values.shape[0], values.shape[1], n, n)
        with _cache_lock:
            _cache[key] = out
            while len(_cache) > CACHE_SIZE:
                _cache.popitem(last=False)
        return out

    def nodes(self, progress: bool = False) -> ContentNodes:
        """The ``"nodes"`` engine's node intensities (computed on first use, then cached)."""
        if self._nodes is None:
            self._nodes = content_nodes(
                self.library.spec,
                self.cell,
                self.directions,
                self.exit_slices(),
                self.library.hk,
                span=self.node_span,
                device=self.device,
                progress=progress,
            )
        return self._nodes

    def exit_slices(self) -> np.ndarray:
        """Slice counts of the library's exit planes (it stores every ``thickness_step``)."""
        step = self.library.spec.thickness_step_slices
        return step * np.arange(1, len(self.library.thickness_nm) + 1)

    def correction(
        self, voxel: tuple[int, int, int], rows: np.ndarray | None = None
    ) -> torch.Tensor:
        """What to add to the library for the content strain ``voxel``, ``(T, G_in, K, K)``.

        Bloch waves: ``B(e) - B(0)`` for the library beams in the basis. Multislice (and its
        nodes): ``M(e) - I``, so that the library becomes the strained cell's own intensities
        ``M(e)``; at zero strain the two agree to the library's float16 storage, but a
        difference ``M(e) - M(0)`` computed on every second incident direction would keep the
        unstrained cell's finer detail in ``k``, which in thick SrTiO3 at 80 kV misleads more
        than it helps (an 80 nm crystal read 74 nm with it, 57 nm without; exact: 41 nm).
        ``rows`` selects some of those beams (indices into them) before interpolation.
        """
        voxel = tuple(int(v) for v in voxel)
        index = slice(None) if rows is None else torch.as_tensor(rows)
        n = len(self.library.k_mrad)
        if self.engine in CELL_ENGINES:
            values = self._engine_values(voxel)[:, index]
            if values.shape[-1] != n:
                values = torch.nn.functional.interpolate(
                    values, size=(n, n), mode="bilinear", align_corners=True
                )
            # every library beam is in the basis: rows index the library itself (no copy)
            return values - torch.as_tensor(self.library.intensity)[:, index]
        delta = self._engine_values(voxel)[:, index] - self._engine_values((0, 0, 0))[:, index]
        if delta.shape[-1] != n:
            delta = torch.nn.functional.interpolate(
                delta, size=(n, n), mode="bilinear", align_corners=True
            )
        return delta
