"""The sample-file contract: loading, refusing bad files, interpolation."""

from __future__ import annotations

import numpy as np
import pytest

from sim_devices import BUILTIN_SAMPLES, DESCRIPTOR_NAMES, Sample, SampleFileError, builtin_sample


def _write(path, **overrides):
    ny, nx = 4, 5
    content = dict(
        material=np.array("Si"),
        zone_axis=np.array("110"),
        pixel_size_nm=np.array(2.0),
        **{k: np.zeros((ny, nx)) for k in DESCRIPTOR_NAMES},
    )
    content["thickness_nm"] = np.full((ny, nx), 30.0)
    content.update(overrides)
    content = {k: v for k, v in content.items() if v is not None}
    np.savez(path, **content)
    return path


def test_roundtrip(tmp_path):
    sample = builtin_sample("strained_layer")
    loaded = Sample.from_npz(sample.to_npz(tmp_path / "s.npz"))
    assert (loaded.material, loaded.zone_axis, loaded.pixel_size_nm) == ("Si", "110", 2.0)
    for key in DESCRIPTOR_NAMES:
        np.testing.assert_array_equal(loaded.maps[key], sample.maps[key])


def test_unknown_keys_are_ignored(tmp_path):
    sample = Sample.from_npz(_write(tmp_path / "s.npz", comment=np.array("hello")))
    assert sample.shape == (4, 5)


@pytest.mark.parametrize("key", ["material", "zone_axis", "pixel_size_nm", *DESCRIPTOR_NAMES])
def test_missing_key_is_named(tmp_path, key):
    with pytest.raises(SampleFileError, match=f"missing required key '{key}'"):
        Sample.from_npz(_write(tmp_path / "s.npz", **{key: None}))


def test_shape_mismatch_is_named(tmp_path):
    with pytest.raises(SampleFileError, match="'eyy' has shape \\(3, 5\\)"):
        Sample.from_npz(_write(tmp_path / "s.npz", eyy=np.zeros((3, 5))))


def test_nan_is_named(tmp_path):
    exy = np.zeros((4, 5))
    exy[2, 3] = np.nan
    with pytest.raises(SampleFileError, match="'exy' contains NaN"):
        Sample.from_npz(_write(tmp_path / "s.npz", exy=exy))


def test_not_a_map_is_named(tmp_path):
    with pytest.raises(SampleFileError, match="'tilt_x_mrad' must be a 2-D"):
        Sample.from_npz(_write(tmp_path / "s.npz", tilt_x_mrad=np.zeros(20)))


def test_non_positive_thickness_refused(tmp_path):
    with pytest.raises(SampleFileError, match="thickness_nm"):
        Sample.from_npz(_write(tmp_path / "s.npz", thickness_nm=np.zeros((4, 5))))


def test_missing_and_garbage_files(tmp_path):
    with pytest.raises(SampleFileError, match="not found"):
        Sample.from_npz(tmp_path / "nope.npz")
    bad = tmp_path / "bad.npz"
    bad.write_text("not a zip")
    with pytest.raises(SampleFileError, match="not a readable"):
        Sample.from_npz(bad)


@pytest.mark.parametrize("name", sorted(BUILTIN_SAMPLES))
def test_builtin_samples_are_physical(name):
    sample = builtin_sample(name)
    assert sample.material == "Si" and sample.zone_axis == "110"
    assert all(np.abs(sample.maps[k]).max() <= 0.02 for k in ("exx", "eyy", "exy"))
    assert 10 <= sample.maps["thickness_nm"].min() and sample.maps["thickness_nm"].max() <= 80
    assert all(np.abs(sample.maps[k]).max() <= 3 for k in ("tilt_x_mrad", "tilt_y_mrad"))
    # not flat: there is something to map
    assert np.ptp(sample.maps["exx"]) + np.ptp(sample.maps["eyy"]) > 0.005


def test_unknown_builtin():
    with pytest.raises(ValueError, match="unknown built-in sample 'x'"):
        builtin_sample("x")


def test_descriptors_at_pixel_centres_and_between():
    sample = builtin_sample("si_inclusion")
    i, j = 7, 11
    at = sample.descriptors_at(sample.x_nm[j], sample.y_nm[i])
    for key in DESCRIPTOR_NAMES:
        assert at[key] == pytest.approx(sample.maps[key][i, j])
    mid = sample.descriptors_at((sample.x_nm[j] + sample.x_nm[j + 1]) / 2, sample.y_nm[i])
    expected = (sample.maps["thickness_nm"][i, j] + sample.maps["thickness_nm"][i, j + 1]) / 2
    assert mid["thickness_nm"] == pytest.approx(expected)


def test_descriptors_outside_refused():
    sample = builtin_sample()
    with pytest.raises(ValueError, match="outside the field of view"):
        sample.descriptors_at(-1.0, 5.0)
