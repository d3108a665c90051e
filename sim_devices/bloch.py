"""Bloch-wave beam intensities of a strained zone-axis crystal (how strain changes disk contents).

The fast model's beam library is multislice of the *unstrained* cell. In a thick crystal a
strain also changes what is inside each disk: the excitation errors (through the strained
reciprocal metric) and the Fourier coefficients of the projected potential (the same atoms
spread over a different area, each form factor read at the strained ``|g|``). Both enter the
Bloch-wave structure matrix of the projected crystal (zeroth-order Laue zone, high-energy
forward-scattering form, the equation multislice solves)::

    M_gh(k) = -pi lambda |k + g|^2 delta_gh + (sigma / c) V_(g-h),
    psi(t)  = exp(i M t) psi(0),  psi_g(0) = delta_g0,

with ``g = F^-T g0`` for the in-plane deformation ``F = I + e`` and ``V_g`` the projected
potential per cell (abTEM's Lobato parametrization, the multislice's own potential; they agree
to 1e-4). One Hermitian eigen-decomposition per incident direction gives every thickness.

:meth:`sim_devices.strain_contents.StrainContents.correction` takes ``I(e) - I(0)`` from this
model, which the fast model adds to its multislice library: the difference cancels most of
what the projected, finite-basis Bloch-wave model and multislice do not share.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from functools import lru_cache

import numpy as np
import torch

from .materials import zone_axis_crystal
from .optics import Beam

#: Reciprocal-space radius of the Bloch-wave basis (1/A): beams further out are not coupled.
DEFAULT_G_MAX_INV_A = 1.5


@contextmanager
def _one_thread_per_call() -> Iterator[int]:
    """Run torch ops single-threaded inside; yield the thread count to use for chunks.

    A batched ``eigh`` of ~150x150 matrices runs one LAPACK call per matrix; threading each
    call costs more in synchronisation than it gains (measured 1.04 s per 128 matrices on 2
    threads, 0.38 s on one), so chunks run side by side instead, one thread each.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield threads
    finally:
        torch.set_num_threads(threads)


class BlochWaves:
    """Bloch-wave solver of one zone-axis crystal at one voltage.

    Parameters
    ----------
    material, zone_axis : str
        Crystal and beam direction (an orthogonal zone-axis cell, as for multislice).
    voltage_kv : float
        Accelerating voltage.
    g_max_inv_a : float
        Radius of the basis of beams (1/A, unstrained).
    parametrization : str
        abTEM parametrization of the atomic potentials.
    """

    def __init__(
        self,
        material: str,
        zone_axis: str,
        voltage_kv: float,
        *,
        g_max_inv_a: float = DEFAULT_G_MAX_INV_A,
        parametrization: str = "lobato",
    ) -> None:
        from abtem.core.energy import energy2sigma, energy2wavelength
        from abtem.parametrizations import validate_parametrization

        cell = zone_axis_crystal(material, zone_axis).unit_cell()
        a, b, c = cell.cell.lengths()
        self.lengths = np.array([a, b])
        self.c = c
        energy = Beam(voltage_kv=voltage_kv).energy_ev
        self.wavelength_a = float(energy2wavelength(energy))
        self.sigma = float(energy2sigma(energy))
        h_max, k_max = int(g_max_inv_a * a) + 1, int(g_max_inv_a * b) + 1
        hh, kk = np.meshgrid(
            np.arange(-h_max, h_max + 1), np.arange(-k_max, k_max + 1), indexing="ij"
        )
        hk = np.stack([hh.ravel(), kk.ravel()], axis=1)
        self.hk = hk[np.hypot(*(hk / self.lengths).T) <= g_max_inv_a]
        self.zero = int(np.flatnonzero((self.hk == 0).all(axis=1))[0])
        diff = self.hk[:, None, :] - self.hk[None, :, :]  # (N, N, 2)
        self._diff_g0 = diff / self.lengths
        symbols = np.array(cell.get_chemical_symbols())
        frac = cell.get_scaled_positions()[:, :2]
        parametrization_ = validate_parametrization(parametrization)
        self._species = []
        for symbol in sorted(set(symbols)):
            phase = np.exp(-2j * np.pi * (diff[:, :, None, :] * frac[symbols == symbol]).sum(-1))
            self._species.append(
                (parametrization_.projected_scattering_factor(symbol), phase.sum(-1))
            )
        self.area0 = a * b

    def __len__(self) -> int:
        return len(self.hk)

    def _matrices(
        self, strain: tuple[float, float, float], k_inv_a: np.ndarray, dtype: torch.dtype
    ) -> torch.Tensor:
        exx, eyy, exy = strain
        deform = np.array([[1.0 + exx, exy], [exy, 1.0 + eyy]])
        inv = np.linalg.inv(deform)  # F symmetric: F^-T = F^-1
        diff = self._diff_g0 @ inv.T
        k2 = np.sum(diff**2, axis=-1)
        potential = sum(f(k2) * phase for f, phase in self._species) / (
            self.area0 * np.linalg.det(deform)
        )
        g = (self.hk / self.lengths) @ inv.T
        diag = -np.pi * self.wavelength_a * np.sum((k_inv_a[:, None, :] + g[None]) ** 2, axis=-1)
        m = np.broadcast_to(self.sigma / self.c * potential, (len(k_inv_a), *potential.shape))
        m = m.copy()
        idx = np.arange(len(self.hk))
        m[:, idx, idx] += diag
        return torch.as_tensor(m, dtype=dtype)

    def intensities(
        self,
        strain: tuple[float, float, float],
        k_mrad: np.ndarray,
        thickness_nm: np.ndarray,
        *,
        chunk: int = 128,
        dtype: torch.dtype = torch.complex128,
    ) -> np.ndarray:
        """Beam intensities ``(T, N, K)`` for incident directions ``k_mrad`` ``(K, 2)``."""
        k_inv_a = np.asarray(k_mrad, float) * 1e-3 / self.wavelength_a
        real = torch.float64 if dtype == torch.complex128 else torch.float32
        t_a = torch.as_tensor(np.asarray(thickness_nm, float) * 10.0, dtype=real)
        out = np.empty((len(t_a), len(self.hk), len(k_inv_a)), dtype=np.float32)

        def solve(lo: int) -> None:
            gamma, vectors = torch.linalg.eigh(
                self._matrices(strain, k_inv_a[lo : lo + chunk], dtype)
            )
            weights = vectors * vectors[:, self.zero, :].conj()[:, None, :]  # (K, N, J)
            phases = torch.exp(1j * gamma[:, :, None] * t_a[None, None, :])  # (K, J, T)
            psi = weights @ phases  # (K, N, T)
            out[:, :, lo : lo + chunk] = (psi.abs() ** 2).permute(2, 1, 0).numpy()

        with _one_thread_per_call() as threads, ThreadPoolExecutor(threads) as pool:
            list(pool.map(solve, range(0, len(k_inv_a), chunk)))
        return out


@lru_cache(maxsize=8)
def bloch_waves(material: str, zone_axis: str, voltage_kv: float) -> BlochWaves:
    """Shared :class:`BlochWaves` per crystal and voltage (building the basis costs ~1 s)."""
    return BlochWaves(material, zone_axis, voltage_kv)
