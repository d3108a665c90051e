"""Beam and detector conditions a frame was recorded under (the network's side inputs)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from sim_devices.materials import zone_axis_crystal
from sim_devices.optics import Beam, Detector
from sim_devices.point_spread import MAX_SIGMA_PX

#: Materials (and zone axes) the shipped network knows, in the order of its one-hot input.
MATERIALS: tuple[tuple[str, str], ...] = (("Si", "110"), ("SrTiO3", "001"))
#: Accelerating voltages of the training data (a beam library each).
TRAINING_VOLTAGES_KV: tuple[float, ...] = (80.0, 200.0, 300.0)
#: Convergence semi-angle range of the training data.
CONVERGENCE_RANGE_MRAD: tuple[float, float] = (1.5, 4.0)
#: Detector calibration at 200 kV; other voltages use the camera length that keeps the disks
#: on the same pixels (calibration proportional to the wavelength), as microscopists do.
REFERENCE_MRAD_PER_PIXEL = 0.35
#: Disks must stay this far apart (fraction of the nearest-beam angle) for the fast model.
_OVERLAP_MARGIN = 0.95


@dataclass(frozen=True)
class BeamConditions:
    """What the network needs to know about how a frame was recorded.

    Parameters
    ----------
    material, zone_axis : str
        Crystal and beam direction, one of :data:`MATERIALS`.
    voltage_kv : float
        Accelerating voltage.
    convergence_mrad : float
        Probe convergence semi-angle.
    mrad_per_pixel : float
        Nominal detector calibration (the camera length).
    pixels : int
        Frames are ``pixels x pixels``.
    point_spread_px : float
        The detector's point-spread, the sigma of a Gaussian in pixels (measured, e.g. from a
        knife-edge MTF; :mod:`sim_devices.point_spread`). 0, the default, is a sharp detector,
        which is what the shipped networks were trained for; only a model trained with
        ``stem-loop train --point-spread`` takes another value as an input.
    """

    material: str = "Si"
    zone_axis: str = "110"
    voltage_kv: float = 200.0
    convergence_mrad: float = 3.0
    mrad_per_pixel: float = 0.35
    pixels: int = 128
    point_spread_px: float = 0.0

    def __post_init__(self) -> None:
        zone_axis_crystal(self.material, self.zone_axis)  # names the supported ones if not
        Beam(self.voltage_kv, self.convergence_mrad)  # range checks
        self.detector()
        try:
            spread = float(self.point_spread_px)
        except (TypeError, ValueError):
            spread = math.nan
        if not (math.isfinite(spread) and 0.0 <= spread <= MAX_SIGMA_PX):
            raise ValueError(
                f"point_spread_px must be a Gaussian sigma of 0 to {MAX_SIGMA_PX:g} pixels, "
                f"got {self.point_spread_px!r}"
            )
        object.__setattr__(self, "point_spread_px", spread)  # a plain float (JSON, hashing)

    @classmethod
    def from_devices(
        cls,
        material: str,
        zone_axis: str,
        beam: Beam,
        detector: Detector,
        point_spread_px: float = 0.0,
    ):
        """Conditions of a simulated (or real) microscope's beam and detector (with the
        detector's measured point-spread, if known)."""
        return cls(
            material,
            zone_axis,
            beam.voltage_kv,
            beam.convergence_mrad,
            detector.mrad_per_pixel,
            detector.pixels,
            point_spread_px,
        )

    @property
    def beam(self) -> Beam:
        """The beam these conditions describe."""
        return Beam(self.voltage_kv, self.convergence_mrad)

    def detector(
        self, center_offset_px: tuple[float, float] = (0.0, 0.0), camera_length_error: float = 0.0
    ) -> Detector:
        """A detector of these conditions; its true calibration may differ from the nominal one.

        Parameters
        ----------
        center_offset_px : tuple of float
            Optical axis relative to the frame centre (x, y).
        camera_length_error : float
            Fractional error of the nominal calibration (the true mrad per pixel is
            ``mrad_per_pixel * (1 + camera_length_error)``).
        """
        return Detector(
            pixels=self.pixels,
            mrad_per_pixel=self.mrad_per_pixel * (1 + camera_length_error),
            center_offset_px=center_offset_px,
        )

    @property
    def wavelength_mrad_a(self) -> float:
        """Scattering angle in mrad of a reciprocal vector of 1/Angstrom."""
        return self.beam.wavelength_nm * 10.0 * 1e3

    @property
    def disk_radius_px(self) -> float:
        """Radius of the CBED disks in detector pixels."""
        return self.convergence_mrad / self.mrad_per_pixel

    def material_index(self) -> int:
        """Position of the material in :data:`MATERIALS` (the network's one-hot input)."""
        try:
            return MATERIALS.index((self.material, self.zone_axis))
        except ValueError:
            known = ", ".join(f"{m} [{z}]" for m, z in MATERIALS)
            raise ValueError(
                f"the network knows {known}, not {self.material} [{self.zone_axis}]"
            ) from None

    def features(self) -> np.ndarray:
        """Side inputs of the network: material one-hot, scaled voltage, convergence, radius."""
        onehot = np.zeros(len(MATERIALS), dtype=np.float32)
        onehot[self.material_index()] = 1.0
        scaled = [self.voltage_kv / 300.0, self.convergence_mrad / 4.0, self.disk_radius_px / 12.0]
        return np.concatenate([onehot, np.asarray(scaled, dtype=np.float32)])

    def as_dict(self) -> dict:
        """Plain dict (JSON-ready)."""
        return asdict(self)

    def library_spec(self):
        """The :class:`~sim_devices.cbed_library.LibrarySpec` of the beam library for these
        conditions (material, zone axis, voltage)."""
        from sim_devices.cbed_library import LibrarySpec

        return LibrarySpec(
            material=self.material, zone_axis=self.zone_axis, voltage_kv=self.voltage_kv
        )


def nearest_beam_mrad(material: str, zone_axis: str, voltage_kv: float) -> float:
    """Angle of the nearest allowed reciprocal-lattice beam (sets where disks overlap)."""
    a = zone_axis_crystal(material, zone_axis).lattice_constant_a
    # Si [110]: {111} at sqrt(3)/a; SrTiO3 [001]: {100} at 1/a (Sr and Ti-O columns differ)
    g_inv_a = {"Si": np.sqrt(3.0) / a, "SrTiO3": 1.0 / a}[material]
    return float(g_inv_a * Beam(voltage_kv).wavelength_nm * 10.0 * 1e3)


def max_convergence_mrad(material: str, zone_axis: str, voltage_kv: float) -> float:
    """Largest convergence semi-angle of the training data (disks must not overlap)."""
    limit = 0.5 * _OVERLAP_MARGIN * nearest_beam_mrad(material, zone_axis, voltage_kv)
    return float(min(CONVERGENCE_RANGE_MRAD[1], limit))


def standard_mrad_per_pixel(voltage_kv: float) -> float:
    """Nominal calibration of the training data: disks on the same pixels at every voltage."""
    ratio = Beam(voltage_kv).wavelength_nm / Beam(200.0).wavelength_nm
    return float(REFERENCE_MRAD_PER_PIXEL * ratio)
