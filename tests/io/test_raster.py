"""pyrodip.io.raster: PNG, JPEG and TIFF files and NumPy arrays read as images."""

import imageio.v3 as iio
import numpy as np
import pytest

from pyrodip.errors import InvalidInputError
from pyrodip.io.images import load_image

RNG = np.random.default_rng(0)


def assert_image(image, shape):
    assert image.shape == shape
    assert image.dtype == np.float32
    assert image.min() >= 0.0 and image.max() <= 1.0


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


def test_truncated_png(tmp_path):
    iio.imwrite(tmp_path / "whole.png", RNG.integers(0, 256, (64, 64), dtype=np.uint8))
    data = (tmp_path / "whole.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(InvalidInputError, match="cut.png.*PNG, JPEG, TIFF"):
        load_image(tmp_path / "cut.png")


def test_npy_object_array_raises(tmp_path):
    np.save(tmp_path / "objects.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(InvalidInputError, match="objects.npy"):
        load_image(tmp_path / "objects.npy")


def test_npy_headers_that_lie_are_refused_before_reading(tmp_path):
    np.save(tmp_path / "short.npy", np.zeros((8, 8)))
    data = (tmp_path / "short.npy").read_bytes()
    (tmp_path / "short.npy").write_bytes(data.replace(b"(8, 8)", b"(80, 8)"))
    with pytest.raises(InvalidInputError, match="cannot read NumPy file .*short.npy"):
        load_image(tmp_path / "short.npy")
    with open(tmp_path / "huge.npy", "wb") as file:  # a sparse file of 8 GiB of zeros
        np.lib.format.write_array_header_1_0(
            file, {"descr": "<f8", "fortran_order": False, "shape": (1 << 15, 1 << 15)})
        file.truncate(file.tell() + 8 << 30)
    with pytest.raises(InvalidInputError, match="huge.npy declares 32768 x 32768 values"):
        load_image(tmp_path / "huge.npy")


def test_what_a_library_logs_about_a_bad_file_is_held_back(tmp_path, capsys):
    iio.imwrite(tmp_path / "deep.tif", RNG.integers(0, 65535, (40, 48), dtype=np.uint16))
    data = bytearray((tmp_path / "deep.tif").read_bytes())
    (tmp_path / "bad.tif").write_bytes(bytes(data[:200]))
    with pytest.raises(InvalidInputError, match="cannot read image file .*bad.tif"):
        load_image(tmp_path / "bad.tif")
    assert capsys.readouterr().err == ""
