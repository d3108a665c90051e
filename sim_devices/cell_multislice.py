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
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import numpy as np
import torch

from .cbed_exact import MultisliceSettings, unit_cell_gpts
from .materials import zone_axis_crystal
from .optics import Beam


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

        self.settings = settings or MultisliceSettings()
        crystal = zone_axis_crystal(material, zone_axis)
        cell = crystal.unit_cell()
        gpts, lengths = unit_cell_gpts(crystal, self.settings.sampling_a)
        self.gpts = (int(gpts[0]), int(gpts[1]))
        self.lengths = lengths[:2]
        self.slice_a = lengths[2] / self.settings.slices_per_cell
        energy = Beam(voltage_kv=voltage_kv).energy_ev
        self.wavelength_a = float(energy2wavelength(energy))
        self.sigma = float(energy2sigma(energy))
        self.dtype = dtype
        self.real_dtype = torch.float64 if dtype == torch.complex128 else torch.float32

        h = np.fft.fftfreq(self.gpts[0], 1.0 / self.gpts[0]).round()
        k = np.fft.fftfreq(self.gpts[1], 1.0 / self.gpts[1]).round()
        self.hk = np.stack(np.meshgrid(h, k, indexing="ij"), axis=-1)  # (nx, ny, 2) indices
        self.g0 = self.hk / self.lengths  # unstrained reciprocal vectors, 1/A
        k2_0 = np.sum(self.g0**2, axis=-1)

        # abTEM's antialias aperture on the unstrained grid (cutoff 2/3 Nyquist, cosine taper)
        sampling = self.lengths / np.asarray(self.gpts)
        cutoff = abtem.config.get("antialias.cutoff") / sampling.max() / 2
        taper = abtem.config.get("antialias.taper") / sampling.max()
        r = np.sqrt(k2_0)
        aperture = np.where(
            r > cutoff - taper, 0.5 * (1 + np.cos(np.pi * (r - cutoff + taper) / taper)), 1.0
        )
        aperture[r > cutoff] = 0.0
        self.aperture = torch.as_tensor(aperture, dtype=self.real_dtype)

        parametrization = validate_parametrization(self.settings.parametrization)
        symbols = np.array(cell.get_chemical_symbols())
        self._species = []  # (V0 per slice in Fourier space, f(k2) callable)
        for symbol in sorted(set(symbols)):
            atoms = cell[symbols == symbol]
            potential = abtem.Potential(
                atoms,
                gpts=self.gpts,
                slice_thickness=self.slice_a,
                projection="infinite",
                parametrization=self.settings.parametrization,
            )
            array = np.asarray(potential.build().compute(progress_bar=False).array, float)
            if array.shape[0] != self.settings.slices_per_cell:
                raise RuntimeError(f"abTEM made {array.shape[0]} slices of the {symbol} cell")
            factor = parametrization.projected_scattering_factor(symbol)
            self._species.append((np.fft.fft2(array), factor))
        self._f0 = [np.maximum(factor(k2_0), 1e-30) for _, factor in self._species]

    def reciprocal(self, strain: tuple[float, float, float]) -> np.ndarray:
        """Strained reciprocal vectors ``F^-T g0`` on the FFT grid, ``(nx, ny, 2)`` in 1/A."""
        exx, eyy, exy = strain
        deform = np.array([[1.0 + exx, exy], [exy, 1.0 + eyy]])
        return self.g0 @ np.linalg.inv(deform)  # F symmetric: rows g0^T F^-1 = (F^-T g0)^T

    def slice_potentials(self, strain: tuple[float, float, float]) -> np.ndarray:
        """Projected potential of each slice of the strained cell, ``(S, nx, ny)`` (abTEM units)."""
        exx, eyy, exy = strain
        det = (1.0 + exx) * (1.0 + eyy) - exy**2
        k2 = np.sum(self.reciprocal(strain) ** 2, axis=-1)
        total = sum(
            v0 * (factor(k2) / f0)[None]
            for (v0, factor), f0 in zip(self._species, self._f0, strict=True)
        )
        return np.fft.ifft2(total).real / det

    def intensities(
        self,
        strain: tuple[float, float, float],
        tilts_mrad: np.ndarray,
        exit_slices: Sequence[int],
        beams: np.ndarray,
        *,
        chunk: int = 256,
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
            Incident directions propagated together.

        Returns
        -------
        ndarray
            ``(len(exit_slices), G, K)`` float32 fractions of the incident beam.
        """
        exits = np.asarray(exit_slices, dtype=int)
        if exits.ndim != 1 or len(exits) == 0 or np.any(np.diff(exits) <= 0) or exits[0] < 1:
            raise ValueError("exit_slices must be increasing slice counts >= 1")
        tilts = np.atleast_2d(np.asarray(tilts_mrad, float))
        nx, ny = self.gpts
        beams = np.asarray(beams, dtype=int)
        flat = torch.as_tensor((beams[:, 0] % nx) * ny + beams[:, 1] % ny)

        potentials = self.slice_potentials(strain)
        transmission = np.exp(1j * self.sigma * potentials)
        transmission = np.fft.ifft2(np.fft.fft2(transmission) * self.aperture.numpy()[None])
        transmission = torch.as_tensor(transmission, dtype=self.dtype)  # (S, nx, ny)

        g = torch.as_tensor(self.reciprocal(strain), dtype=torch.float64)
        dz = self.slice_a
        fresnel = torch.polar(
            self.aperture.to(torch.float64),
            -np.pi * self.wavelength_a * dz * (g**2).sum(-1),
        )
        out = np.empty((len(exits), len(beams), len(tilts)), dtype=np.float32)
        norm = float(nx * ny) ** 2
        for lo in range(0, len(tilts), chunk):
            tan = torch.as_tensor(np.tan(tilts[lo : lo + chunk] * 1e-3), dtype=torch.float64)
            phase = -2 * np.pi * dz * (tan[:, None, None, :] * g[None]).sum(-1)
            propagator = (fresnel[None] * torch.polar(torch.ones_like(phase), phase)).to(self.dtype)
            wave = torch.ones((len(tan), nx, ny), dtype=self.dtype)
            slices_per_cell = transmission.shape[0]
            kept = 0
            for n in range(1, int(exits[-1]) + 1):
                wave = wave * transmission[(n - 1) % slices_per_cell]
                spectrum = torch.fft.fft2(wave) * propagator
                if n == exits[kept]:
                    values = spectrum.reshape(len(tan), -1)[:, flat].abs().square() / norm
                    out[kept, :, lo : lo + chunk] = values.T.numpy()
                    kept += 1
                wave = torch.fft.ifft2(spectrum)
        return out


@lru_cache(maxsize=8)
def strained_cell_multislice(
    material: str, zone_axis: str, voltage_kv: float, settings: MultisliceSettings
) -> StrainedCellMultislice:
    """Shared :class:`StrainedCellMultislice` per crystal, voltage and settings (building one
    runs abTEM's potential once per species, seconds)."""
    return StrainedCellMultislice(material, zone_axis, voltage_kv, settings)
