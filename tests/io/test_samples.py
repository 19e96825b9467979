"""pyrodip.io.samples: the embedded sample images, chosen as ``"sample:NAME"``."""

import numpy as np
import pytest

from pyrodip.errors import InvalidInputError
from pyrodip.io.images import load_image
from pyrodip.io.samples import SAMPLES


def assert_image(image, shape):
    assert image.shape == shape
    assert image.dtype == np.float32
    assert image.min() >= 0.0 and image.max() <= 1.0


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
