"""Fast CBED: disks rendered from a precomputed beam-intensity library (validated vs. exact).

Where the CBED disks do not overlap, the pattern of a strained, tilted crystal of thickness
``t`` is, pixel by pixel, ``I_g(k, t)`` of :mod:`sim_devices.cbed_library` with

* disk centres at ``lambda (I + e)^-T g`` (the strain moves the reciprocal lattice),
* ``k = (theta - theta_g) - tilt`` (crystal tilt shifts the incident directions in each disk),
* the disks cut by the probe aperture, each pixel weighted by the part of its area inside the
  aperture (``edge_subpixels`` squared sub-pixels, each with a linear edge ramp one sub-pixel
  wide), and
* linear interpolation between stored thicknesses and incident directions.

The pixel's area fraction matters for small disks: against exact probe multislice (the 96
held-out patterns, 80-300 kV), weighting by a ramp one whole pixel wide at the pixel centre
(``edge_subpixels=1``) left a median chi^2 of 3,900 over the 16,384 pixels at 10^5 electrons,
and 28,000 for SrTiO3 at 80 kV with a 1.71 mrad aperture (disk radius 2.9 pixels); with 3x3
sub-pixels it is 2,900 and 11,400 (4x4: the same). Averaging the disk contents over the
sub-pixels too changed the median by less than 1 %, so they are read at the pixel centre.
``TrainingRanges.edge_subpixels`` (:mod:`stem_loop.inference.dataset`) selects it for training
frames; an ensemble trained on 3x3 did not read the exact patterns better (model card).
The default stays at one pixel: against the converged Si [110] reference of
:mod:`sim_devices.validation`, 3x3 sub-pixels lower chi^2 by 4 to 26 % and raise the
correlation in all six cases, but move one lattice-fit disk position at 80 nm from 0.079 to
0.101 px, past the validated 0.1 px.

Strain also changes the disk *contents* of thick crystals (the excitation errors through the
strained reciprocal metric, and the projected potential per area): beam intensities correlate
only 0.994 with the unstrained ones at 80 nm for 2 % strain in Si [110] at 200 kV. With
``strain_contents=True`` (default) the library is corrected for each frame's strain, rounded to
a 0.5 % grid, by a Bloch-wave calculation (:mod:`sim_devices.strain_contents`), computed once
per grid point (about 2 s) and kept in memory; frames are rendered grouped by grid point.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch

from .cbed_library import BeamLibrary, LibrarySpec, load_or_build
from .disk_pixels import DiskPixels, compact, merge_shared_pixels, stored_lerp
from .optics import Beam, Detector
from .strain_contents import DEFAULT_STEP, StrainContents


@dataclass
class ThicknessSeries:
    """One crystal's patterns over a series of thicknesses, on the pixels its disks reach.

    Attributes
    ----------
    pixels : Tensor
        ``(S,)`` int64 flat indices (``row * columns + column``) of the frame pixels any disk
        reaches; every other pixel is zero at every thickness.
    values : Tensor
        ``(T, S)`` float32 fractions of the incident beam on those pixels, one row per thickness.
    thickness_nm : ndarray
        ``(T,)`` the thicknesses.
    shape : (int, int)
        The frame shape.
    stored_values : Tensor
        ``(T_stored, S)`` the same at the library's stored thicknesses, from which :meth:`at`
        interpolates.
    stored_thickness_nm : ndarray
        ``(T_stored,)`` the library's stored thicknesses.
    """

    pixels: torch.Tensor
    values: torch.Tensor
    thickness_nm: np.ndarray
    shape: tuple[int, int]
    stored_values: torch.Tensor
    stored_thickness_nm: np.ndarray

    def at(self, thickness_nm: np.ndarray) -> ThicknessSeries:
        """The same crystal at other thicknesses (linear between the stored ones, as
        :meth:`FastCBED.patterns` interpolates; no new geometry).

        Raises
        ------
        ValueError
            If a thickness lies outside the stored ones.
        """
        t = np.atleast_1d(np.asarray(thickness_nm, dtype=np.float64))
        lerp = stored_lerp(self.stored_thickness_nm, t)
        values = torch.as_tensor(lerp) @ self.stored_values
        return ThicknessSeries(
            self.pixels, values, t, self.shape, self.stored_values, self.stored_thickness_nm
        )

    def frames(self) -> np.ndarray:
        """The whole ``(T, rows, cols)`` float32 patterns."""
        out = torch.zeros((len(self.values), self.shape[0] * self.shape[1]), dtype=torch.float32)
        out[:, self.pixels] = self.values
        return out.reshape(len(self.values), *self.shape).numpy()


class FastCBED:
    """Render CBED patterns from a :class:`~sim_devices.cbed_library.BeamLibrary`.

    Parameters
    ----------
    library : BeamLibrary
        Beam intensities for the material, zone axis and voltage.
    beam : Beam
        Must have the library's voltage; any convergence angle whose disks do not overlap.
    detector : Detector
        Pixel grid and calibration.
    batch : int
        Frames rendered per vectorised batch.
    strain_contents : bool
        Correct the disk contents for strain (Bloch waves on a grid of content strains);
        ``False`` renders every crystal with the unstrained contents (no set-up cost).
    content_step : float
        Grid step of the content strain per component.
    content_cache_mb : float
        Memory for corrected libraries, one per content grid point in use (37 MB each for
        Si [110] at 200 kV on the default detector; least recently used ones are dropped).
    content_engine : str
        What computes the strain-dependent contents: ``"bloch"`` (fast; validated for Si [110]
        at 200 kV), ``"multislice"`` (the strained cell's own multislice; slower) or
        ``"nodes"`` (that multislice at 27 strains spanning +-2 %, interpolated; see
        :mod:`sim_devices.content_nodes`), see :mod:`sim_devices.strain_contents`.
    edge_subpixels : int
        Sub-pixels per side over which each pixel's area inside the aperture is integrated
        (1: a linear ramp one pixel wide at the pixel centre).
    content_device : str or torch.device
        Where the multislice content engines run (``"cuda"`` on a GPU machine).

    Raises
    ------
    ValueError
        If the voltage differs from the library's, the disks overlap (the fast model is then not
        valid; use the exact model), or the library does not cover the convergence angle.
    """

    def __init__(
        self,
        library: BeamLibrary,
        beam: Beam,
        detector: Detector,
        *,
        batch: int = 256,
        strain_contents: bool = True,
        content_step: float = DEFAULT_STEP,
        content_cache_mb: float = 1024.0,
        content_engine: str = "bloch",
        edge_subpixels: int = 1,
        content_device: str | torch.device = "cpu",
    ) -> None:
        if not (isinstance(edge_subpixels, int | np.integer) and 1 <= edge_subpixels <= 16):
            raise ValueError(f"edge_subpixels must be an integer in 1..16, got {edge_subpixels}")
        spec = library.spec
        if not np.isclose(beam.voltage_kv, spec.voltage_kv):
            raise ValueError(f"library is for {spec.voltage_kv} kV, beam is {beam.voltage_kv} kV")
        self.library = library
        self.material, self.zone_axis = spec.material, spec.zone_axis
        self.beam, self.detector, self.batch = beam, detector, batch
        self.alpha = beam.convergence_mrad
        self.pixel = detector.mrad_per_pixel
        self.wavelength_mrad_a = beam.wavelength_nm * 10.0 * 1e3  # theta[mrad] = this * g[1/A]

        theta0 = np.hypot(*library.g_inv_a.T) * self.wavelength_mrad_a
        spacing = np.min(theta0[theta0 > 0])
        if 2 * self.alpha >= spacing:
            raise ValueError(
                f"CBED disks overlap ({2 * self.alpha:.2f} mrad diameter, nearest beam at "
                f"{spacing:.2f} mrad): the fast model is not valid here; use forward='exact'"
            )
        self.k_margin = library.k_mrad[-1] - self.alpha - self.pixel
        if self.k_margin < 0:
            raise ValueError(
                f"library covers |k| <= {library.k_mrad[-1]} mrad, too small for {self.alpha} mrad"
            )

        radius_px = self.alpha / self.pixel
        reach = int(np.ceil(radius_px + 1.0))
        oy, ox = np.mgrid[-reach : reach + 1, -reach : reach + 1]
        near = np.hypot(ox, oy) <= radius_px + 1.5  # covers any sub-pixel disk position
        self.offsets = torch.as_tensor(
            np.stack([ox[near], oy[near]], axis=1), dtype=torch.int64
        )  # (M, 2)

        # beams whose disk can reach the frame for strains up to 5 %
        centres = (
            np.asarray(detector.center_px) + library.g_inv_a * self.wavelength_mrad_a / self.pixel
        )
        slack = reach + 1 + 0.05 * np.hypot(*(centres - detector.center_px).T)[:, None]
        rows, cols = detector.shape
        visible = np.all(
            (centres > -slack) & (centres < np.array([cols, rows]) - 1 + slack), axis=1
        )
        self.g = torch.as_tensor(library.g_inv_a[visible], dtype=torch.float64)
        self.hk = library.hk[visible]  # beam indices of the rendered disks
        # render into a frame padded so every visible patch lands inside: no per-pixel masks
        self.pad = int(np.ceil(slack[visible].max())) + reach + 1
        self.padded_shape = (rows + 2 * self.pad, cols + 2 * self.pad)
        self.offset_index = self.offsets[:, 1] * self.padded_shape[1] + self.offsets[:, 0]  # (M,)
        self.offsets_f = self.offsets.to(torch.float32)
        volume = library.intensity[:, visible].transpose(1, 0, 2, 3)  # (G, T, Ky, Kx)
        self.volume = torch.as_tensor(np.ascontiguousarray(volume), dtype=torch.float32).unsqueeze(
            1
        )
        self.contents = (
            StrainContents(library, content_step, content_engine, content_device)
            if strain_contents
            else None
        )
        if self.contents is not None:
            # each rendered beam's row among the corrected ones (-1: outside the Bloch basis)
            position = np.full(len(library.hk), -1)
            position[self.contents.in_basis] = np.arange(self.contents.in_basis.sum())
            rows = position[visible]
            self._corrected = np.flatnonzero(rows >= 0)
            self._correction_rows = rows[self._corrected]
        self._volumes: OrderedDict[tuple[int, int, int], torch.Tensor] = OrderedDict()
        self.content_cache_bytes = int(content_cache_mb * 2**20)
        self.per_pixel = self.pixel**2 / (np.pi * self.alpha**2)  # aperture fraction per pixel
        centres = (torch.arange(edge_subpixels, dtype=torch.float32) + 0.5) / edge_subpixels - 0.5
        self._subpixels = torch.cartesian_prod(centres, centres)  # (S, 2) offsets in pixels
        self.edge_subpixels = int(edge_subpixels)
        self.thickness_range = (float(library.thickness_nm[0]), float(library.thickness_nm[-1]))

    @classmethod
    def for_conditions(
        cls, material: str, zone_axis: str, beam: Beam, detector: Detector, **kwargs
    ) -> FastCBED:
        """Load (or build once and cache) the library for these conditions."""
        spec = LibrarySpec(material=material, zone_axis=zone_axis, voltage_kv=beam.voltage_kv)
        return cls(load_or_build(spec), beam, detector, **kwargs)

    def volume_for(self, voxel: tuple[int, int, int]) -> torch.Tensor:
        """Rendered beam intensities ``(G, 1, T, K, K)`` for a content-strain grid point."""
        if self.contents is None or voxel == (0, 0, 0):
            return self.volume
        if voxel in self._volumes:
            self._volumes.move_to_end(voxel)
            return self._volumes[voxel]
        delta = self.contents.correction(voxel, self._correction_rows).permute(1, 0, 2, 3)
        if len(self._corrected) == len(self.volume):
            corrected = self.volume[:, 0] + delta
        else:
            corrected = self.volume[:, 0].clone()
            corrected[torch.as_tensor(self._corrected)] += delta
        corrected = corrected.clamp_(min=0.0).unsqueeze(1)
        self._volumes[voxel] = corrected
        while len(self._volumes) > 1 and (
            len(self._volumes) * corrected.nbytes > self.content_cache_bytes
        ):
            self._volumes.popitem(last=False)
        return corrected

    def _check(self, thickness: np.ndarray, tilt: np.ndarray) -> None:
        lo, hi = self.thickness_range
        if np.any((thickness < lo) | (thickness > hi)):
            raise ValueError(f"thickness outside the fast model's range {lo:.1f}..{hi:.1f} nm")
        if np.any(np.hypot(tilt[:, 0], tilt[:, 1]) > self.k_margin):
            raise ValueError(
                f"crystal tilt beyond the fast model's range |tilt| <= {self.k_margin:.2f} mrad"
            )

    def patterns(
        self,
        descriptors: Mapping[str, np.ndarray],
        *,
        content_strain: tuple[float, float, float] | None = None,
    ) -> np.ndarray:
        """Noise-free patterns, ``(N, rows, cols)`` float32 fractions of the incident beam.

        ``content_strain`` renders every frame with the disk contents of that one strain
        (rounded to the grid) while the disks sit at each frame's own strain: e.g. to
        differentiate a pattern with respect to the disk positions alone.
        """
        d = {k: np.atleast_1d(np.asarray(v, dtype=np.float64)) for k, v in descriptors.items()}
        strain = np.stack([d["exx"], d["eyy"], d["exy"]], axis=1)
        tilt = np.stack([d["tilt_x_mrad"], d["tilt_y_mrad"]], axis=1)
        thickness = d["thickness_nm"]
        self._check(thickness, tilt)
        out = np.empty((len(thickness), *self.detector.shape), dtype=np.float32)
        if self.contents is None:
            groups = {(0, 0, 0): np.arange(len(thickness))}
        else:
            voxels = self.contents.voxels(
                strain if content_strain is None else np.broadcast_to(content_strain, strain.shape)
            )
            unique, inverse = np.unique(voxels, axis=0, return_inverse=True)
            groups = {
                tuple(int(v) for v in u): np.flatnonzero(inverse.ravel() == i)
                for i, u in enumerate(unique)
            }
        for voxel, frames in groups.items():
            volume = self.volume_for(voxel)
            for lo in range(0, len(frames), self.batch):
                sel = frames[lo : lo + self.batch]
                out[sel] = self._render(strain[sel], tilt[sel], thickness[sel], volume).numpy()
        return out

    def disk_centres_px(
        self, strain: np.ndarray, centre_px: tuple[float, float] | None = None
    ) -> torch.Tensor:
        """Disk centres (x, y) in detector pixels for each strain ``(exx, eyy, exy)``, (B, G, 2),
        around the optical axis ``centre_px`` (default: the detector's)."""
        e = torch.as_tensor(np.atleast_2d(strain), dtype=torch.float64)
        deform = torch.stack(
            [torch.stack([1 + e[:, 0], e[:, 2]], -1), torch.stack([e[:, 2], 1 + e[:, 1]], -1)], -2
        )  # (B, 2, 2), symmetric
        g_strained = self.g @ torch.linalg.inv(deform)  # rows g^T F^-1 = (F^-T g)^T
        centre = torch.tensor(
            self.detector.center_px if centre_px is None else centre_px, dtype=torch.float64
        )
        return centre + g_strained * (self.wavelength_mrad_a / self.pixel)

    def thickness_series(
        self,
        descriptors: Mapping[str, float],
        thickness_nm: np.ndarray,
        *,
        centre_px: tuple[float, float] | None = None,
    ) -> ThicknessSeries:
        """One crystal's noise-free patterns at every thickness of ``thickness_nm``.

        The same patterns as :meth:`patterns` with ``thickness_nm`` varied and the other
        descriptors held, but the disk geometry (positions, aperture weights, incident
        directions) is worked out once (:meth:`disk_pixels` for one crystal) and the stored
        thicknesses are interpolated for all of them in one step, for the pixels inside the
        frame and the aperture only: what a thickness scan needs
        (``tests/physics/test_cbed_fast.py`` checks the two agree).

        Parameters
        ----------
        descriptors : mapping of str to float
            ``exx, eyy, exy, tilt_x_mrad, tilt_y_mrad`` of the crystal (``thickness_nm`` is
            ignored).
        thickness_nm : ndarray
            ``(T,)`` thicknesses, inside the library's range.
        centre_px : (float, float), optional
            The optical axis (x, y) in pixels, instead of the detector's.
        """
        strain = np.array([[float(descriptors[k]) for k in ("exx", "eyy", "exy")]])
        tilt = np.array([[float(descriptors["tilt_x_mrad"]), float(descriptors["tilt_y_mrad"])]])
        thickness = np.atleast_1d(np.asarray(thickness_nm, dtype=np.float64))
        self._check(thickness, np.repeat(tilt, len(thickness), axis=0))
        voxel = (
            tuple(int(v) for v in self.contents.voxels(strain)[0])
            if self.contents is not None
            else (0, 0, 0)
        )
        centre = self.detector.center_px if centre_px is None else centre_px
        disks = self.disk_pixels(strain, tilt, np.array([centre]), voxel=voxel)
        kept = disks.mask[0]
        pixels, order = torch.sort(disks.pixels[0][kept])
        on_pixels = disks.stored()[0][kept][order].T.contiguous()  # (T_stored, S)
        stored_nm = disks.stored_thickness_nm
        series = ThicknessSeries(pixels, on_pixels, stored_nm, disks.shape, on_pixels, stored_nm)
        return series.at(thickness)

    def disk_pixels(
        self,
        strain: np.ndarray,
        tilt_mrad: np.ndarray,
        centre_px: np.ndarray,
        *,
        voxel: tuple[int, int, int] = (0, 0, 0),
    ) -> DiskPixels:
        """The disk geometry of a batch of crystals (the pixels each disk reaches inside the
        frame, their aperture areas and incident directions), ready to be read at any stored
        thickness (:class:`DiskPixels`).

        Parameters
        ----------
        strain : ndarray
            ``(B, 3)`` ``exx, eyy, exy`` of each crystal.
        tilt_mrad : ndarray
            ``(B, 2)`` its tilt.
        centre_px : ndarray
            ``(B, 2)`` its optical axis (x, y) in pixels.
        voxel : (int, int, int)
            The content-strain grid point whose disk contents are read (all the batch's;
            :meth:`~sim_devices.strain_contents.StrainContents.voxels` gives each crystal's).

        Raises
        ------
        ValueError
            If a tilt is beyond the fast model's range.
        """
        pixels, mask, corners, coefficients = self._disk_geometry(strain, tilt_mrad, centre_px)
        # the contents are fetched only now: for a new content-strain grid point that is a
        # multislice (7 to 11 s on 2 CPU cores), which the geometry never needs
        by_direction = self._by_direction(self.volume_for(voxel))  # (G, K, K, T_stored)
        return DiskPixels(
            pixels=pixels,
            mask=mask,
            corners=corners,
            coefficients=coefficients,
            by_direction=by_direction.reshape(-1, by_direction.shape[-1]),
            stored_thickness_nm=np.linspace(*self.thickness_range, by_direction.shape[-1]),
            shape=self.detector.shape,
        )

    def disk_entries(
        self, strain: np.ndarray, tilt_mrad: np.ndarray, centre_px: np.ndarray
    ) -> np.ndarray:
        """``(B,)`` pixels the disks of each crystal reach inside the frame: the entries of
        its row in :meth:`disk_pixels` (same arguments), without fetching any disk contents.

        Raises
        ------
        ValueError
            If a tilt is beyond the fast model's range.
        """
        mask = self._disk_geometry(strain, tilt_mrad, centre_px)[1]
        return mask.sum(1).numpy()

    def _disk_geometry(
        self, strain: np.ndarray, tilt_mrad: np.ndarray, centre_px: np.ndarray
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """``pixels, mask, corners, coefficients`` of :class:`DiskPixels` (see
        :meth:`disk_pixels`): the library's shape is all they need, not its values."""
        strain = np.atleast_2d(np.asarray(strain, dtype=np.float64))
        tilt = np.atleast_2d(np.asarray(tilt_mrad, dtype=np.float64))
        centre = torch.as_tensor(np.atleast_2d(np.asarray(centre_px, dtype=np.float64)))
        self._check(np.full(len(tilt), self.thickness_range[0]), tilt)
        b = len(strain)
        rows, cols = self.detector.shape
        disk_px = self.disk_centres_px(strain, (0.0, 0.0)) + centre[:, None, :]  # (B, G, 2)
        # the disks whose patch reaches the frame, then their pixels inside it, then those
        # the aperture reaches
        reach = int(self.offsets.abs().max())
        near, near_mask = compact(
            (disk_px[..., 0] > -reach - 1)
            & (disk_px[..., 0] < cols + reach)
            & (disk_px[..., 1] > -reach - 1)
            & (disk_px[..., 1] < rows + reach)
        )
        disk_px = torch.gather(disk_px, 1, near[..., None].expand(-1, -1, 2))
        origin = torch.round(disk_px)
        whole = origin.to(torch.int64)
        col = whole[..., 0:1] + self.offsets[:, 0]
        row = whole[..., 1:2] + self.offsets[:, 1]  # (B, G', M)
        on_frame = (row >= 0) & (row < rows) & (col >= 0) & (col < cols) & near_mask[..., None]
        frac = (origin - disk_px).to(torch.float32)  # pixel grid relative to the disk centre
        q = (self.offsets_f + frac[:, :, None, :]).mul_(self.pixel)  # (B, G', M, 2) mrad
        area = self._aperture_area(q).mul_(self.per_pixel)
        inside, mask = compact((on_frame & (area > 0)).reshape(b, -1))
        m = len(self.offsets)
        beam = torch.gather(near, 1, inside // m)
        area = torch.gather(area.reshape(b, -1), 1, inside) * mask
        q = torch.gather(q.reshape(b, -1, 2), 1, inside[..., None].expand(-1, -1, 2))
        pixels = torch.gather((row * cols + col).reshape(b, -1), 1, inside) * mask
        # bilinear in the incident direction, as grid_sample (align_corners, border) does
        k_lo, k_hi = float(self.library.k_mrad[0]), float(self.library.k_mrad[-1])
        n_k = self.volume.shape[-1]  # (G, 1, T_stored, K, K), as every content volume
        shift = torch.as_tensor(tilt, dtype=torch.float32)[:, None, :] + k_lo
        at = (q - shift).mul_((n_k - 1) / (k_hi - k_lo)).clamp_(0, n_k - 1)
        low = at.floor().to(torch.int64).clamp_(max=n_k - 2)
        frac = at - low
        fx, fy = frac[..., 0], frac[..., 1]
        base = (beam * n_k + low[..., 1]) * n_k + low[..., 0]
        corners = torch.stack([base, base + 1, base + n_k, base + n_k + 1], dim=-1)
        coefficients = torch.stack(
            [(1 - fx) * (1 - fy), fx * (1 - fy), (1 - fx) * fy, fx * fy], dim=-1
        ).mul_(area[..., None])
        return merge_shared_pixels(pixels, mask, corners, coefficients)

    def _by_direction(self, volume: torch.Tensor) -> torch.Tensor:
        """``volume`` (G, 1, T, K, K) as (G, K, K, T): all stored thicknesses of one beam and
        incident direction side by side (kept for the last volume asked for)."""
        cached = getattr(self, "_by_direction_pair", None)  # one tuple: safe across threads
        if cached is None or cached[0] is not volume:
            cached = (volume, volume[:, 0].permute(0, 2, 3, 1).contiguous())
            self._by_direction_pair = cached
        return cached[1]

    def _aperture_area(self, q: torch.Tensor) -> torch.Tensor:
        """Fraction of each pixel (centre ``q`` in mrad from the disk centre) inside the disk."""
        width = self.pixel / self.edge_subpixels
        # every sub-pixel's ramp is 1 (0) where the pixel centre is this far inside (outside)
        # the edge: only the pixels in between are integrated
        reach = float(self._subpixels.abs().max()) * np.sqrt(2.0) * self.pixel + width / 2
        distance = q.norm(dim=-1)
        area = (distance <= self.alpha - reach).to(q.dtype)
        edge = torch.nonzero((distance > self.alpha - reach) & (distance < self.alpha + reach))
        q_edge = q[tuple(edge.T)]
        part = torch.zeros(len(q_edge), dtype=q.dtype)
        for offset in self._subpixels * self.pixel:
            part += (
                (q_edge + offset).norm(dim=-1).sub_(self.alpha).div_(-width).add_(0.5).clamp_(0, 1)
            )
        area[tuple(edge.T)] = part.div_(len(self._subpixels))
        return area

    def _render(
        self, strain: np.ndarray, tilt: np.ndarray, thickness: np.ndarray, volume: torch.Tensor
    ) -> torch.Tensor:
        b = len(thickness)
        rows, cols = self.detector.shape
        prow, pcol = self.padded_shape
        disk_px = self.disk_centres_px(strain)  # (B, G, 2)
        origin = torch.round(disk_px)
        frac = (origin - disk_px).to(torch.float32)  # pixel grid relative to the disk centre
        q = (self.offsets_f + frac[:, :, None, :]).mul_(self.pixel)  # (B, G, M, 2) mrad
        weight = self._aperture_area(q)
        k_lo, k_hi = float(self.library.k_mrad[0]), float(self.library.k_mrad[-1])
        t_lo, t_hi = self.thickness_range
        g_count, m = q.shape[1], q.shape[2]
        grid = torch.empty((g_count, b, m, 1, 3), dtype=torch.float32)
        shift = torch.as_tensor(tilt, dtype=torch.float32)[:, None, None, :] + k_lo
        grid[..., 0, :2] = q.sub_(shift).mul_(2.0 / (k_hi - k_lo)).sub_(1.0).permute(1, 0, 2, 3)
        z = torch.as_tensor((thickness - t_lo) / (t_hi - t_lo) * 2 - 1, dtype=torch.float32)
        grid[..., 0, 2] = z[None, :, None]
        values = torch.nn.functional.grid_sample(
            volume, grid, mode="bilinear", padding_mode="border", align_corners=True
        )[:, 0, :, :, 0].permute(1, 0, 2)  # (B, G, M)
        values = values.mul_(weight).mul_(self.per_pixel)
        corner = origin.to(torch.int64) + self.pad
        corner[..., 0].clamp_(0, pcol - 1)
        corner[..., 1].clamp_(0, prow - 1)
        index = (corner[..., 1] * pcol + corner[..., 0])[
            :, :, None
        ] + self.offset_index  # (B, G, M)
        frames = torch.zeros((b, prow * pcol), dtype=torch.float32)
        frames.scatter_add_(
            1, index.reshape(b, -1).clamp_(0, prow * pcol - 1), values.reshape(b, -1)
        )
        frames = frames.reshape(b, prow, pcol)
        return frames[:, self.pad : self.pad + rows, self.pad : self.pad + cols]
