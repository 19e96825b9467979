"""pyrodip.physics.masks: the inpainting masks (random, strokes, text, a file), reproducible
from the run's mask stream, and their refusals."""

import math

import imageio.v3 as iio
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from pyrodip.errors import InvalidInputError, MissingFileError
from pyrodip.physics.masks import load_mask, parse_mask, random_mask, stroke_mask, text_mask
from pyrodip.seeding import generator

FEW = settings(max_examples=12, deadline=None)


@pytest.mark.parametrize("maker", [random_mask, stroke_mask, text_mask])
def test_masks_are_reproducible(maker):
    args = (0.3,) if maker is random_mask else ()
    first = maker((3, 64, 48), *args, 5)
    assert first.dtype == torch.bool and first.shape == (64, 48)
    assert torch.equal(first, maker((64, 48), *args, 5))
    # an integer seed draws from the run's mask stream, a generator as it is
    assert torch.equal(first, maker((64, 48), *args, generator(5, "mask")))
    assert not torch.equal(first, maker((64, 48), *args, 6))


@FEW
@given(
    fraction=st.floats(0, 0.95),
    shape=st.tuples(st.integers(4, 40), st.integers(4, 40)),
    seed=st.integers(0, 2**31),
)
def test_random_mask_fraction(fraction, shape, seed):
    mask = random_mask(shape, fraction, seed)
    missing = int((~mask).sum()) / (shape[0] * shape[1])  # exact: a float32 mean rounds
    assert abs(missing - fraction) <= 0.5 / (shape[0] * shape[1]) + 1e-12


@pytest.mark.parametrize("shape", [(32, 32), (128, 128), (96, 160), (256, 256)])
def test_stroke_mask_fraction(shape):
    for seed in range(4):
        missing = float((~stroke_mask(shape, seed)).float().mean())
        assert 0.05 <= missing <= 0.15


def test_text_mask_fraction():
    for seed in range(3):
        missing = float((~text_mask((128, 128), seed)).float().mean())
        assert 0.05 <= missing <= 0.3


def test_mask_maker_refusals():
    for fraction in (1.0, -0.1, math.nan, "half"):
        with pytest.raises(
            InvalidInputError, match=r"missing fraction must be a number in \[0, 1\)"
        ):
            random_mask((8, 8), fraction, 0)
    with pytest.raises(InvalidInputError, match="mask shape"):
        random_mask((8,), 0.1, 0)
    with pytest.raises(InvalidInputError, match="mask shape"):
        stroke_mask((0, 8), 0)
    with pytest.raises(InvalidInputError, match="seed must be an integer"):
        stroke_mask((8, 8), "zero")


def test_load_mask_round_trip(tmp_path):
    mask = stroke_mask((40, 56), seed=2)
    path = tmp_path / "mask.png"
    iio.imwrite(path, np.where(mask.numpy(), 255, 0).astype(np.uint8))
    assert torch.equal(load_mask(path, (1, 40, 56)), mask)
    assert torch.equal(parse_mask(str(path), (40, 56), seed=9), mask)

    rgb = tmp_path / "mask_rgb.png"
    iio.imwrite(rgb, np.repeat(np.where(mask.numpy(), 255, 0).astype(np.uint8)[..., None], 3, -1))
    assert torch.equal(load_mask(rgb, (3, 40, 56)), mask)

    with pytest.raises(InvalidInputError) as caught:
        load_mask(path, (3, 64, 64))
    assert "is 40x56 but the image is 64x64" in str(caught.value)
    black = tmp_path / "black.png"
    iio.imwrite(black, np.zeros((8, 8), dtype=np.uint8))
    with pytest.raises(InvalidInputError, match="no known pixel"):
        load_mask(black, (8, 8))
    with pytest.raises(MissingFileError):
        load_mask(tmp_path / "absent.png", (8, 8))


def test_parse_mask():
    assert int((~parse_mask("random:0.25", (8, 8), seed=0)).sum()) == 16
    assert torch.equal(parse_mask(" strokes ", (32, 32), 4), stroke_mask((32, 32), 4))
    assert torch.equal(parse_mask("text", (32, 32), 4), text_mask((32, 32), 4))
    for spec in ("random", "random:", "random:lots"):
        with pytest.raises(InvalidInputError, match="random:FRACTION"):
            parse_mask(spec, (8, 8), 0)
    with pytest.raises(InvalidInputError, match=r"in \[0, 1\)"):
        parse_mask("random:1.5", (8, 8), 0)
    with pytest.raises(InvalidInputError, match="unknown mask 'hair'"):
        parse_mask("hair", (8, 8), 0)
    with pytest.raises(InvalidInputError, match="must be a string"):
        parse_mask(0.2, (8, 8), 0)
