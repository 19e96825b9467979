"""pyrodip.physics.baselines: classical denoising, super-resolution and inpainting."""

import importlib.util
import sys
from functools import cache
from pathlib import Path

import numpy as np
import pytest
import torch
from skimage.metrics import peak_signal_noise_ratio
from skimage.transform import resize

from pyrodip.errors import InvalidInputError
from pyrodip.io.images import load_image
from pyrodip.physics.baselines import (
    DEFAULT_DENOISER,
    DENOISERS,
    denoise,
    denoise_stabilized,
    inpaint,
    sart,
    superresolve,
)
from pyrodip.physics.noise import GaussianNoise

SHARED_DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
HAVE_PYWT = importlib.util.find_spec("pywt") is not None
# Each denoiser that can run here ("wavelet" needs PyWavelets).
RUNNABLE = [
    pytest.param(
        name,
        marks=pytest.mark.skipif(name == "wavelet" and not HAVE_PYWT, reason="needs PyWavelets"),
    )
    for name in sorted(DENOISERS)
]


def psnr(truth, image):
    return peak_signal_noise_ratio(
        np.asarray(truth, np.float64), np.asarray(image, np.float64), data_range=1
    )


def small(name, side=64):
    """A sample image downscaled to side x side, float64 (C, H, W) in [0, 1] (a fresh copy)."""
    return _small(name, side).copy()


@cache
def _small(name, side):
    image = np.moveaxis(load_image(f"sample:{name}"), 0, -1)
    small = resize(image, (side, side), anti_aliasing=True)
    return np.clip(np.moveaxis(small, -1, 0), 0.0, 1.0)


def smooth(height, width, offset=0.0, step=1.0):
    """A smooth test pattern sampled at pixel centres ``offset + step * i``."""
    rows = offset + step * np.arange(height)
    cols = offset + step * np.arange(width)
    r, c = np.meshgrid(rows, cols, indexing="ij")
    return (0.5 + 0.2 * np.sin(2 * np.pi * r / 40) * np.cos(2 * np.pi * c / 30) + 0.1 * r / 64)[
        None
    ]


# --- denoising -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["phantom", "ct", "retina"])
@pytest.mark.parametrize("method", RUNNABLE)
def test_denoisers_beat_the_noisy_input(name, method):
    truth = small(name)
    noisy = truth + 0.1 * np.random.default_rng(0).standard_normal(truth.shape)
    image, returned = denoise(noisy, 0.1, method=method)
    assert returned == method
    assert image.shape == truth.shape and image.dtype == np.float32
    assert image.min() >= 0 and image.max() <= 1
    assert psnr(truth, image) > psnr(truth, np.clip(noisy, 0, 1)) + 3.0  # 3.9 to 11 dB measured


def test_denoise_defaults_to_the_chosen_method():
    noisy = small("phantom") + 0.05
    image, name = denoise(noisy, 0.1)
    assert name == DEFAULT_DENOISER == "bm3d"
    # the bm3d package's result varies in its last float32 bit from call to call
    np.testing.assert_allclose(image, DENOISERS["bm3d"](noisy, 0.1), atol=1e-6)


@pytest.mark.parametrize("method", RUNNABLE)
def test_denoise_accepts_float32_and_does_not_change_its_input(method):
    noisy = (small("ct") + 0.1 * np.random.default_rng(1).standard_normal((1, 64, 64))).astype(
        np.float32
    )
    before = noisy.copy()
    assert denoise(noisy, 0.1, method=method)[0].shape == (1, 64, 64)
    np.testing.assert_array_equal(noisy, before)


def test_wavelet_without_pywavelets_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "pywt", None)  # makes `import pywt` fail
    with pytest.raises(InvalidInputError, match="pip install PyWavelets"):
        denoise(np.zeros((1, 8, 8)), 0.1, method="wavelet")


def test_unknown_denoiser_names_the_choices():
    with pytest.raises(InvalidInputError, match="unknown denoiser 'bm4d': choose one of bm3d, "):
        denoise(np.zeros((1, 8, 8)), 0.1, method="bm4d")


@pytest.mark.parametrize("std", [0, -0.1, float("nan"), float("inf"), "abc", None])
@pytest.mark.parametrize("method", sorted(DENOISERS))
def test_denoisers_reject_bad_noise_std(method, std):
    with pytest.raises(InvalidInputError, match="noise_std must be a positive number"):
        denoise(np.zeros((1, 8, 8)), std, method=method)


