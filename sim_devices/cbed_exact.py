"""Exact CBED: abTEM multislice of a strained, tilted crystal block under a convergent probe."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from ase import Atoms

from .materials import ZoneAxisCrystal, zone_axis_crystal
from .optics import Beam, Detector
from .pixel_dft import pixel_integrated_pattern
from .rebin import rebin_pattern


@dataclass(frozen=True)
class MultisliceSettings:
    """Numerical settings shared by the exact model and the fast model's library.

    Parameters
    ----------
    sampling_a : float
        Real-space sampling in Angstrom. 0.05 A is converged for Si [110] at 80 nm (beam
        intensities correlate 0.9999 with 0.025 A; 0.2 A gives only 0.85: the potential's
        high-frequency components matter in thick crystals, and abTEM's sub-pixel placement of
        atoms smooths them for atoms off the grid, i.e. in strained crystals).
    box_nm : float
        Lateral size of the crystal block under the probe; sets the angular sampling
        ``lambda / box`` of the exact pattern before it is integrated onto detector pixels.
        Lattice-fit disk positions of an 80 nm Si [110] crystal move by 0.087 px from 8 to
        12.8 nm and by 0.044 px from 12.8 to 19.2 nm (the converged reference of the slow
        fast-vs-exact test); cost grows with ``box_nm ** 2``.
    slices_per_cell : int
        Multislice slices per zone-axis repeat.
    parametrization : str
        Atomic potential parametrization of abTEM.
    """

    sampling_a: float = 0.05
    box_nm: float = 12.8
    slices_per_cell: int = 2
    parametrization: str = "lobato"


def wave_chunk_bytes(gpts: tuple[int, int]) -> int:
    """The dask chunk size (bytes) the exact model gives abTEM: its configured one, or room for
    a few complex waves of ``gpts`` where that is larger (larger blocks, finer sampling)."""
    import abtem
    from dask.utils import parse_bytes

    configured = abtem.config.get("dask.chunk-size")
    configured = parse_bytes(configured) if isinstance(configured, str) else int(configured)
    return max(configured, 4 * 16 * int(np.prod(gpts)))  # four complex128 waves


def strain_matrix(exx: float, eyy: float, exy: float) -> np.ndarray:
    """In-plane deformation gradient ``I + e`` for a symmetric (tensor) shear strain ``exy``."""
    return np.array([[1.0 + exx, exy], [exy, 1.0 + eyy]])


def unit_cell_gpts(crystal: ZoneAxisCrystal, sampling_a: float) -> tuple[np.ndarray, np.ndarray]:
    """Even grid points of the zone-axis cell near ``sampling_a``, and the cell lengths (A).

    The exact model and the fast model's library use the same sampling so that both see the
    same discretised potential (odd grids leak intensity into forbidden beams in abTEM).
    """
    lengths = np.asarray(crystal.unit_cell().cell.lengths())
    gpts = 2 * np.rint(lengths[:2] / (2 * sampling_a)).astype(int)
    return gpts, lengths


def whole_slices(
    thickness_nm: np.ndarray | float, crystal: ZoneAxisCrystal, settings: MultisliceSettings
) -> np.ndarray:
    """Thicknesses rounded to whole multislice slices (at least one), as slice counts."""
    slice_a = crystal.cell_lengths_a[2] / settings.slices_per_cell
    return np.maximum(1, np.rint(np.asarray(thickness_nm, float) * 10.0 / slice_a)).astype(int)


def strained_block(
    crystal: ZoneAxisCrystal,
    repeats: np.ndarray,
    n_slices: int,
    slices_per_cell: int,
    strain: tuple[float, float, float],
) -> Atoms:
    """A block of ``repeats`` unstrained cells laterally, strained in-plane about its centre.

    The block is cut from a larger strained lattice, so under strain it is not periodic laterally;
    with the probe at the centre the edges lie far outside the probe and do not affect the
    pattern. Along the beam it holds enough cells for ``n_slices`` slices.
    """
    cell = crystal.unit_cell()
    ax, ay, az = cell.cell.lengths()
    box = np.asarray(repeats) * (ax, ay)
    margin = 1.1 / (1.0 - 0.05)  # covers strains up to 5 % after cropping
    nx, ny = (np.ceil(box * margin / (ax, ay)).astype(int) // 2) * 2 + 2
    nz = int(np.ceil(n_slices / slices_per_cell))
    lattice = cell.repeat((int(nx), int(ny), nz))
    pos = lattice.positions
    centre = np.array([nx * ax / 2, ny * ay / 2])
    pos[:, :2] = (pos[:, :2] - centre) @ strain_matrix(*strain).T + box / 2
    inside = np.all((pos[:, :2] >= -1e-9) & (pos[:, :2] < box - 1e-9), axis=1)
    return Atoms(
        lattice.numbers[inside], positions=pos[inside], cell=[box[0], box[1], nz * az], pbc=True
    )


class ExactCBED:
    """CBED patterns by abTEM multislice (the reference the fast model is validated against).

    A convergent probe at the centre of a strained crystal block; crystal tilt is applied as the
    opposite beam tilt in the Fresnel propagator, so the transmitted disk stays on the optical
    axis. The pattern is integrated onto the detector pixels (area-conserving) and gives the
    fraction of incident electrons per pixel. No thermal diffuse scattering (static lattice).

    Parameters
    ----------
    material, zone_axis : str
        Crystal and beam direction, see :mod:`sim_devices.materials`.
    beam : Beam
        Voltage and convergence semi-angle.
    detector : Detector
        Pixel grid and calibration.
    settings : MultisliceSettings, optional
        Numerical settings.
    pixel_subsamples : int, optional
        0 (default) rebins the exit wave's FFT, which samples the pattern every
        ``lambda / box`` in angle (1.8 FFT bins per detector pixel on a 12.8 nm block, 2.7 on
        19.2 nm, at every voltage). ``n >= 1`` evaluates the exit wave's Fourier transform
        exactly on ``n x n`` points in every pixel and averages them
        (:mod:`sim_devices.pixel_dft`): what a detector pixel integrates. It does not converge
        a small block (the wave itself depends on the block), but it removes the staircase the
        rebinning puts on every disk edge; that moves the disk lattice's scale by a few
        hundredths of a percent (on 12.8 nm at 80 kV outward, on 19.2 nm at 200 kV inward; see
        the forward-models how-to).
    soft_aperture : bool, optional
        abTEM's default probe aperture (True): its amplitude falls linearly over one FFT bin
        (``lambda / box``) centred on the semi-angle, so the disk's intensity edge, the square,
        sits about 0.2 bin inside it. False: a hard aperture on the FFT grid, as a physical one.
    """

    def __init__(
        self,
        material: str,
        zone_axis: str,
        beam: Beam,
        detector: Detector,
        settings: MultisliceSettings | None = None,
        pixel_subsamples: int = 0,
        soft_aperture: bool = True,
    ) -> None:
        if pixel_subsamples < 0:
            raise ValueError(f"pixel_subsamples must be 0 or more, got {pixel_subsamples}")
        self.pixel_subsamples = int(pixel_subsamples)
        self.soft_aperture = bool(soft_aperture)
        self.material = material
        self.zone_axis = zone_axis
        self.crystal = zone_axis_crystal(material, zone_axis)
        self.beam = beam
        self.detector = detector
        self.settings = settings or MultisliceSettings()
        self.slice_thickness_a = self.crystal.cell_lengths_a[2] / self.settings.slices_per_cell

    def patterns(self, descriptors: Mapping[str, np.ndarray]) -> np.ndarray:
        """Patterns for each set of descriptors, ``(N, rows, cols)`` float32."""
        values = {k: np.atleast_1d(np.asarray(descriptors[k], float)) for k in descriptors}
        n = len(values["exx"])
        out = np.empty((n, *self.detector.shape), dtype=np.float32)
        for i in range(n):
            out[i] = self.thickness_series(
                (values["exx"][i], values["eyy"][i], values["exy"][i]),
                (values["tilt_x_mrad"][i], values["tilt_y_mrad"][i]),
                [values["thickness_nm"][i]],
            )[0]
        return out

    def thickness_series(
        self,
        strain: tuple[float, float, float],
        tilt_mrad: tuple[float, float],
        thicknesses_nm: Sequence[float],
    ) -> np.ndarray:
        """Patterns at several thicknesses from a single multislice run (exit planes).

        Thicknesses are rounded to whole slices (``slice_thickness_a``).

        Returns
        -------
        ndarray
            ``(len(thicknesses_nm), rows, cols)`` float32.
        """
        waves, sampling = self.exit_waves(strain, tilt_mrad, thicknesses_nm)
        return self.detect(waves, sampling, self.pixel_subsamples)

    def exit_waves(
        self,
        strain: tuple[float, float, float],
        tilt_mrad: tuple[float, float],
        thicknesses_nm: Sequence[float],
    ) -> tuple[np.ndarray, tuple[float, float]]:
        """The probe's exit waves at several thicknesses (one multislice run).

        Returns
        -------
        waves : ndarray
            ``(len(thicknesses_nm), x, y)`` complex64, one exit wave per thickness.
        sampling_a : tuple of float
            Real-space grid step along x and y, Angstrom.
        """
        import abtem

        thicknesses = np.asarray(thicknesses_nm, float)
        if np.any(thicknesses <= 0):
            raise ValueError("thicknesses must be positive")
        n_slices = whole_slices(thicknesses, self.crystal, self.settings)
        cell_gpts, cell_lengths = unit_cell_gpts(self.crystal, self.settings.sampling_a)
        repeats = np.maximum(1, np.rint(self.settings.box_nm * 10.0 / cell_lengths[:2])).astype(int)
        box = repeats * cell_lengths[:2]
        gpts = tuple(int(v) for v in repeats * cell_gpts)
        block = strained_block(
            self.crystal, repeats, n_slices.max(), self.settings.slices_per_cell, strain
        )
        potential = abtem.Potential(
            block,
            gpts=gpts,
            slice_thickness=self.slice_thickness_a,
            projection="infinite",
            parametrization=self.settings.parametrization,
            exit_planes=tuple(int(s) - 1 for s in sorted(set(n_slices))),
        )
        probe = abtem.Probe(
            energy=self.beam.energy_ev,
            semiangle_cutoff=self.beam.convergence_mrad,
            tilt=(-float(tilt_mrad[0]), -float(tilt_mrad[1])),
            soft=self.soft_aperture,
        )
        # abTEM refuses to chunk a wave larger than its dask chunk size (128 MB by default: a
        # block of about 20 nm at 0.05 A); one probe position is one wave, so let it be one chunk
        with abtem.config.set({"dask.chunk-size": f"{wave_chunk_bytes(gpts)}B"}):
            exit_waves = probe.multislice(potential, scan=np.array([box / 2]))
            waves = np.asarray(exit_waves.compute(progress_bar=False).array)
        waves = waves.reshape(-1, *gpts)  # (exit plane, x, y)
        order = {s: i for i, s in enumerate(sorted(set(n_slices)))}
        sampling = tuple(float(v) for v in box / np.asarray(gpts))
        return waves[[order[s] for s in n_slices]], sampling

    def detect(
        self, waves: np.ndarray, sampling_a: tuple[float, float], pixel_subsamples: int = 0
    ) -> np.ndarray:
        """Detector patterns ``(N, rows, cols)`` float32 of exit waves ``(N, x, y)``.

        ``pixel_subsamples`` 0 integrates the waves' FFT samples (every ``lambda / box`` in
        angle) onto the pixels, area-conserving; ``n >= 1`` averages the exact transform over
        ``n x n`` points in every pixel (see the class).
        """
        wavelength_a = self.beam.wavelength_nm * 10.0
        angles, pixel = self.detector.angles_mrad(), self.detector.mrad_per_pixel
        if pixel_subsamples:
            det = pixel_integrated_pattern(
                waves, sampling_a, wavelength_a, angles, pixel, pixel_subsamples
            )
            return det.astype(np.float32)
        gpts = waves.shape[-2:]
        d_mrad = [wavelength_a * 1e3 / (n * step) for n, step in zip(gpts, sampling_a, strict=True)]
        source = tuple((np.arange(n) - n // 2) * d for n, d in zip(gpts, d_mrad, strict=True))
        det = np.empty((len(waves), *self.detector.shape), dtype=np.float32)
        for i, wave in enumerate(waves):  # one plane at a time: a 19.2 nm wave is 118 MB
            # |FFT|^2 on centred axes, as abTEM's diffraction_patterns(fftshift=True)
            pattern = np.fft.fftshift(np.abs(np.fft.fft2(wave)) ** 2).astype(np.float64)
            det[i] = rebin_pattern(pattern, source, tuple(d_mrad), angles, pixel)
        return det
