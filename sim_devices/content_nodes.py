"""Strained-cell disk contents at 27 node strains, interpolated in between.

The multislice content engine of :mod:`sim_devices.strain_contents` runs the strained cell's
multislice for every content-strain grid point a frame asks for: 7 to 11 s each on 2 CPU cores,
so the 1,536 blocks of the shipped training recipe would spend about 3.8 hours on them. The
``"nodes"`` engine runs it once per beam library at the 27 strains ``{-span, 0, +span}^3``
(``span``: the training range, 2 % per component) and reads any strain inside from the
triquadratic Lagrange polynomial through them (exact at the nodes and for any intensity
quadratic in each component): 27 cells per library, about 4 minutes on 2 cores.

Against exact probe multislice (the 64 held-out patterns at 80 kV, Si [110] and SrTiO3 [001],
10 to 80 nm, both held-out sets; ``benchmarks/content_nodes.py``), the fast model's median
chi^2 at 10^5 electrons is 3,693 with node contents, 3,393 with each crystal's own strained cell
on the 0.5 % grid (the multislice engine) and 4,871 with the unstrained library's contents: the
nodes keep about 70 % of what the strained cell gains. Lattice-fit disk positions agree with
exact to 0.060 px rms with the nodes, 0.063 px with the cell on the grid and 0.076 px with
unstrained contents; the largest difference is 0.135, 0.104 and 0.210 px.

The node intensities are cached beside the beam libraries (float16, as the libraries), one file
per library, strain span and direction grid, and read memory-mapped so that processes writing
training shards side by side share one copy. Each node is kept as it is computed, so an
interrupted computation resumes at the first missing node.
"""

from __future__ import annotations

import hashlib
import itertools
import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from .cbed_library import LibrarySpec, cache_dir
from .cell_multislice import CPU_CHUNK, StrainedCellMultislice

#: Half-width of the node grid per strain component: the training strain range.
NODE_SPAN = 0.02
#: Node levels per component, in units of the span.
NODE_LEVELS = (-1, 0, 1)
#: Version of the cached node files; a file of another version is recomputed.
NODES_FORMAT = 1
#: Strains this far past the span still count as inside (float rounding of grid points).
SPAN_TOLERANCE = 1e-9


def node_strains(span: float = NODE_SPAN) -> np.ndarray:
    """The 27 node strains ``(27, 3)`` (``exx, eyy, exy``), in the order of the node values."""
    levels = list(itertools.product(NODE_LEVELS, repeat=3))
    return np.array(levels, dtype=np.float64) * span


def _quadratic_weights(x: float) -> np.ndarray:
    """Lagrange weights of the levels -1, 0, 1 at ``x``."""
    return np.array([x * (x - 1.0) / 2.0, (1.0 - x) * (1.0 + x), x * (x + 1.0) / 2.0])


def lagrange_weights(strain: tuple[float, float, float], span: float = NODE_SPAN) -> np.ndarray:
    """Weights ``(27,)`` of the node values that interpolate them at ``strain``.

    Raises
    ------
    ValueError
        If a component lies outside ``+-span`` (the nodes would be extrapolated).
    """
    x = np.asarray(strain, dtype=np.float64) / span
    if x.shape != (3,):
        raise ValueError(f"strain must be (exx, eyy, exy), got shape {x.shape}")
    if np.any(np.abs(x) > 1.0 + SPAN_TOLERANCE / span):
        raise ValueError(
            f"content strain {tuple(float(v) for v in strain)} lies outside the nodes' "
            f"+-{span:g} per component; use the multislice content engine beyond it"
        )
    wx, wy, wz = (_quadratic_weights(float(v)) for v in x)
    return np.einsum("i,j,k->ijk", wx, wy, wz).ravel()


