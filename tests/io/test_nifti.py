"""pyrodip.io.nifti: NIfTI files read as oriented slices scaled over the volume, and slices
written back with the input's header."""

import sys

import nibabel as nib
import numpy as np
import pytest

from pyrodip.errors import InvalidInputError
from pyrodip.io.images import load_image
from pyrodip.io.volumes import read_volume, write_volume

RNG = np.random.default_rng(0)


DATA = RNG.integers(-1000, 3000, (20, 24, 6), dtype=np.int16)  # (X, Y, Z)


ORIGIN = (12.5, -30.0, 41.0)


AFFINES = {  # voxel axes (0.8, 0.9, 2.0 mm) and how a slice is shown (see nifti.py)
    "RAS": (np.diag([0.8, 0.9, 2.0, 1.0]), lambda xy: xy.T[::-1, ::-1]),
    "LAS": (np.diag([-0.8, 0.9, 2.0, 1.0]), lambda xy: xy.T[::-1, :]),
    "LPS": (np.diag([-0.8, -0.9, 2.0, 1.0]), lambda xy: xy.T),
}


def write_nifti(path, data=DATA, orientation="LPS"):
    affine = AFFINES[orientation][0].copy()
    affine[:3, 3] = ORIGIN
    image = nib.Nifti1Image(data, affine)
    image.header.set_qform(affine, code=1)  # scanner: qform and sform both set
    image.to_filename(path)
    return path


def min_max(values, over=None):
    """Min-max scaling by the range of ``over`` (default: of ``values`` itself)."""
    values = np.asarray(values, dtype=np.float64)
    over = values if over is None else over
    return (values - over.min()) / (over.max() - over.min())


@pytest.mark.parametrize("orientation", sorted(AFFINES))
def test_nifti_slices_are_oriented_and_scaled_over_the_volume(tmp_path, orientation):
    path = write_nifti(tmp_path / "volume.nii.gz", orientation=orientation)
    volume = read_volume(path)
    assert volume.kind == "nifti" and volume.slice_count == 6
    assert volume.images.shape == (6, 24, 20) and volume.images.dtype == np.float32
    assert (volume.low, volume.high) == (DATA.min(), DATA.max())
    view = AFFINES[orientation][1]
    for k in range(6):
        np.testing.assert_allclose(volume.images[k], min_max(view(DATA[:, :, k]), DATA), atol=1e-6)
        np.testing.assert_array_equal(load_image(path, slice_index=k), volume.images[k][None])
    np.testing.assert_array_equal(load_image(path), volume.images[3][None])  # the middle one
    np.testing.assert_allclose(volume.to_source_units(volume.images[2]), view(DATA[:, :, 2]),
                               atol=1e-3)


def test_nifti_scaling_rules(tmp_path):
    unsigned = RNG.integers(0, 200, (8, 8, 3), dtype=np.uint8)
    volume = read_volume(write_nifti(tmp_path / "u8.nii", unsigned))
    assert (volume.low, volume.high) == (0, 255)
    np.testing.assert_allclose(volume.images, unsigned.T / 255, atol=1e-7)

    unit = (RNG.random((8, 8, 3)) * 0.5).astype(np.float32)
    volume = read_volume(write_nifti(tmp_path / "unit.nii", unit))
    assert (volume.low, volume.high) == (0, 1)
    np.testing.assert_allclose(volume.images, unit.T, atol=1e-7)

    volume = read_volume(write_nifti(tmp_path / "flat.nii", np.full((8, 8, 3), 7, np.int16)))
    assert (volume.low, volume.high) == (7, 8) and not volume.images.any()

    scaled = nib.Nifti1Image(unsigned, np.eye(4))
    scaled.header.set_slope_inter(2.0, -10.0)  # uint8 on disk, but scaled: min-max
    scaled.to_filename(tmp_path / "scaled.nii")
    volume = read_volume(tmp_path / "scaled.nii")
    assert (volume.low, volume.high) == (int(unsigned.min()) * 2 - 10, int(unsigned.max()) * 2 - 10)


def test_nifti_nan_is_refused(tmp_path):
    data = RNG.random((8, 8, 3)) * 5
    data[1, 2, 0] = np.nan
    with pytest.raises(InvalidInputError, match="NaN or infinite voxels: replace them"):
        read_volume(write_nifti(tmp_path / "nan.nii", data))


