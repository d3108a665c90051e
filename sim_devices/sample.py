"""Simulated specimens: descriptor maps over a field of view (the sample file contract)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

#: Descriptor names, in the order used by the network and the forward models.
DESCRIPTOR_NAMES: tuple[str, ...] = (
    "exx",
    "eyy",
    "exy",
    "thickness_nm",
    "tilt_x_mrad",
    "tilt_y_mrad",
)

_SCALAR_KEYS = ("material", "zone_axis", "pixel_size_nm")


class SampleFileError(ValueError):
    """A sample file or map that breaks the sample-file contract."""


@dataclass(frozen=True)
class Sample:
    """Descriptor maps of a specimen on a regular grid.

    Rows are y, columns are x, the origin is the top-left corner and pixel centres lie at
    ``(i + 0.5) * pixel_size_nm``.

    Parameters
    ----------
    material : str
        Material name known to :mod:`sim_devices.materials`, e.g. ``"Si"``.
    zone_axis : str
        Zone axis as Miller indices without separators, e.g. ``"110"``.
    pixel_size_nm : float
        Grid spacing of the maps.
    maps : dict of str to ndarray
        One ``(ny, nx)`` float array per name in :data:`DESCRIPTOR_NAMES`.
    name : str
        Human-readable label, recorded in run metadata.
    """

    material: str
    zone_axis: str
    pixel_size_nm: float
    maps: dict[str, np.ndarray] = field(repr=False)
    name: str = "sample"

    def __post_init__(self) -> None:
        if not isinstance(self.material, str) or not self.material:
            raise SampleFileError("'material' must be a non-empty string")
        if not isinstance(self.zone_axis, str) or not self.zone_axis.isdigit():
            raise SampleFileError(f"'zone_axis' must be digits like '110', got {self.zone_axis!r}")
        if not np.isfinite(self.pixel_size_nm) or self.pixel_size_nm <= 0:
            raise SampleFileError(f"'pixel_size_nm' must be > 0, got {self.pixel_size_nm!r}")
        shape = None
        for key in DESCRIPTOR_NAMES:
            if key not in self.maps:
                raise SampleFileError(f"missing required key {key!r}")
            value = np.asarray(self.maps[key])
            if value.ndim != 2 or min(value.shape) < 1:
                raise SampleFileError(
                    f"{key!r} must be a 2-D (ny, nx) map, got shape {value.shape}"
                )
            if shape is None:
                shape = value.shape
            elif value.shape != shape:
                raise SampleFileError(
                    f"{key!r} has shape {value.shape}, but {DESCRIPTOR_NAMES[0]!r} has {shape}"
                )
            if not np.issubdtype(value.dtype, np.number):
                raise SampleFileError(f"{key!r} must be numeric, got dtype {value.dtype}")
            if not np.all(np.isfinite(value)):
                raise SampleFileError(f"{key!r} contains NaN or inf")
        if np.any(np.asarray(self.maps["thickness_nm"]) <= 0):
            raise SampleFileError("'thickness_nm' must be positive everywhere")
        maps = {k: np.asarray(self.maps[k], dtype=np.float64) for k in DESCRIPTOR_NAMES}
        object.__setattr__(self, "maps", maps)

    # -- geometry ---------------------------------------------------------------------------
    @property
    def shape(self) -> tuple[int, int]:
        """Map shape ``(ny, nx)``."""
        return self.maps["exx"].shape  # type: ignore[return-value]

    @property
    def extent_nm(self) -> tuple[float, float]:
        """Field of view ``(width_x, height_y)`` in nm."""
        ny, nx = self.shape
        return nx * self.pixel_size_nm, ny * self.pixel_size_nm

    @property
    def x_nm(self) -> np.ndarray:
        """Pixel-centre x coordinates (nm)."""
        return (np.arange(self.shape[1]) + 0.5) * self.pixel_size_nm

    @property
    def y_nm(self) -> np.ndarray:
        """Pixel-centre y coordinates (nm)."""
        return (np.arange(self.shape[0]) + 0.5) * self.pixel_size_nm

    def contains(self, x_nm: np.ndarray, y_nm: np.ndarray) -> np.ndarray:
        """Whether positions lie inside the field of view (edges included)."""
        width, height = self.extent_nm
        x_nm, y_nm = np.asarray(x_nm, float), np.asarray(y_nm, float)
        return (x_nm >= 0) & (x_nm <= width) & (y_nm >= 0) & (y_nm <= height)

    def descriptors_at(self, x_nm: np.ndarray, y_nm: np.ndarray) -> dict[str, np.ndarray]:
        """Descriptors at probe positions, bilinearly interpolated between pixel centres.

        Parameters
        ----------
        x_nm, y_nm : array_like
            Probe positions inside the field of view.

        Returns
        -------
        dict of str to ndarray
            One array per descriptor name, with the broadcast shape of the positions.
        """
        x_nm, y_nm = np.broadcast_arrays(np.asarray(x_nm, float), np.asarray(y_nm, float))
        if not np.all(np.isfinite(x_nm) & np.isfinite(y_nm)):
            raise ValueError("probe positions must be finite")
        if not np.all(self.contains(x_nm, y_nm)):
            raise ValueError(f"probe position outside the field of view {self.extent_nm} nm")
        ny, nx = self.shape
        fx = np.clip(x_nm / self.pixel_size_nm - 0.5, 0, nx - 1)
        fy = np.clip(y_nm / self.pixel_size_nm - 0.5, 0, ny - 1)
        x0 = np.minimum(np.floor(fx).astype(int), max(nx - 2, 0))
        y0 = np.minimum(np.floor(fy).astype(int), max(ny - 2, 0))
        x1, y1 = np.minimum(x0 + 1, nx - 1), np.minimum(y0 + 1, ny - 1)
        wx, wy = fx - x0, fy - y0
        out = {}
        for key, grid in self.maps.items():
            top = grid[y0, x0] * (1 - wx) + grid[y0, x1] * wx
            bottom = grid[y1, x0] * (1 - wx) + grid[y1, x1] * wx
            out[key] = top * (1 - wy) + bottom * wy
        return out

    # -- files -------------------------------------------------------------------------------
    @classmethod
    def from_npz(cls, path: str | Path) -> Sample:
        """Load a sample file (see the sample-file contract in the docs).

        Raises
        ------
        SampleFileError
            When a required key is missing, a map has the wrong shape, or holds NaN/inf.
        """
        path = Path(path)
        if not path.is_file():
            raise SampleFileError(f"sample file not found: {path}")
        try:
            with np.load(path, allow_pickle=False) as data:
                content = {key: data[key] for key in data.files}
        except (OSError, ValueError) as err:
            raise SampleFileError(f"{path} is not a readable .npz sample file: {err}") from err
        for key in _SCALAR_KEYS:
            if key not in content:
                raise SampleFileError(f"{path}: missing required key {key!r}")
        try:
            return cls(
                material=str(content["material"][()]),
                zone_axis=str(content["zone_axis"][()]),
                pixel_size_nm=float(content["pixel_size_nm"][()]),
                maps={k: content[k] for k in DESCRIPTOR_NAMES if k in content},
                name=path.stem,
            )
        except SampleFileError as err:
            raise SampleFileError(f"{path}: {err}") from None

    def to_npz(self, path: str | Path) -> Path:
        """Write the sample in the contract format and return the path."""
        path = Path(path)
        np.savez_compressed(
            path,
            material=np.array(self.material),
            zone_axis=np.array(self.zone_axis),
            pixel_size_nm=np.array(self.pixel_size_nm),
            **self.maps,
        )
        return path
