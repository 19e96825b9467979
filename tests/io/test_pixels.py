"""pyrodip.io.pixels: image layouts and the scaling of pixel values to [0, 1] (through NumPy
files, which keep the values as they are)."""

import numpy as np
import pytest

from pyrodip.errors import InvalidInputError
from pyrodip.io.images import load_image

RNG = np.random.default_rng(0)


def assert_image(image, shape):
    assert image.shape == shape
    assert image.dtype == np.float32
    assert image.min() >= 0.0 and image.max() <= 1.0


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
