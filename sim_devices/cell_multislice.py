"""Plane-wave multislice of a homogeneously strained crystal on its own periodic cell.

A homogeneous in-plane strain ``F = I + e`` leaves the crystal periodic: in fractional
coordinates of the strained cell every atom keeps its place, and only the metric changes. So the
multislice of the strained crystal runs on the *same* fractional grid as the unstrained one,
with

* each slice's projected potential ``V_s(g) = sum_species V0_s,species(g0) f(|g|) / f(|g0|)
  / det F`` (the same atoms spread over a larger or smaller area, each form factor read at the
  strained ``g = F^-T g0``), where ``V0`` is abTEM's own infinite-projection potential of the
  unstrained cell, species by species, so that at zero strain this *is* abTEM's potential;
* the Fresnel propagator and the crystal-tilt phase evaluated at the strained ``g``, with
  abTEM's antialias aperture (2/3 of Nyquist) on the unstrained grid.

This is what abTEM computes for the beam library (:mod:`sim_devices.cbed_library`), done for a
strained, generally sheared cell that abTEM's orthogonal cells cannot hold. It includes the
slice structure along the beam (upper-Laue-zone coupling), which the projected Bloch-wave model
of :mod:`sim_devices.bloch` leaves out: for SrTiO3 [001] at 80 kV that model's transmitted beam
differs from multislice by up to a factor of two in thick crystals, so its strain corrections
are not valid there.

Both crystals have a two-fold axis along the beam (each slice is symmetric under ``r -> t - r``
for one ``t``; :func:`two_fold_axis` checks the slice potentials). A homogeneous strain keeps it,
so the intensity of beam ``g`` for a wave incident along ``k`` equals that of ``-g`` along
``-k``: of a set of incident directions closed under ``k -> -k`` only half are propagated.

Everything abTEM contributes (the species' potentials, each species' form factor tabulated in
``|g|``, the grid and the electron's wavelength and interaction constant) is a small *state*
that :func:`strained_cell_multislice` caches beside the beam libraries, so a machine without
abTEM (a GPU node) can run the strained-cell multislice from the cache alone.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import asdict
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from .cbed_exact import MultisliceSettings, unit_cell_gpts
from .cbed_library import cache_dir
from .materials import zone_axis_crystal
from .optics import Beam

#: Version of the saved state; a file of another version is rebuilt.
CELL_FORMAT = 1
#: Samples of each species' tabulated form factor, evenly in |g| from 0 to FACTOR_REACH times
#: the grid's largest |g| (linear interpolation errs by < 1e-5 of the factor; see the tests).
FACTOR_POINTS = 16384
FACTOR_REACH = 1.25
#: Incident directions a CPU propagates together: 32 waves of a cell stay in cache (10 to 25 %
#: faster than 256 on 2 cores).
CPU_CHUNK = 32


class StrainedCellMultislice:
    """Plane-wave multislice of one zone-axis crystal at one voltage, at any in-plane strain.

    Parameters
    ----------
    material, zone_axis : str
        Crystal and beam direction (the orthogonal zone-axis cell of the beam library).
    voltage_kv : float
        Accelerating voltage.
    settings : MultisliceSettings, optional
        Sampling, slices per cell and parametrization (those of the beam library).
    dtype : torch.dtype
        Complex dtype of the waves.
    """

    def __init__(
        self,
        material: str,
        zone_axis: str,
        voltage_kv: float,
        settings: MultisliceSettings | None = None,
        *,
        dtype: torch.dtype = torch.complex64,
    ) -> None:
        import abtem
        from abtem.core.energy import energy2sigma, energy2wavelength
        from abtem.parametrizations import validate_parametrization

        settings = settings or MultisliceSettings()
        crystal = zone_axis_crystal(material, zone_axis)
        cell = crystal.unit_cell()
        gpts, lengths = unit_cell_gpts(crystal, settings.sampling_a)
        gpts = (int(gpts[0]), int(gpts[1]))
        slice_a = lengths[2] / settings.slices_per_cell
        energy = Beam(voltage_kv=voltage_kv).energy_ev
        g_max = np.hypot(*(np.asarray(gpts) / 2 / lengths[:2]))
        factor_g = np.linspace(0.0, FACTOR_REACH * g_max, FACTOR_POINTS)

        parametrization = validate_parametrization(settings.parametrization)
        symbols = np.array(cell.get_chemical_symbols())
        species, potentials, tables = sorted(set(symbols)), [], []
        for symbol in species:
            potential = abtem.Potential(
                cell[symbols == symbol],
                gpts=gpts,
                slice_thickness=slice_a,
                projection="infinite",
                parametrization=settings.parametrization,
            )
            array = np.asarray(potential.build().compute(progress_bar=False).array, float)
            if array.shape[0] != settings.slices_per_cell:
                raise RuntimeError(f"abTEM made {array.shape[0]} slices of the {symbol} cell")
            potentials.append(np.fft.fft2(array))
            factor = parametrization.projected_scattering_factor(symbol)
            tables.append(np.asarray(factor(factor_g**2), float))

        # abTEM's antialias aperture on the unstrained grid (cutoff 2/3 Nyquist, cosine taper)
        sampling = lengths[:2] / np.asarray(gpts)
        cutoff = abtem.config.get("antialias.cutoff") / sampling.max() / 2
        taper = abtem.config.get("antialias.taper") / sampling.max()
        self._setup(
            dict(
                format=np.array(CELL_FORMAT),
                identity=np.array(_identity(material, zone_axis, voltage_kv, settings)),
                gpts=np.array(gpts),
                lengths=np.asarray(lengths[:2], float),
                slice_a=np.array(slice_a),
                wavelength_a=np.array(float(energy2wavelength(energy))),
                sigma=np.array(float(energy2sigma(energy))),
                antialias=np.array([cutoff, taper]),
                species=np.array(species),
                potentials=np.stack(potentials),
                factor_g=factor_g,
                factor_tables=np.stack(tables),
            ),
            dtype,
        )

    def _setup(self, state: dict[str, np.ndarray], dtype: torch.dtype) -> None:
        """Derive everything from ``state`` (what :meth:`state` returns)."""
        self._state = state
        identity = json.loads(str(state["identity"]))
        self.material, self.zone_axis = identity["material"], identity["zone_axis"]
        self.voltage_kv = identity["voltage_kv"]
        self.settings = MultisliceSettings(**identity["settings"])
        self.gpts = tuple(int(n) for n in state["gpts"])
        self.lengths = np.asarray(state["lengths"], float)
        self.slice_a = float(state["slice_a"])
        self.wavelength_a = float(state["wavelength_a"])
        self.sigma = float(state["sigma"])
        self.dtype = dtype
        self.real_dtype = torch.float64 if dtype == torch.complex128 else torch.float32

        h = np.fft.fftfreq(self.gpts[0], 1.0 / self.gpts[0]).round()
        k = np.fft.fftfreq(self.gpts[1], 1.0 / self.gpts[1]).round()
        self.hk = np.stack(np.meshgrid(h, k, indexing="ij"), axis=-1)  # (nx, ny, 2) indices
        self.g0 = self.hk / self.lengths  # unstrained reciprocal vectors, 1/A
        r = np.sqrt(np.sum(self.g0**2, axis=-1))
        cutoff, taper = (float(v) for v in state["antialias"])
        aperture = np.where(
            r > cutoff - taper, 0.5 * (1 + np.cos(np.pi * (r - cutoff + taper) / taper)), 1.0
        )
        aperture[r > cutoff] = 0.0
        self.aperture = torch.as_tensor(aperture, dtype=self.real_dtype)
        self._f0 = [np.maximum(self._factor(i, r), 1e-30) for i in range(len(state["species"]))]
        #: Each slice is symmetric about one axis along the beam: ``I(g; k) = I(-g; -k)``.
        self.two_fold = two_fold_axis(state["potentials"])

    def _factor(self, species: int, g: np.ndarray) -> np.ndarray:
        """Projected scattering factor of one species at ``|g|`` (1/A), from its table."""
        table_g = self._state["factor_g"]
        if np.max(g) > table_g[-1]:
            raise ValueError(
                f"|g| = {np.max(g):.3f} 1/A is beyond the tabulated form factors "
                f"({table_g[-1]:.3f} 1/A): strain too large"
            )
        return np.interp(g, table_g, self._state["factor_tables"][species])

    def state(self) -> dict[str, np.ndarray]:
        """Everything the model needs, as arrays (no abTEM needed to use it again)."""
        return dict(self._state)

    @classmethod
    def from_state(
        cls, state: dict[str, np.ndarray], *, dtype: torch.dtype = torch.complex64
    ) -> StrainedCellMultislice:
        """The model of a saved :meth:`state` (abTEM is not imported)."""
        if int(state["format"]) != CELL_FORMAT:
            raise ValueError(
                f"strained-cell state format {int(state['format'])}, expected {CELL_FORMAT}"
            )
        model = cls.__new__(cls)
        model._setup(dict(state), dtype)
        return model

    def save(self, path: str | Path) -> Path:
        """Write the state to ``path`` (npz; written whole, then renamed into place)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp.npz")
        np.savez(tmp, **self._state)
        os.replace(tmp, path)
        return path

    @classmethod
    def load(
        cls, path: str | Path, *, dtype: torch.dtype = torch.complex64
    ) -> StrainedCellMultislice:
        """Read a state written by :meth:`save`."""
        with np.load(path, allow_pickle=False) as data:
            return cls.from_state({k: data[k] for k in data.files}, dtype=dtype)

    def reciprocal(self, strain: tuple[float, float, float]) -> np.ndarray:
        """Strained reciprocal vectors ``F^-T g0`` on the FFT grid, ``(nx, ny, 2)`` in 1/A."""
        exx, eyy, exy = strain
        deform = np.array([[1.0 + exx, exy], [exy, 1.0 + eyy]])
        return self.g0 @ np.linalg.inv(deform)  # F symmetric: rows g0^T F^-1 = (F^-T g0)^T

    def slice_potentials(self, strain: tuple[float, float, float]) -> np.ndarray:
        """Projected potential of each slice of the strained cell, ``(S, nx, ny)`` (abTEM units)."""
        exx, eyy, exy = strain
        det = (1.0 + exx) * (1.0 + eyy) - exy**2
        g = np.sqrt(np.sum(self.reciprocal(strain) ** 2, axis=-1))
        total = sum(
            v0 * (self._factor(i, g) / f0)[None]
            for i, (v0, f0) in enumerate(zip(self._state["potentials"], self._f0, strict=True))
        )
        return np.fft.ifft2(total).real / det

    def intensities(
        self,
        strain: tuple[float, float, float],
        tilts_mrad: np.ndarray,
        exit_slices: Sequence[int],
        beams: np.ndarray,
        *,
        chunk: int = CPU_CHUNK,
        device: str | torch.device = "cpu",
        use_two_fold: bool = True,
    ) -> np.ndarray:
        """Beam intensities of unit plane waves incident along ``tilts_mrad``.

        Parameters
        ----------
        strain : tuple of float
            ``(exx, eyy, exy)`` of the crystal.
        tilts_mrad : ndarray
            ``(K, 2)`` incident directions (crystal tilt), as abTEM's plane-wave ``tilt``.
        exit_slices : sequence of int
            Slice counts (1-based) at which the intensities are kept, increasing.
        beams : ndarray
            ``(G, 2)`` integer beam indices ``(h, k)`` of the zone-axis cell.
        chunk : int
            Incident directions propagated together (on a GPU: all of them).
        device : str or torch.device
            Where the waves are propagated (``"cuda"`` on a GPU machine: the work is batched
            FFTs of small cells).
        use_two_fold : bool
            ``False`` propagates every direction even where :attr:`two_fold` would let their
            opposites stand in (to check the two agree, or time the difference).

        Returns
        -------
        ndarray
            ``(len(exit_slices), G, K)`` float32 fractions of the incident beam.

        Notes
        -----
        With :attr:`two_fold`, a direction whose opposite is also asked for is not propagated:
        its beam ``g`` is read as beam ``-g`` of the opposite one (a symmetric grid of
        directions costs half).
        """
        exits = np.asarray(exit_slices, dtype=int)
        if exits.ndim != 1 or len(exits) == 0 or np.any(np.diff(exits) <= 0) or exits[0] < 1:
            raise ValueError("exit_slices must be increasing slice counts >= 1")
        tilts = np.atleast_2d(np.asarray(tilts_mrad, float))
        beams = np.asarray(beams, dtype=int)
        if self.two_fold and use_two_fold:
            source = opposite_directions(tilts)
            if np.any(source != np.arange(len(tilts))):
                run = np.unique(source)
                both = np.unique(np.concatenate([beams, -beams]), axis=0)
                values = self._propagate(strain, tilts[run], exits, both, chunk, device)
                index = {tuple(hk): i for i, hk in enumerate(both.tolist())}
                plus = np.array([index[tuple(hk)] for hk in beams.tolist()])
                minus = np.array([index[tuple(hk)] for hk in (-beams).tolist()])
                column = np.searchsorted(run, source)  # each direction's propagated one
                mirrored = source != np.arange(len(tilts))
                out = values[:, plus][:, :, column]
                out[:, :, mirrored] = values[:, minus][:, :, column[mirrored]]
                return out
        return self._propagate(strain, tilts, exits, beams, chunk, device)

    def _propagate(
        self,
        strain: tuple[float, float, float],
        tilts: np.ndarray,
        exits: np.ndarray,
        beams: np.ndarray,
        chunk: int,
        device: str | torch.device,
    ) -> np.ndarray:
        """:meth:`intensities`, every direction propagated."""
        nx, ny = self.gpts
        flat = torch.as_tensor((beams[:, 0] % nx) * ny + beams[:, 1] % ny)

        potentials = self.slice_potentials(strain)
        transmission = np.exp(1j * self.sigma * potentials)
        transmission = np.fft.ifft2(np.fft.fft2(transmission) * self.aperture.numpy()[None])
        transmission = torch.as_tensor(transmission, dtype=self.dtype, device=device)

        g = torch.as_tensor(self.reciprocal(strain), dtype=torch.float64, device=device)
        dz = self.slice_a
        fresnel = torch.polar(
            self.aperture.to(device=device, dtype=torch.float64),
            -np.pi * self.wavelength_a * dz * (g**2).sum(-1),
        )
        flat = flat.to(device)
        out = np.empty((len(exits), len(beams), len(tilts)), dtype=np.float32)
        norm = float(nx * ny) ** 2
        slices_per_cell = transmission.shape[0]
        for lo in range(0, len(tilts), chunk):
            tan = torch.as_tensor(
                np.tan(tilts[lo : lo + chunk] * 1e-3), dtype=torch.float64, device=device
            )
            phase = -2 * np.pi * dz * (tan[:, None, None, :] * g[None]).sum(-1)
            propagator = (fresnel[None] * torch.polar(torch.ones_like(phase), phase)).to(self.dtype)
            wave = torch.ones((len(tan), nx, ny), dtype=self.dtype, device=device)
            kept = []
            for n in range(1, int(exits[-1]) + 1):
                wave = wave * transmission[(n - 1) % slices_per_cell]
                spectrum = torch.fft.fft2(wave) * propagator
                if n == exits[len(kept)]:
                    kept.append(spectrum.reshape(len(tan), -1)[:, flat].abs().square())
                wave = torch.fft.ifft2(spectrum)
            values = torch.stack(kept).transpose(1, 2) / norm  # (exits, G, chunk)
            out[:, :, lo : lo + chunk] = values.cpu().numpy()
        return out


