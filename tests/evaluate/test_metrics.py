"""pyrodip.evaluate.metrics against scikit-image's reference implementations."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from skimage.data import camera
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from pyrodip.errors import InvalidInputError
from pyrodip.evaluate.metrics import psnr, ssim

SHAPES = [(1, 16, 24), (3, 16, 24), (1, 64, 64), (3, 64, 64), (1, 7, 9), (3, 33, 20)]


def sk_psnr(x: np.ndarray, ref: np.ndarray) -> float:
    return peak_signal_noise_ratio(ref, x, data_range=1)


def sk_ssim(x: np.ndarray, ref: np.ndarray, data_range: float = 1.0) -> float:
    return structural_similarity(ref, x, data_range=data_range, channel_axis=0)


def random_pair(shape, seed, dtype=np.float64):
    rng = np.random.default_rng(seed)
    ref = rng.random(shape)
    x = np.clip(ref + rng.normal(0, 0.2, shape), 0, 1)
    return x.astype(dtype), ref.astype(dtype)


def structured_pair(shape, seed):
    """A smooth gradient with a bright square as reference, a blurred noisy copy as test."""
    channels, height, width = shape
    rows, cols = np.mgrid[0:height, 0:width]
    ref = (rows / height + cols / width) / 2
    ref[height // 4 : height // 2, width // 4 : width // 2] = 1.0
    ref = np.stack([ref * (0.5 + 0.5 * c / channels) for c in range(channels)])
    rng = np.random.default_rng(seed)
    x = 0.5 * ref + 0.5 * np.roll(ref, 1, axis=-1) + rng.normal(0, 0.05, shape)
    return x, ref


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("make_pair", [random_pair, structured_pair])
def test_psnr_and_ssim_match_skimage(shape, make_pair):
    x, ref = make_pair(shape, seed=sum(shape))
    got_psnr = psnr(torch.from_numpy(x), torch.from_numpy(ref))
    got_ssim = ssim(torch.from_numpy(x), torch.from_numpy(ref))
    assert got_psnr.shape == () and got_ssim.shape == ()
    assert float(got_psnr) == pytest.approx(sk_psnr(x, ref), abs=1e-4)
    assert float(got_ssim) == pytest.approx(sk_ssim(x, ref), abs=1e-4)


@pytest.mark.parametrize("shape", [(1, 16, 24), (3, 64, 64)])
def test_float32_inputs_match_skimage_and_stay_float32(shape):
    x, ref = random_pair(shape, seed=7, dtype=np.float32)
    got_psnr = psnr(torch.from_numpy(x), torch.from_numpy(ref))
    got_ssim = ssim(torch.from_numpy(x), torch.from_numpy(ref))
    assert got_psnr.dtype == torch.float32 and got_ssim.dtype == torch.float32
    assert float(got_psnr) == pytest.approx(sk_psnr(x, ref), abs=1e-4)
    assert float(got_ssim) == pytest.approx(sk_ssim(x, ref), abs=1e-4)


def test_ssim_matches_skimage_on_a_real_photo_and_other_data_range():
    ref = camera()[100:180, 200:300].astype(np.float64)[None]  # values 0..255
    x = np.clip(ref + np.random.default_rng(1).normal(0, 20, ref.shape), 0, 255)
    got = ssim(torch.from_numpy(x), torch.from_numpy(ref), data_range=255.0)
    assert float(got) == pytest.approx(sk_ssim(x, ref, data_range=255), abs=1e-4)
    got_psnr = psnr(torch.from_numpy(x), torch.from_numpy(ref), data_range=255.0)
    expected = peak_signal_noise_ratio(ref, x, data_range=255)
    assert float(got_psnr) == pytest.approx(expected, abs=1e-4)


def test_integer_inputs_are_computed_in_float32():
    x, ref = random_pair((1, 16, 16), seed=3)
    x8, ref8 = (x * 255).astype(np.uint8), (ref * 255).astype(np.uint8)
    got = ssim(torch.from_numpy(x8), torch.from_numpy(ref8), data_range=255.0)
    assert got.dtype == torch.float32
    assert float(got) == pytest.approx(
        sk_ssim(x8.astype(np.float64), ref8.astype(np.float64), data_range=255), abs=1e-4
    )


@pytest.mark.parametrize("channels", [1, 3])
def test_batched_inputs_give_one_value_per_image(channels):
    pairs = [random_pair((channels, 16, 24), seed) for seed in range(4)]
    x = torch.from_numpy(np.stack([p[0] for p in pairs]))
    ref = torch.from_numpy(np.stack([p[1] for p in pairs]))
    batch_psnr, batch_ssim = psnr(x, ref), ssim(x, ref)
    assert batch_psnr.shape == (4,) and batch_ssim.shape == (4,)
    for i, (xi, refi) in enumerate(pairs):
        assert float(batch_psnr[i]) == pytest.approx(sk_psnr(xi, refi), abs=1e-4)
        assert float(batch_ssim[i]) == pytest.approx(sk_ssim(xi, refi), abs=1e-4)
        assert float(batch_ssim[i]) == pytest.approx(float(ssim(x[i], ref[i])), abs=1e-12)


def test_psnr_of_identical_images_is_inf_and_ssim_is_one():
    image = torch.rand(3, 16, 24, generator=torch.Generator().manual_seed(0))
    assert math.isinf(float(psnr(image, image))) and float(psnr(image, image)) > 0
    assert float(ssim(image, image)) == pytest.approx(1.0, abs=1e-6)


def test_psnr_does_not_clamp():
    ref = torch.zeros(1, 8, 8)
    assert float(psnr(ref + 2.0, ref)) == pytest.approx(10 * math.log10(1 / 4), abs=1e-5)


@pytest.mark.parametrize(
    ("x_shape", "ref_shape"),
    [((1, 16, 16), (1, 16, 17)), ((16, 16), (16, 16)), ((1, 1, 1, 16, 16), (1, 1, 1, 16, 16))],
)
def test_bad_shapes_raise(x_shape, ref_shape):
    for metric in (psnr, ssim):
        with pytest.raises(InvalidInputError, match=metric.__name__):
            metric(torch.zeros(x_shape), torch.zeros(ref_shape))


def test_ssim_rejects_images_smaller_than_the_window():
    with pytest.raises(InvalidInputError, match="at least 7x7"):
        ssim(torch.zeros(1, 6, 16), torch.zeros(1, 6, 16))


images = st.tuples(st.sampled_from([1, 3]), st.integers(7, 20), st.integers(7, 20)).flatmap(
    lambda shape: st.tuples(
        arrays(np.float64, shape, elements=st.floats(0, 1)),
        arrays(np.float64, shape, elements=st.floats(0, 1)),
    )
)


@settings(max_examples=40, deadline=None)
@given(images)
def test_ssim_properties(pair):
    x, y = (torch.from_numpy(a) for a in pair)
    assert float(ssim(x, x)) == pytest.approx(1.0, abs=1e-9)
    assert float(ssim(x, y)) == pytest.approx(float(ssim(y, x)), abs=1e-12)
    assert -1.0 - 1e-9 <= float(ssim(x, y)) <= 1.0 + 1e-9
    assert float(ssim(x, y)) == pytest.approx(sk_ssim(pair[0], pair[1]), abs=1e-4)


@settings(max_examples=40, deadline=None)
@given(
    images,
    st.floats(0.01, 1.0),
    st.floats(1.1, 10.0),
)
def test_psnr_decreases_with_noise(pair, small, factor):
    ref, noise = (torch.from_numpy(a) for a in pair)
    noise = noise - 0.5
    if not bool(noise.abs().max() > 1e-3):
        noise = torch.ones_like(noise)
    assert float(psnr(ref + small * noise, ref)) > float(psnr(ref + small * factor * noise, ref))
    assert float(psnr(ref + small * noise, ref)) == pytest.approx(
        sk_psnr((ref + small * noise).numpy(), ref.numpy()), abs=1e-4
    )