BAD_IMAGES = {
    "2-D": np.zeros((16, 16)),
    "two channels": np.zeros((2, 16, 16)),
    "channels last": np.zeros((16, 16, 3)),
    "4-D": np.zeros((1, 1, 16, 16)),
    "one row": np.zeros((1, 1, 16)),
}


@pytest.mark.parametrize("image", BAD_IMAGES.values(), ids=BAD_IMAGES)
@pytest.mark.parametrize("method", sorted(DENOISERS))
def test_denoisers_reject_bad_shapes(method, image):
    with pytest.raises(InvalidInputError, match=r"must be a \(C, H, W\) array"):
        denoise(image, 0.1, method=method)


def test_denoise_rejects_integers_and_nan():
    with pytest.raises(InvalidInputError, match="must hold floats"):
        denoise(np.zeros((1, 8, 8), np.uint8), 0.1)
    bad = np.zeros((1, 8, 8))
    bad[0, 2, 3] = np.nan
    with pytest.raises(InvalidInputError, match="NaN or infinite"):
        denoise(bad, 0.1)


@pytest.mark.shared_data
def test_default_denoiser_is_best_on_a_shared_image():
    """Recompute the xray.jpg row of the module docstring's table."""
    path = SHARED_DATA / "denoising" / "xray.jpg"
    if not path.exists():
        pytest.skip(f"{path} is missing")
    pytest.importorskip("pywt")
    truth = load_image(path)
    generator = torch.Generator().manual_seed(0)
    noisy = GaussianNoise(0.1).sample(torch.from_numpy(truth), generator=generator).numpy()
    scores = {name: psnr(truth, denoise(noisy, 0.1, name)[0]) for name in DENOISERS}
    assert max(scores, key=scores.get) == DEFAULT_DENOISER
    expected = {"tv": 30.38, "wavelet": 28.52, "nlm": 29.98, "bm3d": 31.72}  # the table, seed 0
    for name, value in expected.items():
        assert scores[name] == pytest.approx(value, abs=0.05)


def test_bm3d_beats_tv_on_a_noisy_phantom():
    truth = small("phantom")
    noisy = truth + 0.1 * np.random.default_rng(0).standard_normal(truth.shape)
    bm3d, tv = (psnr(truth, denoise(noisy, 0.1, name)[0]) for name in ("bm3d", "tv"))
    assert bm3d > psnr(truth, np.clip(noisy, 0, 1)) + 8.0  # 11.4 dB measured
    assert bm3d > tv + 1.0  # 2.1 dB measured


@pytest.mark.parametrize("noise, level, draw", [
    ("speckle", 0.1, lambda x, rng: np.exp(np.log(np.maximum(x, 1e-3))
                                           + 0.1 * rng.standard_normal(x.shape))),
    ("poisson", 100.0, lambda x, rng: rng.poisson(100 * x) / 100.0),
])
@pytest.mark.parametrize("method", ["tv", "bm3d"])
def test_variance_stabilised_denoising_beats_the_noisy_input(noise, level, draw, method):
    truth = small("ct")
    noisy = draw(truth, np.random.default_rng(0))
    image = denoise_stabilized(noisy, noise, level, method)
    assert image.shape == truth.shape and image.dtype == np.float32
    assert psnr(truth, image) > psnr(truth, np.clip(noisy, 0, 1)) + 5.0  # 6.2 to 9.6 dB measured


def test_variance_stabilised_gaussian_is_the_plain_denoiser():
    noisy = small("phantom") + 0.1 * np.random.default_rng(2).standard_normal((1, 64, 64))
    np.testing.assert_array_equal(denoise_stabilized(noisy, "gaussian", 0.1, "tv"),
                                  denoise(noisy.clip(0, 1), 0.1, "tv")[0])
    with pytest.raises(InvalidInputError, match="no variance-stabilising transform"):
        denoise_stabilized(noisy, "rician", 0.1)