def two_fold_axis(potentials: np.ndarray, tolerance: float = 1e-9) -> bool:
    """Whether every slice potential is symmetric under ``r -> t - r`` for one common ``t``
    (a two-fold axis along the beam through ``t / 2``).

    ``potentials`` are the spectra ``(..., nx, ny)`` (species, slices) of real potentials.
    The self-convolution ``sum_r V(r) V(t - r)`` reaches ``sum_r V(r)^2`` only where ``V(t -
    r) = V(r)`` (Cauchy-Schwarz), so the summed self-convolutions reach the summed norms at a
    common ``t`` exactly when every slice has the axis; grid-sampled symmetry needs ``t`` on
    the grid, where the inverse FFT evaluates it.
    """
    spectra = np.asarray(potentials).reshape(-1, *np.shape(potentials)[-2:])
    pixels = spectra.shape[-1] * spectra.shape[-2]
    convolution = np.fft.ifft2(spectra**2).real.sum(0)
    norm = float((np.abs(spectra) ** 2).sum()) / pixels
    return bool(convolution.max() >= (1.0 - tolerance) * norm)


def opposite_directions(tilts_mrad: np.ndarray, tolerance_mrad: float = 1e-9) -> np.ndarray:
    """For each of ``(K, 2)`` directions, the index of the one propagated for it: the first
    of it and its opposite (``-k``, where also in the list), else itself."""
    tilts = np.asarray(tilts_mrad, float)
    key = np.round(tilts / tolerance_mrad).astype(np.int64)  # exact match within the tolerance
    first: dict[tuple[int, int], int] = {}
    for i, k in enumerate(map(tuple, key.tolist())):
        first.setdefault(k, i)
    return np.array(
        [min(first[k], first.get((-k[0], -k[1]), first[k])) for k in map(tuple, key.tolist())],
        dtype=np.int64,
    )


