"""pyrodip.io.images: image loading, samples, centre cropping and noise."""

import sys
import warnings

import imageio.v3 as iio
import numpy as np
import pytest
import torch
from conftest import write_dicom
from hypothesis import given, settings
from hypothesis import strategies as st

from pyrodip.errors import InvalidInputError, MissingFileError, PyrodipError
from pyrodip.io.images import center_crop, load_image
from pyrodip.io.samples import SAMPLES

RNG = np.random.default_rng(0)


def assert_image(image, shape):
    assert image.shape == shape
    assert image.dtype == np.float32
    assert image.min() >= 0.0 and image.max() <= 1.0


# --- samples ---------------------------------------------------------------------------------

EXPECTED_SAMPLE_SHAPES = {
    "ct": (1, 128, 128),
    "mr": (1, 64, 64),
    "phantom": (1, 128, 128),
    "retina": (3, 256, 256),
}


@pytest.mark.parametrize("name", sorted(EXPECTED_SAMPLE_SHAPES))
def test_samples_load(name):
    image = load_image(f"sample:{name}")
    assert_image(image, EXPECTED_SAMPLE_SHAPES[name])
    assert image.max() > image.min()  # not blank


def test_all_registered_samples_are_tested():
    assert set(EXPECTED_SAMPLE_SHAPES) <= set(SAMPLES)


def test_unknown_sample_names_the_choices():
    with pytest.raises(InvalidInputError, match="unknown sample 'ctt': choose one of ct, mr"):
        load_image("sample:ctt")


def test_register_sample_directly_and_as_decorator():
    SAMPLES.register("test-direct", lambda: np.full((8, 9), 0.25))

    @SAMPLES.register("test-decorated")
    def _sample():
        return np.zeros((3, 8, 9), dtype=np.uint8)

    try:
        assert load_image("sample:test-direct")[0, 0, 0] == np.float32(0.25)
        assert_image(load_image("sample:test-decorated"), (1, 8, 9))
        assert callable(_sample)
    finally:
        del SAMPLES["test-direct"], SAMPLES["test-decorated"]


# --- raster files ----------------------------------------------------------------------------


def test_png_gray_8bit_round_trip(tmp_path):
    pixels = RNG.integers(0, 256, (20, 30), dtype=np.uint8)
    iio.imwrite(tmp_path / "gray.png", pixels)
    image = load_image(tmp_path / "gray.png")
    assert_image(image, (1, 20, 30))
    np.testing.assert_array_equal(image[0], (pixels / 255).astype(np.float32))


def test_png_rgb_round_trip_and_str_path(tmp_path):
    pixels = RNG.integers(0, 256, (20, 30, 3), dtype=np.uint8)
    iio.imwrite(tmp_path / "rgb.png", pixels)
    image = load_image(str(tmp_path / "rgb.png"))
    assert_image(image, (3, 20, 30))
    np.testing.assert_array_equal(image, (pixels / 255).astype(np.float32).transpose(2, 0, 1))


def test_png_rgba_drops_alpha(tmp_path):
    pixels = RNG.integers(0, 256, (20, 30, 4), dtype=np.uint8)
    iio.imwrite(tmp_path / "rgba.png", pixels)
    image = load_image(tmp_path / "rgba.png")
    expected = (pixels[..., :3] / 255).astype(np.float32).transpose(2, 0, 1)
    np.testing.assert_array_equal(image, expected)


def test_rgb_with_equal_channels_becomes_gray(tmp_path):
    gray = RNG.integers(0, 256, (20, 30), dtype=np.uint8)
    iio.imwrite(tmp_path / "gray_rgb.png", np.stack([gray] * 3, axis=-1))
    image = load_image(tmp_path / "gray_rgb.png")
    assert_image(image, (1, 20, 30))
    np.testing.assert_array_equal(image[0], (gray / 255).astype(np.float32))


@pytest.mark.parametrize("suffix", [".tif", ".png"])
def test_16bit_round_trip(tmp_path, suffix):
    pixels = RNG.integers(0, 65536, (20, 30), dtype=np.uint16)
    pixels[0, 0], pixels[0, 1] = 0, 65535
    iio.imwrite(tmp_path / f"deep{suffix}", pixels)
    image = load_image(tmp_path / f"deep{suffix}")
    assert_image(image, (1, 20, 30))
    np.testing.assert_array_equal(image[0], (pixels / 65535).astype(np.float32))


def test_png_gray_with_alpha_drops_alpha(tmp_path):
    pixels = RNG.integers(0, 256, (20, 30, 2), dtype=np.uint8)
    iio.imwrite(tmp_path / "la.png", pixels)
    image = load_image(tmp_path / "la.png")
    np.testing.assert_array_equal(image[0], (pixels[..., 0] / 255).astype(np.float32))


