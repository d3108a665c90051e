"""Beam and detector settings of the simulated microscope."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

_ELECTRON_REST_ENERGY_KEV = 510.99895
_HC_KEV_NM = 1.239841984


@dataclass(frozen=True)
class Beam:
    """Electron beam: accelerating voltage and probe convergence semi-angle.

    Parameters
    ----------
    voltage_kv : float
        Accelerating voltage in kV.
    convergence_mrad : float
        Probe-forming aperture semi-angle in mrad.
    """

    voltage_kv: float = 200.0
    convergence_mrad: float = 3.0

    def __post_init__(self) -> None:
        if not (10.0 <= self.voltage_kv <= 1000.0):
            raise ValueError(f"voltage_kv must lie in 10..1000 kV, got {self.voltage_kv}")
        if not (0.1 <= self.convergence_mrad <= 50.0):
            raise ValueError(
                f"convergence_mrad must lie in 0.1..50 mrad, got {self.convergence_mrad}"
            )

    @property
    def energy_ev(self) -> float:
        """Electron kinetic energy in eV."""
        return self.voltage_kv * 1e3

    @property
    def wavelength_nm(self) -> float:
        """Relativistic electron wavelength in nm."""
        e = self.voltage_kv
        return _HC_KEV_NM / np.sqrt(e * (2 * _ELECTRON_REST_ENERGY_KEV + e))


@dataclass(frozen=True)
class Detector:
    """Pixelated diffraction detector.

    Parameters
    ----------
    pixels : int
        Frames are ``pixels x pixels``.
    mrad_per_pixel : float
        Angular size of one pixel at the nominal camera length.
    dose : float
        Mean number of electrons per frame (per probe position); counts are Poisson.
    center_offset_px : tuple of float
        Position of the optical axis relative to the frame centre ``((pixels - 1) / 2)``, (x, y).
    """

    pixels: int = 128
    mrad_per_pixel: float = 0.35
    dose: float = 1e5
    center_offset_px: tuple[float, float] = (0.0, 0.0)

    def __post_init__(self) -> None:
        if not (8 <= self.pixels <= 4096):
            raise ValueError(f"pixels must lie in 8..4096, got {self.pixels}")
        if not (self.mrad_per_pixel > 0 and np.isfinite(self.mrad_per_pixel)):
            raise ValueError(f"mrad_per_pixel must be > 0, got {self.mrad_per_pixel}")
        if not (self.dose > 0 and np.isfinite(self.dose)):
            raise ValueError(f"dose must be > 0 electrons per frame, got {self.dose}")

    @property
    def shape(self) -> tuple[int, int]:
        """Frame shape ``(rows, columns)``."""
        return (self.pixels, self.pixels)

    @property
    def center_px(self) -> tuple[float, float]:
        """Pixel coordinates (x, y) of the optical axis."""
        c = (self.pixels - 1) / 2
        return (c + self.center_offset_px[0], c + self.center_offset_px[1])

    def angles_mrad(self) -> tuple[np.ndarray, np.ndarray]:
        """Scattering angles (x along columns, y along rows) of the pixel centres, in mrad."""
        cx, cy = self.center_px
        idx = np.arange(self.pixels, dtype=float)
        return (idx - cx) * self.mrad_per_pixel, (idx - cy) * self.mrad_per_pixel
