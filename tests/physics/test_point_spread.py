"""The detector point-spread: a normalised Gaussian blur that widens edges and keeps counts."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sim_devices.point_spread import MAX_SIGMA_PX, blur_patterns, gaussian_kernel


def _disk(size: int = 64, radius: float = 12.0, centre: tuple[float, float] = (30.3, 33.6)):
    y, x = np.mgrid[:size, :size]
    return (np.hypot(x - centre[0], y - centre[1]) <= radius).astype(np.float32)


def _edge_width(profile: np.ndarray) -> int:
    """Pixels between 10 % and 90 % of the peak along a profile through the disk's edge."""
    level = profile / profile.max()
    return int(np.sum((level > 0.1) & (level < 0.9)))


def test_the_kernel_is_normalised_symmetric_and_has_its_width():
    kernel = gaussian_kernel(1.5).double()
    assert kernel.sum().item() == pytest.approx(1.0, abs=1e-6)
    torch.testing.assert_close(kernel, kernel.flip(0))
    x = torch.arange(len(kernel), dtype=torch.float64) - len(kernel) // 2
    assert torch.sqrt((kernel * x**2).sum()).item() == pytest.approx(1.5, rel=0.01)


def test_blur_keeps_counts_and_centre_and_widens_the_edge():
    disk = _disk()
    blurred = blur_patterns(disk[None], 1.5)[0]
    assert blurred.dtype == np.float32 and blurred.shape == disk.shape
    assert blurred.sum() == pytest.approx(disk.sum(), rel=1e-5)  # dark at the border
    y, x = np.mgrid[: disk.shape[0], : disk.shape[1]]
    for image in (disk, blurred):
        centroid = ((image * x).sum() / image.sum(), (image * y).sum() / image.sum())
        np.testing.assert_allclose(centroid, (30.3, 33.6), atol=0.05)
    row = 34  # through the disk, near its centre
    assert _edge_width(blurred[row, :31]) >= _edge_width(disk[row, :31]) + 2


def test_sigma_zero_is_the_identity_on_any_batch_shape():
    frames = np.random.default_rng(0).poisson(5.0, (2, 3, 16, 20)).astype(np.uint16)
    np.testing.assert_array_equal(blur_patterns(frames, 0.0), frames.astype(np.float32))
    blurred = blur_patterns(torch.as_tensor(frames.astype(np.float32)), 0.7)
    assert blurred.shape == frames.shape
    # each frame is blurred on its own: a batch gives what one frame gives
    np.testing.assert_allclose(blurred[1, 2], blur_patterns(frames[1, 2], 0.7), rtol=1e-6)


@pytest.mark.parametrize("sigma", [-0.1, float("nan"), float("inf"), MAX_SIGMA_PX + 0.1])
def test_bad_sigma_is_refused(sigma):
    with pytest.raises(ValueError, match="point-spread sigma"):
        blur_patterns(np.ones((8, 8)), sigma)


def test_patterns_without_two_detector_axes_are_refused():
    with pytest.raises(ValueError, match="two detector axes"):
        blur_patterns(np.ones(8), 1.0)
