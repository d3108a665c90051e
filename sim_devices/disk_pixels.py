"""The pixels a batch of crystals' disks reach, ready to be read at any stored thickness.

:meth:`sim_devices.cbed_fast.FastCBED.disk_pixels` works out the disk geometry of a batch of
crystals side by side (each frame's pixels in its own row, padded), so a thickness scan of
many frames costs a few large torch operations for the whole batch instead of some 60 small
ones per frame; :meth:`DiskPixels.stored` reads every stored thickness of every entry at once
and :meth:`DiskPixels.at` interpolates any others from those (:func:`stored_lerp`, as
:meth:`sim_devices.cbed_fast.ThicknessSeries.at` does).
:meth:`~sim_devices.cbed_fast.FastCBED.thickness_series` is the same geometry for one crystal,
which ``tests/physics/test_cbed_fast.py`` checks against the rendered patterns;
``tests/physics/test_disk_pixels.py`` checks that each row of a batch equals its crystal alone.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass
class DiskPixels:
    """Disk geometry of a batch of ``B`` crystals on the detector, ``L`` entries per row.

    Attributes
    ----------
    pixels : Tensor
        ``(B, L)`` int64 flat frame index (``row * columns + column``) of each entry; padding
        entries (``mask`` False) hold 0.
    mask : Tensor
        ``(B, L)`` bool: the entry is a pixel some disk reaches. Each pixel appears once per
        row (where two disks share a pixel, their parts are summed into one entry).
    corners : Tensor
        ``(B, L, 4k)`` int64 flat index into the beam library's ``(G, K, K)``
        incident-direction grid of the four directions each entry's value is interpolated from
        (``k`` disks reach the pixel; mostly 1).
    coefficients : Tensor
        ``(B, L, 4k)`` float32 bilinear weights of those corners, times the entry's aperture
        area per pixel (0 on padding and unused corners).
    by_direction : Tensor
        ``(G * K * K, T_stored)`` the library's intensities, every stored thickness of one
        direction in a row.
    stored_thickness_nm : ndarray
        ``(T_stored,)`` the stored thicknesses (evenly spaced).
    shape : (int, int)
        The frame shape.
    """

    pixels: torch.Tensor
    mask: torch.Tensor
    corners: torch.Tensor
    coefficients: torch.Tensor
    by_direction: torch.Tensor
    stored_thickness_nm: np.ndarray
    shape: tuple[int, int]

    def __len__(self) -> int:
        return len(self.pixels)

    def entries(self, order: torch.Tensor, mask: torch.Tensor) -> DiskPixels:
        """The entries ``order`` picks from each row (``(B, L')`` int64; ``mask`` False:
        padding), e.g. with :func:`compact`."""
        width = self.corners.shape[-1]
        wide = order[..., None].expand(-1, -1, width)
        return DiskPixels(
            pixels=torch.gather(self.pixels, 1, order) * mask,
            mask=mask & torch.gather(self.mask, 1, order),
            corners=torch.gather(self.corners, 1, wide),
            coefficients=torch.gather(self.coefficients, 1, wide) * mask[..., None],
            by_direction=self.by_direction,
            stored_thickness_nm=self.stored_thickness_nm,
            shape=self.shape,
        )

    def stored(self) -> torch.Tensor:
        """``(B, L, T_stored)`` float32 fractions of the incident beam on each entry at every
        stored thickness (0 on padding entries)."""
        b, length, width = self.corners.shape
        table = self.by_direction

        def rows(c: int) -> torch.Tensor:  # index_select: several times faster than table[i]
            return table.index_select(0, self.corners[..., c].reshape(-1)).view(b, length, -1)

        out = rows(0).mul_(self.coefficients[..., 0:1])
        for c in range(1, width):
            out.addcmul_(rows(c), self.coefficients[..., c : c + 1])
        return out

    def at(self, stored: torch.Tensor, thickness_nm: np.ndarray) -> torch.Tensor:
        """The entries at ``(B, T)`` thicknesses, one row per crystal, from :meth:`stored`'s
        values: linear between the two stored thicknesses around each, as
        :meth:`sim_devices.cbed_fast.ThicknessSeries.at` reads them.

        Returns
        -------
        Tensor
            ``(B, L, T)`` float32.

        Raises
        ------
        ValueError
            If a thickness lies outside the stored ones.
        """
        lerp = stored_lerp(self.stored_thickness_nm, np.asarray(thickness_nm, dtype=np.float64))
        lerp = np.ascontiguousarray(lerp.transpose(0, 2, 1))  # (B, T_stored, T)
        return torch.bmm(stored, torch.as_tensor(lerp))


def stored_lerp(stored_nm: np.ndarray, thickness_nm: np.ndarray) -> np.ndarray:
    """Weights of the stored thicknesses ``stored_nm`` (evenly spaced) that give each of
    ``thickness_nm``: linear between the two around it.

    Returns
    -------
    ndarray
        ``thickness_nm.shape + (len(stored_nm),)`` float32.

    Raises
    ------
    ValueError
        If a thickness lies outside the stored ones.
    """
    t = np.asarray(thickness_nm, dtype=np.float64)
    if np.any((t < stored_nm[0]) | (t > stored_nm[-1])):
        raise ValueError(
            f"thickness outside the fast model's range {stored_nm[0]:.1f}..{stored_nm[-1]:.1f} nm"
        )
    place = (t - stored_nm[0]) / (stored_nm[-1] - stored_nm[0]) * (len(stored_nm) - 1)
    below = np.clip(np.floor(place).astype(np.int64), 0, len(stored_nm) - 2)
    above = place - below
    lerp = np.zeros((*t.shape, len(stored_nm)), dtype=np.float32)
    np.put_along_axis(lerp, below[..., None], (1.0 - above)[..., None], axis=-1)
    np.put_along_axis(lerp, below[..., None] + 1, above[..., None], axis=-1)
    return lerp


def compact(keep: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Where each row's kept entries go when the rows are packed to the front.

    Parameters
    ----------
    keep : Tensor
        ``(B, N)`` bool.

    Returns
    -------
    order, mask : Tensor
        ``(B, L)`` int64 column of each packed entry (``L``: the most any row keeps, at least
        1; in their original order) and bool: the entry is a kept one (False: padding, column 0).
    """
    count = keep.sum(1)
    length = max(int(count.max()), 1)
    rows, cols = keep.nonzero(as_tuple=True)
    order = torch.zeros((len(keep), length), dtype=torch.int64)
    order[rows, keep.cumsum(1)[rows, cols] - 1] = cols
    return order, torch.arange(length) < count[:, None]


def merge_shared_pixels(
    pixels: torch.Tensor, mask: torch.Tensor, corners: torch.Tensor, coefficients: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Make each pixel appear once per row.

    Where two disks reach the same pixel (touching disks, by a pixel's edge), the later
    entry's corners are appended to the first one's (a row may then need more than four
    corners) and the later entry is masked out. Rows without shared pixels are unchanged.
    """
    b, length = pixels.shape
    hits = torch.zeros((b, int(pixels.max()) + 1), dtype=torch.int32)
    if not bool((hits.scatter_add_(1, pixels, mask.to(torch.int32)) > 1).any()):
        return pixels, mask, corners, coefficients
    key = torch.where(mask, pixels, torch.full_like(pixels, -1))
    order = torch.argsort(key, dim=1, stable=True)
    ordered = torch.gather(key, 1, order)
    repeat = (ordered[:, 1:] == ordered[:, :-1]) & (ordered[:, 1:] >= 0)
    if not bool(repeat.any()):
        return pixels, mask, corners, coefficients
    # entries that repeat the one before them in sort order: fold each into the first entry
    # of its run (a run is rarely longer than two)
    rows, at = torch.nonzero(repeat, as_tuple=True)
    later = order[rows, at + 1]
    first_pos = at.clone()
    while True:
        back = repeat[rows, (first_pos - 1).clamp(min=0)] & (first_pos > 0)
        if not bool(back.any()):
            break
        first_pos = torch.where(back, first_pos - 1, first_pos)
    first = order[rows, first_pos]
    extra = int(torch.bincount(rows * length + first).max())
    width = corners.shape[-1]
    corners = torch.cat([corners, corners.new_zeros((b, length, width * extra))], dim=-1)
    coefficients = torch.cat(
        [coefficients, coefficients.new_zeros((b, length, width * extra))], dim=-1
    )
    slot = torch.zeros_like(pixels)
    for r, f, lat in zip(rows.tolist(), first.tolist(), later.tolist(), strict=True):
        slot[r, f] += 1
        lo = width * int(slot[r, f])
        corners[r, f, lo : lo + width] = corners[r, lat, :width]
        coefficients[r, f, lo : lo + width] = coefficients[r, lat, :width]
    mask = mask.clone()
    mask[rows, later] = False
    coefficients[rows, later] = 0.0
    return pixels, mask, corners, coefficients