def test_sart_beats_filtered_back_projection_on_a_sparse_noisy_phantom():
    from pyrodip.physics.radon import Radon

    truth = small("phantom")
    operator = Radon(np.arange(0, 180, 4.0), 64)  # pyrodip's default: 45 angles, noise 0.1
    truth = truth * operator.circle.numpy()
    clean = operator(torch.from_numpy(truth[None]).float())[0]
    generator = torch.Generator().manual_seed(0)
    noisy = clean + 0.1 * float(clean.max()) * torch.randn(clean.shape, generator=generator)
    fbp = operator.fbp(noisy[None])[0].clamp(0, 1).numpy()
    image = sart(noisy.numpy(), np.array(operator.angles))
    assert image.shape == truth.shape and 0 <= image.min() and image.max() <= 1
    assert psnr(truth, image) > psnr(truth, fbp) + 3.0  # 4.3 dB measured
    with pytest.raises(InvalidInputError, match="does not match 22 angles"):
        sart(noisy.numpy(), np.arange(22.0))


# --- super-resolution ------------------------------------------------------------------------


def test_bicubic_beats_nearest_neighbour_on_a_smooth_image():
    factor = 4
    truth = smooth(64, 64)
    # The low-resolution pixel i covers truth pixels 4i .. 4i + 3: its centre is at 4i + 1.5.
    low = smooth(16, 16, offset=(factor - 1) / 2, step=factor)
    image, name = superresolve(low, factor)
    assert name == "bicubic"
    assert image.shape == (1, 64, 64) and image.dtype == np.float32
    nearest = np.repeat(np.repeat(low, factor, axis=1), factor, axis=2)
    assert psnr(truth, image) > psnr(truth, nearest) + 5.0


def test_superresolve_rgb_and_factor_one():
    low = small("retina", side=16)
    image, _ = superresolve(low, 3)
    assert image.shape == (3, 48, 48)
    assert image.min() >= 0 and image.max() <= 1
    same, _ = superresolve(low, 1)
    np.testing.assert_allclose(same, low, atol=1e-6)


@pytest.mark.parametrize("factor", [0, -2, 1.5, True, "4"])
def test_superresolve_rejects_bad_factors(factor):
    with pytest.raises(InvalidInputError, match="factor must be a positive integer"):
        superresolve(np.zeros((1, 8, 8)), factor)


@pytest.mark.parametrize("image", BAD_IMAGES.values(), ids=BAD_IMAGES)
def test_superresolve_rejects_bad_shapes(image):
    with pytest.raises(InvalidInputError, match=r"low-resolution image must be a \(C, H, W\)"):
        superresolve(image, 2)


# --- inpainting ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["ct", "phantom", "retina"])
def test_biharmonic_fills_a_random_mask(name):
    truth = small(name)
    known = np.random.default_rng(0).random(truth.shape[1:]) >= 0.2  # 20 % missing
    observed = truth * known
    image, method = inpaint(observed, known)
    assert method == "biharmonic"
    assert image.shape == truth.shape and image.dtype == np.float32
    assert image.min() >= 0 and image.max() <= 1
    assert psnr(truth, image) > psnr(truth, observed) + 6.0  # 10 to 29 dB measured
    np.testing.assert_allclose(image[:, known], truth[:, known], atol=1e-6)


def test_inpaint_mask_forms():
    truth = small("ct")
    known = np.random.default_rng(1).random((64, 64)) >= 0.2
    observed = truth * known
    expected, _ = inpaint(observed, known)
    for mask in (known[None], known.astype(np.float32), known[None].astype(np.uint8)):
        np.testing.assert_array_equal(inpaint(observed, mask)[0], expected)


def test_inpaint_with_nothing_missing_returns_the_image():
    truth = small("phantom")
    image, _ = inpaint(truth, np.ones((64, 64), bool))
    np.testing.assert_allclose(image, truth, atol=1e-6)


@pytest.mark.parametrize(
    "mask", [np.ones((32, 64), bool), np.ones((3, 64, 64), bool), np.ones(64, bool)]
)
def test_inpaint_rejects_masks_of_another_shape(mask):
    with pytest.raises(InvalidInputError, match="does not match the image"):
        inpaint(np.zeros((1, 64, 64)), mask)


def test_inpaint_rejects_an_all_missing_mask_and_bad_images():
    with pytest.raises(InvalidInputError, match="no pixel as known"):
        inpaint(np.zeros((1, 16, 16)), np.zeros((16, 16), bool))
    with pytest.raises(InvalidInputError, match="boolean or numbers"):
        inpaint(np.zeros((1, 16, 16)), np.full((16, 16), "yes"))
    with pytest.raises(InvalidInputError, match=r"observed image must be a \(C, H, W\)"):
        inpaint(np.zeros((16, 16)), np.ones((16, 16), bool))