class ContentNodes:
    """Intensities of the strained cell at the 27 node strains, and their interpolation.

    Parameters
    ----------
    values : ndarray
        ``(27, T, G, K)`` intensities at :func:`node_strains` (any float dtype; a memory map
        is read in place).
    span : float
        Half-width of the node grid per strain component.
    """

    def __init__(self, values: np.ndarray, span: float = NODE_SPAN) -> None:
        if values.ndim != 4 or len(values) != len(NODE_LEVELS) ** 3:
            raise ValueError(f"node values must be (27, T, G, K), got {values.shape}")
        if not span > 0:
            raise ValueError(f"node span must be positive, got {span}")
        self.values, self.span = values, float(span)

    def at(self, strain: tuple[float, float, float]) -> np.ndarray:
        """Interpolated intensities ``(T, G, K)`` float32 at ``strain`` (inside the span)."""
        return self.combine(lagrange_weights(strain, self.span))

    def combine(self, weights: np.ndarray) -> np.ndarray:
        """``sum_i weights[i] * values[i]``, ``(T, G, K)`` float32 (weights of the 27 nodes)."""
        out = np.zeros(self.values.shape[1:], dtype=np.float32)
        for weight, node in zip(weights, self.values, strict=True):
            if weight != 0.0:
                out += np.float32(weight) * node.astype(np.float32)
        return out


def nodes_path(
    spec: LibrarySpec,
    directions: np.ndarray,
    exit_slices: np.ndarray,
    beams: np.ndarray,
    span: float = NODE_SPAN,
) -> Path:
    """Cache file of one library's nodes on one grid of directions, exit planes and beams."""
    digest = hashlib.sha256()
    for array in (
        np.asarray(directions, np.float64),
        np.asarray(exit_slices, np.int64),
        np.asarray(beams, np.int64),
    ):
        digest.update(np.ascontiguousarray(array).tobytes())
    digest.update(f"{span!r}-{NODES_FORMAT}".encode())
    # the nodes do not depend on what computed the library's own intensities
    stem = replace(spec, source="abtem").filename().removesuffix(".npz")
    return cache_dir() / "content-nodes" / f"{stem}-span{span:g}-{digest.hexdigest()[:12]}.npy"


def content_nodes(
    spec: LibrarySpec,
    cell: StrainedCellMultislice,
    directions: np.ndarray,
    exit_slices: np.ndarray,
    beams: np.ndarray,
    *,
    span: float = NODE_SPAN,
    device: str | torch.device = "cpu",
    progress: bool = False,
) -> ContentNodes:
    """The library's content nodes: read from the cache, or computed (resumably) and cached.

    Parameters
    ----------
    spec : LibrarySpec
        The beam library the contents belong to (names the cache file).
    cell : StrainedCellMultislice
        Its strained-cell multislice.
    directions, exit_slices, beams
        As :meth:`StrainedCellMultislice.intensities` takes them.
    span : float
        Half-width of the node grid per strain component.
    device : str or torch.device
        Where the node multislices run.
    progress : bool
        Print a line per node computed.
    """
    path = nodes_path(spec, directions, exit_slices, beams, span)
    if not path.is_file():
        _compute(path, cell, directions, exit_slices, beams, span, torch.device(device), progress)
    return ContentNodes(np.load(path, mmap_mode="r"), span)


def _compute(
    path: Path,
    cell: StrainedCellMultislice,
    directions: np.ndarray,
    exit_slices: np.ndarray,
    beams: np.ndarray,
    span: float,
    device: torch.device,
    progress: bool,
) -> None:
    parts = path.with_suffix(".parts")
    parts.mkdir(parents=True, exist_ok=True)
    chunk = CPU_CHUNK if device.type == "cpu" else len(directions)
    for i, strain in enumerate(node_strains(span)):
        part = parts / f"node{i:02d}.npy"
        if part.is_file():
            continue
        values = cell.intensities(
            tuple(float(v) for v in strain),
            directions,
            exit_slices,
            beams,
            chunk=chunk,
            device=device,
        )
        _save_atomically(part, values.astype(np.float16))
        if progress:
            print(f"  content node {i + 1}/27 of {path.name}", flush=True)
    if path.is_file():  # another process finished them meanwhile
        return
    values = np.stack([np.load(parts / f"node{i:02d}.npy") for i in range(len(NODE_LEVELS) ** 3)])
    _save_atomically(path, values)
    for part in parts.glob("node*.npy"):
        part.unlink(missing_ok=True)
    try:
        parts.rmdir()
    except OSError:
        pass  # another process is still writing into it


def _save_atomically(path: Path, values: np.ndarray) -> None:
    """Write ``path`` so that a reader in another process never sees half of it."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as handle:
        np.save(handle, values)
    os.replace(tmp, path)