def _identity(
    material: str, zone_axis: str, voltage_kv: float, settings: MultisliceSettings
) -> str:
    content = asdict(settings)
    del content["box_nm"]  # the exact model's box does not enter the cell
    return json.dumps(
        dict(
            material=material,
            zone_axis=zone_axis,
            voltage_kv=float(voltage_kv),
            settings=content,
            format=CELL_FORMAT,
            factor_points=FACTOR_POINTS,
        ),
        sort_keys=True,
    )


def cell_filename(
    material: str, zone_axis: str, voltage_kv: float, settings: MultisliceSettings
) -> str:
    """Name of the cached state of one crystal at one voltage and settings."""
    key = hashlib.sha256(_identity(material, zone_axis, voltage_kv, settings).encode())
    return f"cell-{material}-{zone_axis}-{voltage_kv:g}kV-{key.hexdigest()[:12]}.npz"


@lru_cache(maxsize=8)
def strained_cell_multislice(
    material: str, zone_axis: str, voltage_kv: float, settings: MultisliceSettings
) -> StrainedCellMultislice:
    """Shared :class:`StrainedCellMultislice` per crystal, voltage and settings.

    Its state is read from the cache directory (:func:`sim_devices.cbed_library.cache_dir`)
    when there, else built with abTEM (seconds: one potential per species) and saved there.
    """
    path = cache_dir() / cell_filename(material, zone_axis, voltage_kv, settings)
    if path.is_file():
        try:
            return StrainedCellMultislice.load(path)
        except ValueError:
            pass  # another format: rebuilt below
    model = StrainedCellMultislice(material, zone_axis, voltage_kv, settings)
    model.save(path)
    return model
