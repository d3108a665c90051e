"""Built-in specimens, generated from closed-form strain fields (no data files needed)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .sample import Sample


def si_inclusion(n: int = 48, pixel_size_nm: float = 2.0) -> Sample:
    """Si [110] with a circular misfit inclusion (Eshelby) in a wedge-shaped lamella.

    Outside an inclusion of radius ``R`` with dilatational misfit ``m`` the plane-strain
    displacement is ``u = m R^2 r / r^2``, giving the traceless field
    ``exx = m R^2 (y^2 - x^2) / r^4``, ``exy = -2 m R^2 x y / r^4``; inside, the strain is uniform.
    Thickness rises linearly along x (a FIB wedge) and the lamella bends slightly (tilt).
    """
    coords = (np.arange(n) + 0.5) * pixel_size_nm
    x, y = np.meshgrid(coords, coords)
    centre = n * pixel_size_nm / 2
    dx, dy = x - centre, y - centre
    r2 = dx**2 + dy**2
    radius, misfit = 0.18 * n * pixel_size_nm, 0.012
    inside = r2 < radius**2
    r4 = np.where(inside, 1.0, r2**2)
    exx = np.where(inside, misfit / 2, misfit * radius**2 * (dy**2 - dx**2) / r4)
    eyy = np.where(inside, misfit / 2, misfit * radius**2 * (dx**2 - dy**2) / r4)
    exy = np.where(inside, 0.0, -2 * misfit * radius**2 * dx * dy / r4)
    span = n * pixel_size_nm
    thickness = 20.0 + 40.0 * x / span
    tilt_x = 1.5 * (y - centre) / span
    tilt_y = -1.0 * (x - centre) / span
    maps = dict(
        exx=exx, eyy=eyy, exy=exy, thickness_nm=thickness, tilt_x_mrad=tilt_x, tilt_y_mrad=tilt_y
    )
    return Sample("Si", "110", pixel_size_nm, maps, name="si_inclusion")


def strained_layer(n: int = 48, pixel_size_nm: float = 2.0) -> Sample:
    """Si [110] with a coherent SiGe-like layer across the field (interface normal along y).

    Relative to the Si reference lattice a coherent layer with misfit ``f`` is matched in-plane
    (``exx = 0``) and expands along the interface normal by ``f (1 + 2 c12/c11)`` (tetragonal
    distortion under plane stress). The strain relaxes over a few nm at the interfaces (tanh
    profile) and a weak shear ripple is added; thickness has a slight gradient and the lamella
    bends about x.
    """
    coords = (np.arange(n) + 0.5) * pixel_size_nm
    x, y = np.meshgrid(coords, coords)
    span = n * pixel_size_nm
    lo, hi, width = 0.35 * span, 0.65 * span, 2.0
    profile = 0.5 * (np.tanh((y - lo) / width) - np.tanh((y - hi) / width))
    misfit, c12_over_c11 = 0.008, 0.385  # ~20% Ge; Si elastic constants c12/c11 = 63.9/165.8
    exx = np.zeros_like(x)
    eyy = misfit * (1 + 2 * c12_over_c11) * profile
    exy = 0.0005 * np.sin(2 * np.pi * x / span) * profile
    thickness = 40.0 + 10.0 * y / span
    tilt_x = np.full_like(x, 0.5)
    tilt_y = 0.8 * np.sin(np.pi * x / span)
    maps = dict(
        exx=exx, eyy=eyy, exy=exy, thickness_nm=thickness, tilt_x_mrad=tilt_x, tilt_y_mrad=tilt_y
    )
    return Sample("Si", "110", pixel_size_nm, maps, name="strained_layer")


BUILTIN_SAMPLES: dict[str, Callable[[], Sample]] = {
    "si_inclusion": si_inclusion,
    "strained_layer": strained_layer,
}


def builtin_sample(name: str = "si_inclusion") -> Sample:
    """Return a built-in sample by name (see :data:`BUILTIN_SAMPLES`)."""
    try:
        return BUILTIN_SAMPLES[name]()
    except KeyError:
        raise ValueError(
            f"unknown built-in sample {name!r}; choose from {sorted(BUILTIN_SAMPLES)}"
        ) from None
