"""The simulated microscope: a specimen, a beam, a detector and a CBED forward model."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol, runtime_checkable

import numpy as np

from .noise import poisson_counts
from .optics import Beam, Detector
from .sample import Sample


@runtime_checkable
class ForwardModel(Protocol):
    """Anything that turns local descriptors into CBED patterns.

    ``patterns`` returns float32 ``(N, rows, cols)`` arrays holding the fraction of the
    incident electrons that lands in each detector pixel (noise-free).
    """

    material: str
    zone_axis: str
    beam: Beam
    detector: Detector

    def patterns(self, descriptors: Mapping[str, np.ndarray]) -> np.ndarray: ...


def make_forward_model(
    kind: str, material: str, zone_axis: str, beam: Beam, detector: Detector
) -> ForwardModel:
    """Build a forward model by name: ``"fast"`` (validated library) or ``"exact"`` (abTEM)."""
    if kind == "exact":
        from .cbed_exact import ExactCBED

        return ExactCBED(material, zone_axis, beam, detector)
    if kind == "fast":
        from .cbed_fast import FastCBED

        return FastCBED.for_conditions(material, zone_axis, beam, detector)
    raise ValueError(f"unknown forward model {kind!r}; choose 'fast' or 'exact'")


class Microscope:
    """A simulated 4D-STEM microscope that records CBED frames at probe positions.

    Parameters
    ----------
    sample : Sample
        The specimen under the beam.
    beam : Beam, optional
        Beam settings (default 200 kV, 3 mrad).
    detector : Detector, optional
        Detector settings (default 128 x 128 px, 0.35 mrad/px, 1e5 electrons per frame).
    forward : {"fast", "exact"} or ForwardModel
        How patterns are computed; ``"fast"`` is validated against ``"exact"`` in the tests.
    seed : int, optional
        Seed of the counting noise.
    """

    dtype = np.uint16

    def __init__(
        self,
        sample: Sample,
        *,
        beam: Beam | None = None,
        detector: Detector | None = None,
        forward: str | ForwardModel = "fast",
        seed: int | None = None,
    ) -> None:
        self.sample = sample
        self.beam = beam or Beam()
        self.detector = detector or Detector()
        if isinstance(forward, str):
            forward = make_forward_model(
                forward, sample.material, sample.zone_axis, self.beam, self.detector
            )
        if (forward.material, forward.zone_axis) != (sample.material, sample.zone_axis):
            raise ValueError(
                f"forward model is for {forward.material} [{forward.zone_axis}], "
                f"the sample is {sample.material} [{sample.zone_axis}]"
            )
        self.forward = forward
        self.rng = np.random.default_rng(seed)

    @property
    def frame_shape(self) -> tuple[int, int]:
        """Shape of one detector frame ``(rows, cols)``."""
        return self.detector.shape

    @property
    def field_of_view_nm(self) -> tuple[float, float]:
        """Scan field ``(width_x, height_y)`` in nm; positions run from 0 to these."""
        return self.sample.extent_nm

    def check_positions(self, x_nm: np.ndarray, y_nm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Validate probe positions and return them as 1-D float arrays.

        Raises
        ------
        ValueError
            If the arrays differ in length, hold NaN/inf, or leave the field of view.
        """
        x = np.atleast_1d(np.asarray(x_nm, dtype=float))
        y = np.atleast_1d(np.asarray(y_nm, dtype=float))
        if x.shape != y.shape or x.ndim != 1:
            raise ValueError(
                f"x and y positions must be 1-D of equal length, got {x.shape}, {y.shape}"
            )
        bad = ~(np.isfinite(x) & np.isfinite(y))
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise ValueError(f"probe position {i} is not finite: x={x[i]} nm, y={y[i]} nm")
        outside = ~self.sample.contains(x, y)
        if outside.any():
            i = int(np.flatnonzero(outside)[0])
            w, h = self.field_of_view_nm
            raise ValueError(
                f"probe position {i} (x={x[i]:g} nm, y={y[i]:g} nm) is outside the field of view "
                f"x in [0, {w:g}] nm, y in [0, {h:g}] nm"
            )
        return x, y

    def descriptors_at(self, x_nm: np.ndarray, y_nm: np.ndarray) -> dict[str, np.ndarray]:
        """Ground-truth descriptors at probe positions."""
        x, y = self.check_positions(x_nm, y_nm)
        return self.sample.descriptors_at(x, y)

    def expected_patterns(self, x_nm: np.ndarray, y_nm: np.ndarray) -> np.ndarray:
        """Noise-free patterns (fraction of incident electrons per pixel), ``(N, rows, cols)``."""
        return self.forward.patterns(self.descriptors_at(x_nm, y_nm))

    def acquire(self, x_nm: np.ndarray, y_nm: np.ndarray) -> np.ndarray:
        """Record frames (uint16 counts at the detector dose) at probe positions."""
        patterns = self.expected_patterns(x_nm, y_nm)
        return poisson_counts(patterns, self.detector.dose, self.rng, self.dtype)
