"""Precomputed beam intensities that make the fast CBED model exact for non-overlapping disks.

For a perfect crystal, each point of a CBED disk ``g`` is one incident plane-wave direction
``k`` of the probe, and its intensity is the intensity ``I_g(k, t)`` of beam ``g`` after
thickness ``t`` for a plane wave incident along ``k``. Where disks do not overlap the pattern is
therefore fully described by ``I_g(k, t)``, which abTEM computes once on the zone-axis unit cell
(tilted plane waves, tilt applied in the propagator) for a grid of ``k`` covering every
convergence angle and crystal tilt of interest, and every thickness at once (exit planes).
Crystal tilt then shifts ``k``; the convergence angle only crops the disks; strain moves the disks.

A library can also be computed by the strained-cell multislice of
:mod:`sim_devices.cell_multislice` at zero strain (``LibrarySpec(source="cell")``: about 40 s on
2 cores against 2.5 to 6.5 minutes with abTEM). It is abTEM's potential and the same multislice
on an exactly periodic cell, and agrees with abTEM's library to its float16 storage except
where abTEM's stacked cell puts an atom plane of Si [110] one slice late (beyond 200 slices,
see the tests). Training with strained-cell contents uses it: there every other content strain
comes from that cell too.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from multiprocessing import get_context
from pathlib import Path

import numpy as np

from .cbed_exact import MultisliceSettings, unit_cell_gpts
from .materials import zone_axis_crystal
from .optics import Beam

LIBRARY_FORMAT = 1
DARK_BEAM_FRACTION = 1e-3
#: What computes a library: abTEM's plane-wave multislice, or the strained-cell multislice at
#: zero strain.
SOURCES = ("abtem", "cell")


@dataclass(frozen=True)
class LibrarySpec:
    """What a beam-intensity library covers.

    Parameters
    ----------
    material, zone_axis : str
        Crystal and beam direction.
    voltage_kv : float
        Accelerating voltage.
    k_max_mrad : float
        Half-width of the square grid of incident directions; must exceed
        ``convergence + |tilt| + one detector pixel``.
    k_step_mrad : float
        Spacing of incident directions.
    thickness_max_nm : float
        Largest thickness stored.
    thickness_step_slices : int
        Exit plane every this many slices.
    max_angle_mrad : float
        Beams further than this from the optical axis are not stored.
    settings : MultisliceSettings
        Numerical settings shared with the exact model.
    source : str
        ``"abtem"`` (abTEM's plane-wave multislice) or ``"cell"`` (the strained-cell multislice
        at zero strain; see the module docstring).
    """

    material: str = "Si"
    zone_axis: str = "110"
    voltage_kv: float = 200.0
    k_max_mrad: float = 8.0
    k_step_mrad: float = 0.25
    thickness_max_nm: float = 85.0
    thickness_step_slices: int = 10
    max_angle_mrad: float = 40.0
    settings: MultisliceSettings = MultisliceSettings()
    source: str = "abtem"

    def __post_init__(self) -> None:
        if self.source not in SOURCES:
            raise ValueError(f"library source must be one of {SOURCES}, got {self.source!r}")

    def key(self) -> str:
        """Short content hash naming the cached file (the exact model's box does not matter)."""
        content = asdict(self)
        del content["settings"]["box_nm"]
        if self.source == "abtem":
            del content["source"]  # abTEM libraries keep the names they had before
        blob = json.dumps(content, sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:12]

    def filename(self) -> str:
        """File name of this library in a cache directory."""
        return f"cbed-{self.material}-{self.zone_axis}-{self.voltage_kv:g}kV-{self.key()}.npz"


@dataclass
class BeamLibrary:
    """Beam intensities ``I[t, g, ky, kx]`` on regular grids.

    Attributes
    ----------
    spec : LibrarySpec
        What was computed.
    hk : ndarray
        ``(G, 2)`` integer indices of the beams in the zone-axis cell's reciprocal lattice.
    g_inv_a : ndarray
        ``(G, 2)`` unstrained reciprocal vectors (x, y) in 1/Angstrom.
    k_mrad : ndarray
        Incident-direction grid (same along x and y).
    thickness_nm : ndarray
        Thicknesses of the stored exit planes.
    intensity : ndarray
        ``(T, G, K, K)`` float32, axis order (thickness, beam, k_y, k_x).
    """

    spec: LibrarySpec
    hk: np.ndarray
    g_inv_a: np.ndarray
    k_mrad: np.ndarray
    thickness_nm: np.ndarray
    intensity: np.ndarray

    def save(self, path: str | Path) -> Path:
        """Write the library to ``path`` (compressed npz, float16 intensities)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.npz")
        np.savez_compressed(
            tmp,
            format=np.array(LIBRARY_FORMAT),
            spec=np.array(json.dumps(asdict(self.spec))),
            hk=self.hk,
            g_inv_a=self.g_inv_a,
            k_mrad=self.k_mrad,
            thickness_nm=self.thickness_nm,
            intensity=self.intensity.astype(np.float16),
        )
        os.replace(tmp, path)  # readers never see a half-written library
        return path

    @classmethod
    def load(cls, path: str | Path) -> BeamLibrary:
        """Read a library written by :meth:`save`."""
        with np.load(path, allow_pickle=False) as data:
            if int(data["format"]) != LIBRARY_FORMAT:
                raise ValueError(
                    f"{path}: library format {int(data['format'])}, expected {LIBRARY_FORMAT}"
                )
            raw = json.loads(str(data["spec"]))
            raw["settings"] = MultisliceSettings(**raw["settings"])
            return cls(
                spec=LibrarySpec(**raw),
                hk=data["hk"],
                g_inv_a=data["g_inv_a"],
                k_mrad=data["k_mrad"],
                thickness_nm=data["thickness_nm"],
                intensity=data["intensity"].astype(np.float32),
            )


def cell_potential(cell, n_slices: int, exit_slices, gpts, settings: MultisliceSettings):
    """abTEM potential of a zone-axis ``cell`` repeated along the beam for ``n_slices`` slices.

    ``exit_slices`` are 1-based slice counts at which the wave is kept (exit planes).
    """
    import abtem

    slice_a = cell.cell.lengths()[2] / settings.slices_per_cell
    return abtem.Potential(
        cell * (1, 1, int(np.ceil(n_slices / settings.slices_per_cell))),
        gpts=tuple(int(n) for n in gpts),
        slice_thickness=slice_a,
        projection="infinite",
        parametrization=settings.parametrization,
        exit_planes=tuple(int(s) - 1 for s in exit_slices),
    )


def plane_wave_intensities(potential, voltage_kv: float, tilts_mrad: np.ndarray) -> np.ndarray:
    """Beam intensities ``(exit planes, tilts, nx, ny)`` of unit plane waves (FFT order)."""
    import abtem

    waves = abtem.PlaneWave(energy=voltage_kv * 1e3, tilt=tilts_mrad).multislice(potential)
    dp = waves.diffraction_patterns(max_angle="full", fftshift=False, renormalize=False)
    arr = np.asarray(dp.compute(progress_bar=False, scheduler="synchronous").array)
    arr = arr.reshape(-1, len(tilts_mrad), *potential.gpts)
    # unnormalised FFT: a unit plane wave carries (nx * ny)**2 in diffraction space
    return arr / float(potential.gpts[0] * potential.gpts[1]) ** 2


def _unit_cell_grid(spec: LibrarySpec):
    """The zone-axis unit cell, its lateral grid, stored exit slices and their thicknesses."""
    crystal = zone_axis_crystal(spec.material, spec.zone_axis)
    cell = crystal.unit_cell()
    settings = spec.settings
    slice_a = cell.cell.lengths()[2] / settings.slices_per_cell
    n_slices = int(np.ceil(spec.thickness_max_nm * 10.0 / slice_a))
    n_slices += (-n_slices) % spec.thickness_step_slices
    exit_slices = np.arange(spec.thickness_step_slices, n_slices + 1, spec.thickness_step_slices)
    gpts = tuple(int(n) for n in unit_cell_gpts(crystal, settings.sampling_a)[0])
    return cell, gpts, exit_slices, exit_slices * slice_a / 10.0


def _unit_cell_potential(spec: LibrarySpec):
    """The zone-axis unit cell repeated through the thickness, with the stored exit planes."""
    cell, gpts, exit_slices, thickness_nm = _unit_cell_grid(spec)
    potential = cell_potential(cell, int(exit_slices[-1]), exit_slices, gpts, spec.settings)
    return potential, gpts, thickness_nm


def _beam_intensities(spec: LibrarySpec, tilts: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """Intensities ``(T, beams, tilts)`` of the kept beams for plane waves at ``tilts`` (mrad)."""
    potential, _, _ = _unit_cell_potential(spec)
    arr = plane_wave_intensities(potential, spec.voltage_kv, tilts)  # (T, tilts, nx, ny)
    return arr[..., keep].transpose(0, 2, 1).astype(np.float32)


def _cell_intensities(spec: LibrarySpec, tilts: np.ndarray, beams: np.ndarray) -> np.ndarray:
    """Intensities ``(T, beams, tilts)`` from the strained-cell multislice at zero strain."""
    from .cell_multislice import CPU_CHUNK, strained_cell_multislice  # it imports this module

    cell = strained_cell_multislice(spec.material, spec.zone_axis, spec.voltage_kv, spec.settings)
    _, _, exit_slices, _ = _unit_cell_grid(spec)
    return cell.intensities((0.0, 0.0, 0.0), tilts, exit_slices, beams, chunk=CPU_CHUNK)


def _abtem_intensities(
    spec: LibrarySpec,
    tilts: np.ndarray,
    keep: np.ndarray,
    chunk: int,
    workers: int | None,
    progress: bool,
) -> np.ndarray:
    """Intensities ``(T, kept beams, tilts)`` from abTEM, chunks of tilts in parallel."""
    chunks = [tilts[lo : lo + chunk] for lo in range(0, len(tilts), chunk)]
    start = time.perf_counter()
    parts = []
    with ProcessPoolExecutor(
        max_workers=workers or os.cpu_count(), mp_context=get_context("spawn")
    ) as pool:
        for done, part in enumerate(
            pool.map(_beam_intensities, [spec] * len(chunks), chunks, [keep] * len(chunks)), 1
        ):
            parts.append(part)
            if progress:
                print(
                    f"  {min(done * chunk, len(tilts))}/{len(tilts)} incident directions, "
                    f"{time.perf_counter() - start:.0f} s",
                    flush=True,
                )
    return np.concatenate(parts, axis=2)


def build_library(
    spec: LibrarySpec, *, chunk: int = 256, workers: int | None = None, progress: bool = False
) -> BeamLibrary:
    """Compute a beam-intensity library (tilted plane waves on the unit cell).

    Parameters
    ----------
    spec : LibrarySpec
        Coverage, settings and what computes it (``spec.source``).
    chunk : int
        Incident directions per abTEM multislice batch (memory bound).
    workers : int, optional
        Processes computing abTEM's chunks in parallel (default: all cores); the strained-cell
        multislice runs in this process on torch's threads.
    progress : bool
        Print progress lines.
    """
    crystal = zone_axis_crystal(spec.material, spec.zone_axis)
    ax, ay = crystal.cell_lengths_a[:2]
    _, gpts, _, thickness_nm = _unit_cell_grid(spec)
    wavelength_a = Beam(voltage_kv=spec.voltage_kv).wavelength_nm * 10.0

    h = np.fft.fftfreq(gpts[0], 1.0 / gpts[0]).round().astype(int)
    k = np.fft.fftfreq(gpts[1], 1.0 / gpts[1]).round().astype(int)
    hh, kk = np.meshgrid(h, k, indexing="ij")
    g = np.stack([hh / ax, kk / ay], axis=-1)
    angle = np.hypot(g[..., 0], g[..., 1]) * wavelength_a * 1e3
    # beyond 2/3 of Nyquist abTEM's antialias aperture has removed the beams
    nyquist_fraction = np.maximum(np.abs(hh) / (gpts[0] / 2), np.abs(kk) / (gpts[1] / 2))
    keep = (angle <= spec.max_angle_mrad) & (nyquist_fraction < 2 / 3)

    n_k = int(round(2 * spec.k_max_mrad / spec.k_step_mrad)) + 1
    k_mrad = np.linspace(-spec.k_max_mrad, spec.k_max_mrad, n_k)
    kx, ky = np.meshgrid(k_mrad, k_mrad)  # [ky, kx]
    tilts = np.stack([kx.ravel(), ky.ravel()], axis=1)
    if spec.source == "cell":
        intensity = _cell_intensities(spec, tilts, np.stack([hh[keep], kk[keep]], axis=1))
    else:
        intensity = _abtem_intensities(spec, tilts, keep, chunk, workers, progress)
    intensity = intensity.reshape(len(thickness_nm), -1, n_k, n_k)

    # drop beams that stay dark: systematic absences of the projection, lit only by weak
    # upper-Laue-zone coupling (< 0.1 % of the incident beam anywhere in the library)
    bright = intensity.max(axis=(0, 2, 3)) >= DARK_BEAM_FRACTION
    return BeamLibrary(
        spec=spec,
        hk=np.stack([hh[keep], kk[keep]], axis=1)[bright],
        g_inv_a=g[keep][bright],
        k_mrad=k_mrad,
        thickness_nm=thickness_nm,
        intensity=intensity[:, bright],
    )


def cache_dir() -> Path:
    """Where built libraries are kept: ``$STEM_LOOP_CACHE`` or ``~/.cache/stem-loop``."""
    return Path(os.environ.get("STEM_LOOP_CACHE", Path.home() / ".cache" / "stem-loop"))


def _packaged_dir() -> Path:
    return Path(__file__).parent / "data"


def stored_library(spec: LibrarySpec) -> Path | None:
    """Where the library for ``spec`` is kept (shipped or cached), or None if it is not built."""
    for folder in (_packaged_dir(), cache_dir()):
        path = folder / spec.filename()
        if path.is_file():
            return path
    return None


def load_or_build(spec: LibrarySpec, *, progress: bool = True) -> BeamLibrary:
    """Return the library for ``spec``: shipped, cached, or built now and cached."""
    path = stored_library(spec)
    if path is not None:
        return BeamLibrary.load(path)
    if progress:
        print(
            f"building CBED beam library {spec.filename()} (one-off, a few minutes)...", flush=True
        )
    library = build_library(spec, progress=progress)
    library.save(cache_dir() / spec.filename())
    return library