def test_nifti_4d_needs_a_volume_index(tmp_path):
    series = np.stack([DATA, DATA // 2, -DATA], axis=-1)  # (X, Y, Z, T)
    path = write_nifti(tmp_path / "series.nii.gz", series)
    message = (
        r"NIfTI file .*series.nii.gz holds 3 volumes \(4-D\): choose one with `volume_index=K` "
        r"\(0-2\)"
    )
    with pytest.raises(InvalidInputError, match=message):
        read_volume(path)
    with pytest.raises(InvalidInputError, match=r"volume 3 is out of range: .* \(0-2\)"):
        read_volume(path, volume_index=3)
    volume = read_volume(path, volume_index=2)
    assert volume.volume_index == 2 and (volume.low, volume.high) == (-DATA.max(), -DATA.min())
    np.testing.assert_allclose(volume.images[1], min_max(-DATA[:, :, 1].T, -DATA), atol=1e-6)
    # a single volume stored as 4-D needs no index
    single = read_volume(write_nifti(tmp_path / "one.nii", DATA[..., None]))
    np.testing.assert_array_equal(single.images, read_volume(write_nifti(
        tmp_path / "three.nii", DATA)).images)


def test_nifti_2d_and_4d_write_back(tmp_path):
    plane = read_volume(write_nifti(tmp_path / "plane.nii", DATA[:, :, 0]))
    assert plane.images.shape == (1, 24, 20)
    written = write_volume(plane, plane.images, tmp_path, "plane_mean", first_slice=0)
    np.testing.assert_allclose(read_volume(written).images, plane.images, atol=1e-6)

    series = np.stack([DATA, -DATA], axis=-1)
    volume = read_volume(write_nifti(tmp_path / "series.nii", series), volume_index=1)
    written = write_volume(volume, volume.images, tmp_path, "series_mean", first_slice=0)
    assert nib.load(written).shape == DATA.shape  # the chosen volume, 3-D
    np.testing.assert_allclose(read_volume(written).images, volume.images, atol=1e-6)


def test_nifti_full_round_trip_keeps_the_header(tmp_path):
    path = write_nifti(tmp_path / "volume.nii.gz", orientation="RAS")
    volume = read_volume(path)
    written = write_volume(volume, volume.images, tmp_path / "out", "mean", first_slice=0,
                           description="pyrodip mean")
    assert written == tmp_path / "out" / "mean.nii.gz"
    source, result = nib.load(path), nib.load(written)
    np.testing.assert_array_equal(result.affine, source.affine)
    assert result.shape == DATA.shape and result.get_data_dtype() == np.float32
    for key in ("qform_code", "sform_code", "pixdim", "xyzt_units"):
        np.testing.assert_array_equal(result.header[key], source.header[key])
    assert result.header["descrip"] == b"pyrodip mean"
    assert result.dataobj.slope == 1 and result.dataobj.inter == 0
    np.testing.assert_allclose(np.asanyarray(result.dataobj), DATA, atol=1e-3)
    back = read_volume(written)
    assert (back.low, back.high) == (volume.low, volume.high)
    np.testing.assert_allclose(back.images, volume.images, atol=1e-6)


@pytest.mark.parametrize("orientation", sorted(AFFINES))
def test_nifti_block_sits_where_it_came_from(tmp_path, orientation):
    """Each output voxel holds the input value at the same world coordinate."""
    path = write_nifti(tmp_path / "volume.nii", orientation=orientation)
    volume = read_volume(path)
    top, left = 3, 2
    block = volume.images[1:4, top : top + 16, left : left + 15]
    written = write_volume(volume, block, tmp_path, "block", first_slice=1, crop=(top, left))
    result = nib.load(written)
    assert result.shape == (15, 16, 3)
    for key in ("qform_code", "sform_code"):
        assert result.header[key] == nib.load(path).header[key] > 0
    np.testing.assert_allclose(result.header.get_qform(), result.header.get_sform(), atol=1e-5)
    voxels = np.stack(np.meshgrid(*map(np.arange, result.shape), indexing="ij"), -1)
    world = nib.affines.apply_affine(result.affine, voxels)
    source = np.rint(nib.affines.apply_affine(np.linalg.inv(nib.load(path).affine), world))
    i, j, k = source.astype(int).transpose(3, 0, 1, 2)
    np.testing.assert_allclose(np.asanyarray(result.dataobj), DATA[i, j, k], atol=1e-3)
    assert tuple(source[0, 0, 0]) != (0, 0, 0)  # the affine did move


def test_nifti_std_is_scaled_only(tmp_path):
    volume = read_volume(write_nifti(tmp_path / "volume.nii"))
    std = (RNG.random((2, 24, 20)) * 0.1).astype(np.float32)
    written = write_volume(volume, std, tmp_path, "std", first_slice=4, std=True)
    result = nib.load(written)
    expected = std.transpose(2, 1, 0) * (volume.high - volume.low)  # LPS: plain transpose
    np.testing.assert_allclose(np.asanyarray(result.dataobj), expected, rtol=1e-6)
    assert result.header["cal_min"] == result.header["cal_max"] == 0


# --- through load_image ----------------------------------------------------------------------


def assert_image(image, shape):
    assert image.shape == shape
    assert image.dtype == np.float32
    assert image.min() >= 0.0 and image.max() <= 1.0


VOLUME = RNG.integers(-1000, 3000, (6, 5, 7), dtype=np.int16)  # (X, Y, Z)


def save_nifti(path, array, affine=None):
    nib.Nifti1Image(array, np.eye(4) if affine is None else affine).to_filename(path)
    return path


def radiological(slice_xy):
    """How an (X, Y) slice of an identity-affine (RAS+) volume is shown."""
    return slice_xy.T[::-1, ::-1]


@pytest.mark.parametrize("name", ["volume.nii", "volume.nii.gz", "VOLUME.NII.GZ"])
@pytest.mark.parametrize(("slice_index", "z"), [(None, 3), (0, 0), (6, 6)])
def test_nifti_volume_slices(tmp_path, name, slice_index, z):
    path = save_nifti(tmp_path / name, VOLUME)
    image = load_image(path, slice_index=slice_index)
    assert_image(image, (1, 5, 6))  # rows = Y, columns = X
    # one scale for the whole volume, not per slice
    expected = min_max(radiological(VOLUME[:, :, z]), over=VOLUME)
    np.testing.assert_allclose(image[0], expected, atol=1e-6)


def test_nifti_uint8_and_unit_float_keep_their_scale(tmp_path):
    pixels = RNG.integers(0, 200, (6, 5, 3), dtype=np.uint8)
    image = load_image(save_nifti(tmp_path / "u8.nii", pixels), slice_index=1)
    np.testing.assert_allclose(image[0], radiological(pixels[:, :, 1]) / 255, atol=1e-6)
    unit = RNG.random((6, 5, 3)).astype(np.float32) * 0.5
    image = load_image(save_nifti(tmp_path / "f32.nii.gz", unit), slice_index=2)
    np.testing.assert_allclose(image[0], radiological(unit[:, :, 2]), atol=1e-6)


def test_nifti_4d_needs_a_volume_index_to_load(tmp_path):
    series = np.stack([VOLUME, -VOLUME], axis=-1)  # (X, Y, Z, T)
    path = save_nifti(tmp_path / "series.nii.gz", series)
    with pytest.raises(InvalidInputError, match=r"holds 2 volumes \(4-D\): choose one with"):
        load_image(path, slice_index=4)
    image = load_image(path, slice_index=4, volume_index=1)
    assert_image(image, (1, 5, 6))
    expected = min_max(radiological(-VOLUME[:, :, 4]), over=-VOLUME)
    np.testing.assert_allclose(image[0], expected, atol=1e-6)


def test_nifti_2d_image(tmp_path):
    plane = RNG.random((9, 4)) * 10  # (X, Y)
    path = save_nifti(tmp_path / "plane.nii", plane)
    image = load_image(path)
    assert_image(image, (1, 4, 9))
    np.testing.assert_allclose(image[0], min_max(radiological(plane)), atol=1e-6)
    np.testing.assert_array_equal(load_image(path, slice_index=0), image)
    with pytest.raises(InvalidInputError, match=r"has 1 slice \(0-0\)"):
        load_image(path, slice_index=1)


@pytest.mark.parametrize(
    ("diagonal", "view"),
    [
        ((1, 1, 1, 1), lambda xy: xy.T[::-1, ::-1]),  # RAS+: flip both
        ((-1, 1, 1, 1), lambda xy: xy.T[::-1, :]),  # LAS (Analyze-style): x already R to L
        ((-1, -1, 1, 1), lambda xy: xy.T),  # LPS (as ITK writes): plain transpose
    ],
    ids=["RAS", "LAS", "LPS"],
)
def test_nifti_orientation_follows_the_affine(tmp_path, diagonal, view):
    path = save_nifti(tmp_path / "volume.nii", VOLUME, affine=np.diag(diagonal))
    image = load_image(path, slice_index=2)
    np.testing.assert_allclose(image[0], min_max(view(VOLUME[:, :, 2]), over=VOLUME), atol=1e-6)


def test_nifti_more_than_4d_is_refused(tmp_path):
    path = save_nifti(tmp_path / "vectors.nii", np.zeros((6, 5, 7, 1, 3), np.float32))
    with pytest.raises(InvalidInputError, match=r"vectors.nii holds an array of shape"):
        load_image(path)


def test_nifti_corrupt_file(tmp_path):
    (tmp_path / "broken.nii.gz").write_bytes(b"not a NIfTI file" * 30)
    (tmp_path / "broken.nii").write_bytes(b"not a NIfTI file" * 30)
    for name in ("broken.nii.gz", "broken.nii"):
        with pytest.raises(InvalidInputError, match=rf"cannot read NIfTI file .*{name}") as caught:
            load_image(tmp_path / name)
        assert "\n" not in str(caught.value)


def test_nifti_without_nibabel_says_how_to_install(tmp_path, monkeypatch):
    path = save_nifti(tmp_path / "volume.nii", VOLUME)
    monkeypatch.setitem(sys.modules, "nibabel", None)  # makes `import nibabel` fail
    with pytest.raises(InvalidInputError, match="pip install nibabel"):
        load_image(path)