def test_multipage_tiff_is_refused(tmp_path):
    iio.imwrite(tmp_path / "stack.tif", RNG.integers(0, 256, (2, 15, 10), dtype=np.uint8))
    with pytest.raises(InvalidInputError, match="several images"):
        load_image(tmp_path / "stack.tif")


def test_jpeg_loads(tmp_path):
    pixels = RNG.integers(0, 256, (16, 24, 3), dtype=np.uint8)
    iio.imwrite(tmp_path / "photo.jpg", pixels)
    assert_image(load_image(tmp_path / "photo.jpg"), (3, 16, 24))


# --- NumPy files -----------------------------------------------------------------------------

GRAY = RNG.random((12, 10))
RGB = RNG.random((12, 10, 3))


@pytest.mark.parametrize(
    ("array", "expected"),
    [
        (GRAY, GRAY[None]),
        (GRAY[None], GRAY[None]),
        (GRAY[..., None], GRAY[None]),
        (RGB, RGB.transpose(2, 0, 1)),
        (RGB.transpose(2, 0, 1), RGB.transpose(2, 0, 1)),
        (np.concatenate([RGB, np.ones((12, 10, 1))], axis=-1), RGB.transpose(2, 0, 1)),
        (GRAY.astype(np.float32), GRAY[None]),
        ((GRAY * 255).astype(np.uint8), ((GRAY * 255).astype(np.uint8) / 255)[None]),
        ((GRAY * 65535).astype(np.uint16), ((GRAY * 65535).astype(np.uint16) / 65535)[None]),
        (GRAY * 4 - 2, (GRAY - GRAY.min())[None] / (GRAY.max() - GRAY.min())),
        (np.array([[-5, 0], [5, 15]], np.int16), np.array([[[0, 0.25], [0.5, 1]]])),
        (np.full((4, 4), 7.0), np.zeros((1, 4, 4))),
    ],
    ids=[
        "hw",
        "1hw",
        "hw1",
        "hwc",
        "chw",
        "hw4-alpha",
        "float32",
        "uint8",
        "uint16",
        "float-out-of-range",
        "int16-min-max",
        "constant",
    ],
)
def test_npy_layouts_and_scaling(tmp_path, array, expected):
    np.save(tmp_path / "image.npy", array)
    image = load_image(tmp_path / "image.npy")
    assert_image(image, expected.shape)
    np.testing.assert_allclose(image, expected, atol=1e-6)


@pytest.mark.parametrize(
    "shape", [(5, 12, 10), (2, 12, 10), (12, 10, 6), (2, 3, 12, 10), (12,), (0, 10)]
)
def test_npy_bad_shapes_raise(tmp_path, shape):
    np.save(tmp_path / "image.npy", np.zeros(shape))
    with pytest.raises(InvalidInputError, match="image.npy"):
        load_image(tmp_path / "image.npy")


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_npy_with_nan_or_inf_raises(tmp_path, bad):
    array = RNG.random((8, 8))
    array[3, 4] = bad
    np.save(tmp_path / "bad.npy", array)
    with pytest.raises(InvalidInputError, match="NaN or infinite"):
        load_image(tmp_path / "bad.npy")


