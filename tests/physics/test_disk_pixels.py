"""A batch's disk geometry (FastCBED.disk_pixels, FastCBED.disk_entries) against each crystal
alone.

``FastCBED.thickness_series`` is the geometry of one crystal (checked against the rendered
patterns in ``test_cbed_fast.py``); here the rows of a batch, whose crystals reach different
numbers of pixels and are padded to the longest, must each read as that crystal alone.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sim_devices.cbed_fast import FastCBED
from sim_devices.disk_pixels import DiskPixels, compact, merge_shared_pixels

#: Crystals of one batch: strained, tilted, the optical axis off the detector's centre.
STRAIN = np.array([[0.0, 0.0, 0.0], [0.004, -0.006, 0.001], [-0.018, 0.02, -0.01]])
TILT = np.array([[0.0, 0.0], [0.8, -1.1], [-2.5, 1.7]])
CENTRE = np.array([[63.5, 63.5], [64.1, 63.1], [61.8, 66.3]])


def _descriptors(i: int) -> dict[str, float]:
    return dict(
        zip(("exx", "eyy", "exy"), STRAIN[i], strict=True),
        tilt_x_mrad=TILT[i, 0],
        tilt_y_mrad=TILT[i, 1],
    )


@pytest.mark.parametrize("edge_subpixels", [1, 3])
def test_each_row_is_that_frames_thickness_series(edge_subpixels):
    model = FastCBED.for_conditions(
        "Si", "110", *_beam_and_detector(), strain_contents=False, edge_subpixels=edge_subpixels
    )
    disks = model.disk_pixels(STRAIN, TILT, CENTRE)
    every = disks.stored()
    between = np.array([[10.0, 10.3, 33.7], [61.1, 85.0, 12.0], [40.0, 2.5, 79.9]])
    some = disks.at(every, between)
    for i in range(len(STRAIN)):
        series = model.thickness_series(
            _descriptors(i), disks.stored_thickness_nm, centre_px=tuple(CENTRE[i])
        )
        kept = disks.mask[i]
        pixels = disks.pixels[i][kept]
        order = torch.argsort(pixels)
        np.testing.assert_array_equal(pixels[order], series.pixels)  # the same pixels, once
        np.testing.assert_allclose(
            every[i][kept][order], series.stored_values.T, rtol=1e-5, atol=1e-9
        )
        np.testing.assert_allclose(
            some[i][kept][order], series.at(between[i]).values.T, rtol=1e-5, atol=1e-9
        )
        assert float(every[i][~kept].abs().sum()) == 0.0  # padding reads nothing
    with pytest.raises(ValueError, match="thickness outside"):
        disks.at(every, np.full((3, 1), 500.0))


def test_entries_picked_from_each_row_read_the_same(fast_model):
    disks = fast_model.disk_pixels(STRAIN, TILT, CENTRE)
    even = torch.as_tensor((np.add.outer(np.arange(128) % 2, np.arange(128) % 2) == 0).reshape(-1))
    order, mask = compact(disks.mask & even[disks.pixels])
    thin = disks.entries(order, mask)
    every, thinned = disks.stored(), thin.stored()
    for i in range(len(STRAIN)):
        wanted = disks.mask[i] & even[disks.pixels[i]]
        assert int(thin.mask[i].sum()) == int(wanted.sum()) > 0
        assert bool(even[thin.pixels[i][thin.mask[i]]].all())
        np.testing.assert_array_equal(thinned[i][thin.mask[i]], every[i][wanted])


def test_disk_entries_count_each_rows_entries_without_reading_contents(fast_model, monkeypatch):
    """The refiner sizes its chunks by these counts; for strained-cell contents a volume is a
    multislice, so counting must not fetch one."""
    rows = fast_model.disk_pixels(STRAIN, TILT, CENTRE).mask.sum(1).numpy()

    def no_contents(voxel):
        raise AssertionError(f"disk contents fetched for {voxel}")

    monkeypatch.setattr(fast_model, "volume_for", no_contents)
    counts = fast_model.disk_entries(STRAIN, TILT, CENTRE)
    np.testing.assert_array_equal(counts, rows)
    assert len(set(counts.tolist())) > 1  # the crystals reach different numbers of pixels
    with pytest.raises(AssertionError, match="contents fetched"):
        fast_model.disk_pixels(STRAIN, TILT, CENTRE)


def test_a_tilt_beyond_the_library_is_refused(fast_model):
    with pytest.raises(ValueError, match="tilt beyond"):
        fast_model.disk_pixels(STRAIN[:1], np.array([[40.0, 0.0]]), CENTRE[:1])


def test_compact_packs_each_rows_kept_entries_in_order():
    keep = torch.tensor([[0, 1, 1, 0, 1], [1, 0, 0, 0, 0], [0, 0, 0, 0, 0]], dtype=torch.bool)
    order, mask = compact(keep)
    np.testing.assert_array_equal(order[mask.bool()], [1, 2, 4, 0])
    np.testing.assert_array_equal(mask, [[1, 1, 1], [1, 0, 0], [0, 0, 0]])


def test_a_pixel_two_disks_reach_is_one_entry_with_both_parts():
    """Touching disks share edge pixels: the shared pixel must be counted once, with the sum
    of both disks' parts (the per-frame series sums them with index_add)."""
    table = torch.arange(24, dtype=torch.float32).reshape(12, 2)  # 12 directions, 2 thicknesses
    pixels = torch.tensor([[5, 9, 5, 0], [3, 4, 6, 0]])
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 1, 0]], dtype=torch.bool)
    corners = torch.arange(4).repeat(2, 4, 1) + torch.tensor([0, 4, 8, 0])[None, :, None] % 12
    coefficients = torch.full((2, 4, 4), 0.25) * mask[..., None]
    merged = DiskPixels(
        *merge_shared_pixels(pixels, mask, corners, coefficients),
        by_direction=table,
        stored_thickness_nm=np.array([10.0, 20.0]),
        shape=(4, 4),
    )
    plain = DiskPixels(pixels, mask, corners, coefficients, table, np.array([10.0, 20.0]), (4, 4))
    alone = plain.stored()
    both = merged.stored()
    np.testing.assert_array_equal(merged.mask, [[1, 1, 0, 0], [1, 1, 1, 0]])
    np.testing.assert_allclose(both[0, 0], alone[0, 0] + alone[0, 2])  # pixel 5: both disks
    np.testing.assert_allclose(both[0, 1], alone[0, 1])
    np.testing.assert_allclose(both[1], alone[1])  # no shared pixel: unchanged
    assert float(both[0, 2:].abs().max()) == 0.0


def _beam_and_detector():
    from sim_devices import Beam, Detector

    return Beam(), Detector()