def test_npy_object_array_raises(tmp_path):
    np.save(tmp_path / "objects.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(InvalidInputError, match="objects.npy"):
        load_image(tmp_path / "objects.npy")


# --- DICOM -----------------------------------------------------------------------------------


RAW = (np.arange(12 * 10).reshape(12, 10) * 8).astype(np.uint16)  # 0 .. 952


@pytest.mark.parametrize("slope", [2.0, -0.5])
def test_dicom_rescale_then_min_max(tmp_path, slope):
    write_dicom(tmp_path / "slice.dcm", RAW, RescaleSlope=slope, RescaleIntercept=-100)
    image = load_image(tmp_path / "slice.dcm")
    assert_image(image, (1, 12, 10))
    values = RAW * slope - 100
    expected = (values - values.min()) / (values.max() - values.min())
    np.testing.assert_allclose(image[0], expected, atol=1e-6)


def test_dicom_window_applies_to_rescaled_values(tmp_path):
    write_dicom(
        tmp_path / "slice.dcm",
        RAW,
        RescaleSlope=2,
        RescaleIntercept=-100,
        WindowCenter=900,
        WindowWidth=1000,
    )
    image = load_image(tmp_path / "slice.dcm")
    values = RAW * 2.0 - 100  # -100 .. 1804; window covers 400 .. 1400
    expected = np.clip((values - 400) / 1000, 0, 1)
    np.testing.assert_allclose(image[0], expected, atol=1e-6)
    assert image.min() == 0 and image.max() == 1


def test_dicom_monochrome1_is_inverted(tmp_path):
    write_dicom(tmp_path / "slice.dcm", RAW, PhotometricInterpretation="MONOCHROME1")
    image = load_image(tmp_path / "slice.dcm")
    np.testing.assert_allclose(image[0], 1 - RAW / RAW.max(), atol=1e-6)


def test_dicom_is_detected_without_suffix(tmp_path):
    write_dicom(tmp_path / "IM0001", RAW)
    np.testing.assert_allclose(load_image(tmp_path / "IM0001")[0], RAW / RAW.max(), atol=1e-6)


def test_dicom_without_pixel_data_raises(tmp_path):
    write_dicom(tmp_path / "empty.dcm", RAW, with_pixels=False)
    with pytest.raises(InvalidInputError, match="has no pixel data"):
        load_image(tmp_path / "empty.dcm")


# --- NIfTI -----------------------------------------------------------------------------------

VOLUME = RNG.integers(-1000, 3000, (6, 5, 7), dtype=np.int16)  # (X, Y, Z)


def write_nifti(path, array, affine=None):
    nib = pytest.importorskip("nibabel")
    nib.Nifti1Image(array, np.eye(4) if affine is None else affine).to_filename(path)
    return path


def min_max(values, over=None):
    """Min-max scaling by the range of ``over`` (default: of ``values`` itself)."""
    values = np.asarray(values, dtype=np.float64)
    over = values if over is None else over
    return (values - over.min()) / (over.max() - over.min())


def radiological(slice_xy):
    """How an (X, Y) slice of an identity-affine (RAS+) volume is shown."""
    return slice_xy.T[::-1, ::-1]


@pytest.mark.parametrize("name", ["volume.nii", "volume.nii.gz", "VOLUME.NII.GZ"])
@pytest.mark.parametrize(("slice_index", "z"), [(None, 3), (0, 0), (6, 6)])
def test_nifti_volume_slices(tmp_path, name, slice_index, z):
    path = write_nifti(tmp_path / name, VOLUME)
    image = load_image(path, slice_index=slice_index)
    assert_image(image, (1, 5, 6))  # rows = Y, columns = X
    # one scale for the whole volume, not per slice
    expected = min_max(radiological(VOLUME[:, :, z]), over=VOLUME)
    np.testing.assert_allclose(image[0], expected, atol=1e-6)


def test_nifti_numpy_integer_slice_index(tmp_path):
    path = write_nifti(tmp_path / "volume.nii", VOLUME)
    np.testing.assert_array_equal(load_image(path, np.int64(2)), load_image(path, 2))


def test_nifti_uint8_and_unit_float_keep_their_scale(tmp_path):
    pixels = RNG.integers(0, 200, (6, 5, 3), dtype=np.uint8)
    image = load_image(write_nifti(tmp_path / "u8.nii", pixels), slice_index=1)
    np.testing.assert_allclose(image[0], radiological(pixels[:, :, 1]) / 255, atol=1e-6)
    unit = RNG.random((6, 5, 3)).astype(np.float32) * 0.5
    image = load_image(write_nifti(tmp_path / "f32.nii.gz", unit), slice_index=2)
    np.testing.assert_allclose(image[0], radiological(unit[:, :, 2]), atol=1e-6)


def test_nifti_4d_needs_a_volume_index(tmp_path):
    series = np.stack([VOLUME, -VOLUME], axis=-1)  # (X, Y, Z, T)
    path = write_nifti(tmp_path / "series.nii.gz", series)
    with pytest.raises(InvalidInputError, match=r"holds 2 volumes \(4-D\): choose one with"):
        load_image(path, slice_index=4)
    image = load_image(path, slice_index=4, volume_index=1)
    assert_image(image, (1, 5, 6))
    expected = min_max(radiological(-VOLUME[:, :, 4]), over=-VOLUME)
    np.testing.assert_allclose(image[0], expected, atol=1e-6)


def test_nifti_2d_image(tmp_path):
    plane = RNG.random((9, 4)) * 10  # (X, Y)
    path = write_nifti(tmp_path / "plane.nii", plane)
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
    path = write_nifti(tmp_path / "volume.nii", VOLUME, affine=np.diag(diagonal))
    image = load_image(path, slice_index=2)
    np.testing.assert_allclose(image[0], min_max(view(VOLUME[:, :, 2]), over=VOLUME), atol=1e-6)


@pytest.mark.parametrize("slice_index", [7, 40, -1])
def test_nifti_slice_out_of_range(tmp_path, slice_index):
    path = write_nifti(tmp_path / "volume.nii.gz", VOLUME)
    message = (
        rf"NIfTI slice {slice_index} is out of range: the volume has 7 slices \(0-6\); "
        "choose `slice_index` in that range"
    )
    with pytest.raises(InvalidInputError, match=message):
        load_image(path, slice_index=slice_index)


@pytest.mark.parametrize("slice_index", [1.5, "2", True])
def test_nifti_slice_must_be_an_integer(tmp_path, slice_index):
    path = write_nifti(tmp_path / "volume.nii", VOLUME)
    with pytest.raises(InvalidInputError, match="NIfTI slice must be an integer"):
        load_image(path, slice_index=slice_index)


def test_nifti_more_than_4d_is_refused(tmp_path):
    path = write_nifti(tmp_path / "vectors.nii", np.zeros((6, 5, 7, 1, 3), np.float32))
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
    path = write_nifti(tmp_path / "volume.nii", VOLUME)
    monkeypatch.setitem(sys.modules, "nibabel", None)  # makes `import nibabel` fail
    with pytest.raises(InvalidInputError, match="pip install nibabel"):
        load_image(path)


def test_slice_index_is_ignored_for_other_formats(tmp_path):
    np.save(tmp_path / "image.npy", GRAY)
    image = load_image(tmp_path / "image.npy", slice_index=40)
    np.testing.assert_allclose(image, GRAY[None], atol=1e-6)


# --- errors ----------------------------------------------------------------------------------


def test_missing_file(tmp_path):
    with pytest.raises(MissingFileError, match="image file not found: .*nothing.png"):
        load_image(tmp_path / "nothing.png")
    with pytest.raises(FileNotFoundError):
        load_image(tmp_path / "nothing.png")


def test_folder_without_dicom_is_rejected(tmp_path):
    # a folder is read as a DICOM series (see tests/io/test_volumes.py)
    with pytest.raises(InvalidInputError, match="holds no DICOM image"):
        load_image(tmp_path)


def test_truncated_png(tmp_path):
    iio.imwrite(tmp_path / "whole.png", RNG.integers(0, 256, (64, 64), dtype=np.uint8))
    data = (tmp_path / "whole.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(InvalidInputError, match="cut.png.*PNG, JPEG, TIFF"):
        load_image(tmp_path / "cut.png")


@pytest.mark.parametrize("name", ["notes.txt", "garbage.dcm", "garbage.png"])
def test_unreadable_files_raise_one_line_errors(tmp_path, name):
    (tmp_path / name).write_text("this is not an image\n" * 3)
    with pytest.raises(PyrodipError) as caught:
        load_image(tmp_path / name)
    assert isinstance(caught.value, InvalidInputError)
    assert name in str(caught.value) and "\n" not in str(caught.value)


# --- center_crop -----------------------------------------------------------------------------


@settings(max_examples=80, deadline=None)
@given(
    height=st.integers(1, 70),
    width=st.integers(1, 70),
    multiple=st.integers(1, 32),
    as_tensor=st.booleans(),
)
def test_center_crop_properties(height, width, multiple, as_tensor):
    image = np.arange(2 * height * width, dtype=np.float32).reshape(2, height, width)
    if as_tensor:
        image = torch.from_numpy(image)
    if height < multiple or width < multiple:
        with pytest.raises(InvalidInputError, match="smaller than the network's minimum side"):
            center_crop(image, multiple)
        return
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = center_crop(image, multiple)
    assert type(out) is type(image)
    new_height, new_width = out.shape[-2:]
    assert out.shape[0] == 2
    assert new_height % multiple == 0 and new_width % multiple == 0
    assert height - multiple < new_height <= height and width - multiple < new_width <= width
    # The values are row-major indices, so the first one tells where the crop starts.
    top, left = divmod(int(out[0, 0, 0]), width)
    assert abs(top - (height - new_height - top)) <= 1
    assert abs(left - (width - new_width - left)) <= 1
    np.testing.assert_array_equal(
        np.asarray(out), np.asarray(image)[:, top : top + new_height, left : left + new_width]
    )
    cropped = (new_height, new_width) != (height, width)
    assert len(caught) == (1 if cropped else 0)
    if cropped:
        assert issubclass(caught[0].category, UserWarning)
        message = str(caught[0].message)
        assert f"from {height}x{width} to {new_height}x{new_width}" in message
        assert f"multiples of {multiple}" in message


@pytest.mark.parametrize("multiple", [0, -4, 2.5, True])
def test_center_crop_rejects_bad_multiples(multiple):
    with pytest.raises(InvalidInputError, match="positive integer"):
        center_crop(np.zeros((1, 8, 8)), multiple)
