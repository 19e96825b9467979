"""pyrodip.physics.operators: forward operators, their adjoints, and inpainting masks."""

import math

import imageio.v3 as iio
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from pyrodip.errors import InvalidInputError, MissingFileError
from pyrodip.io.images import load_image
from pyrodip.physics.masks import load_mask, parse_mask, random_mask, stroke_mask, text_mask
from pyrodip.physics.operators import Downsample, Identity, LinearOperator, Mask
from pyrodip.physics.radon import Radon, default_ct_angles
from pyrodip.seeding import generator

FEW = settings(max_examples=12, deadline=None)
DEVICES = [
    "cpu",
    pytest.param(
        "cuda",
        marks=[
            pytest.mark.gpu,
            pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA"),
        ],
    ),
]


def make_operators():
    """(name, operator, input shape) for every operator, on a batch of 2."""
    generator = torch.Generator().manual_seed(0)
    channel_mask = torch.rand(3, 16, 16, generator=generator) > 0.4
    return [
        ("identity", Identity(), (2, 3, 16, 16)),
        ("downsample2", Downsample(2), (2, 3, 16, 16)),
        ("downsample4", Downsample(4, channels=1), (2, 1, 32, 16)),
        ("downsample8", Downsample(8), (2, 2, 32, 32)),
        ("mask", Mask(random_mask((16, 16), 0.3, seed=0)), (2, 3, 16, 16)),
        ("mask-per-channel", Mask(channel_mask), (2, 3, 16, 16)),
        ("radon", Radon(default_ct_angles(), 32), (2, 1, 32, 32)),
        ("radon-odd", Radon([0.0, 33.0, 90.0, 200.0], 17), (2, 2, 17, 17)),
    ]


OPERATORS = make_operators()
OPERATOR_IDS = [name for name, _, _ in OPERATORS]


def phantom() -> torch.Tensor:
    return torch.from_numpy(load_image("sample:phantom"))[None]  # (1, 1, 128, 128)


# --- adjoints ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "operator", "shape"), OPERATORS, ids=OPERATOR_IDS)
@pytest.mark.parametrize(("dtype", "tolerance"), [(torch.float64, 1e-5), (torch.float32, 1e-4)])
def test_adjointness(name, operator, shape, dtype, tolerance):
    for seed in range(3):
        generator = torch.Generator().manual_seed(seed)
        assert operator.adjointness_error(shape, generator, dtype=dtype) < tolerance


@FEW
@given(
    factor=st.sampled_from([2, 4, 8]),
    blocks=st.tuples(st.integers(1, 4), st.integers(1, 4)),
    channels=st.integers(1, 3),
)
def test_downsample_adjointness_for_any_shape(factor, blocks, channels):
    shape = (1, channels, blocks[0] * factor, blocks[1] * factor)
    generator = torch.Generator().manual_seed(1)
    assert Downsample(factor).adjointness_error(shape, generator, dtype=torch.float64) < 1e-10


def test_generic_adjoint_matches_closed_form_and_is_differentiable():
    operator = Mask(random_mask((8, 8), 0.5, seed=3))
    y = torch.randn(2, 1, 8, 8, requires_grad=True)
    generic = LinearOperator.adjoint(operator, y)
    assert torch.equal(generic, operator.adjoint(y))
    generic.sum().backward()  # A^T is linear in y: d/dy sum(A^T y) = A 1 = the mask
    assert torch.equal(y.grad, operator.observed_mask.float().expand(2, 1, 8, 8))
    with torch.no_grad():  # works without grad mode too, and returns a plain tensor
        plain = Downsample(2).adjoint(torch.ones(1, 1, 4, 4))
    assert plain.shape == (1, 1, 8, 8) and not plain.requires_grad


def test_generic_adjoint_of_a_user_operator():
    class Transpose(LinearOperator):
        def forward(self, x):
            return x.transpose(-1, -2)

        def input_shape(self, output_shape):
            *lead, height, width = output_shape
            return (*lead, width, height)

    y = torch.randn(1, 1, 3, 5)
    assert torch.equal(Transpose().adjoint(y), y.transpose(-1, -2))
    assert Transpose().adjointness_error((2, 1, 5, 3)) < 1e-6
    with pytest.raises(InvalidInputError, match="pass y shaped like A"):
        Transpose().adjoint(y, x_shape=(1, 1, 3, 5))


# --- super-resolution ------------------------------------------------------------------------


@FEW
@given(
    factor=st.sampled_from([2, 4, 8]),
    batch=st.integers(1, 2),
    channels=st.integers(1, 3),
    blocks=st.tuples(st.integers(1, 6), st.integers(1, 6)),
    value=st.floats(-2, 2),
)
def test_downsample_shape_and_constants(factor, batch, channels, blocks, value):
    height, width = blocks[0] * factor, blocks[1] * factor
    image = torch.full((batch, channels, height, width), value, dtype=torch.float64)
    out = Downsample(factor)(image)
    assert out.shape == (batch, channels, blocks[0], blocks[1])
    assert torch.allclose(out, torch.full_like(out, value), atol=1e-12)


def dip_lanczos2_kernel(factor: int) -> np.ndarray:
    """DIP's 2-D kernel for lanczos2, phase 0.5, written out pixel by pixel from its formula."""
    width = 4 * factor + 1  # DIP's nominal width; phase 0.5 drops one tap
    center = (width + 1) / 2
    kernel = np.zeros((width - 1, width - 1))
    for i in range(1, width):
        for j in range(1, width):
            value = 1.0
            for d in (abs(i + 0.5 - center) / factor, abs(j + 0.5 - center) / factor):
                value *= 2 * np.sin(np.pi * d) * np.sin(np.pi * d / 2) / (np.pi**2 * d**2)
            kernel[i - 1, j - 1] = value
    return kernel / kernel.sum()


@pytest.mark.parametrize("factor", [2, 4, 8])
def test_downsample_equals_dip_downsampler(factor):
    image = torch.rand(1, 2, 8 * factor, 4 * factor, dtype=torch.float64)
    kernel = torch.from_numpy(dip_lanczos2_kernel(factor))
    pad = (kernel.shape[0] - factor) // 2  # DIP's preserve_size padding for an even kernel
    padded = torch.nn.functional.pad(image, (pad,) * 4, mode="replicate")
    weight = kernel.expand(2, 1, *kernel.shape)
    expected = torch.nn.functional.conv2d(padded, weight, stride=factor, groups=2)
    assert torch.allclose(Downsample(factor).double()(image), expected, atol=1e-12)


def test_downsample_refusals():
    for factor in (1, 3, 16, 2.0, True, "2"):
        with pytest.raises(InvalidInputError, match="one of 2, 4, 8"):
            Downsample(factor)
    with pytest.raises(InvalidInputError, match="channels must be a positive integer"):
        Downsample(2, channels=0)
    with pytest.raises(InvalidInputError) as caught:
        Downsample(4)(torch.rand(1, 1, 130, 128))
    assert str(caught.value) == (
        "image side 130 is not divisible by the super-resolution factor 4: "
        "crop it to a multiple of 4"
    )
    with pytest.raises(InvalidInputError, match="built for 3 channels"):
        Downsample(2, channels=3)(torch.rand(1, 1, 8, 8))
    with pytest.raises(InvalidInputError, match=r"\(B, C, H, W\)"):
        Downsample(2)(torch.rand(8, 8))
    with pytest.raises(InvalidInputError, match="floating-point"):
        Downsample(2)(torch.ones(1, 1, 8, 8, dtype=torch.long))


# --- inpainting ------------------------------------------------------------------------------


def test_mask_keeps_shape_and_zeroes_missing_pixels():
    mask = random_mask((12, 10), 0.25, seed=0)
    operator = Mask(mask)
    image = torch.rand(2, 3, 12, 10) + 0.5
    out = operator(image)
    assert out.shape == image.shape
    assert operator.observed_mask.dtype == torch.bool
    assert operator.observed_mask.shape == (1, 1, 12, 10)
    assert int(operator.observed_mask.sum()) == 120 - 30
    assert int((out != 0).sum()) == 2 * 3 * 90
    assert torch.equal(out[:, :, mask], image[:, :, mask])


def test_mask_per_channel_and_refusals():
    mask = torch.ones(3, 4, 4, dtype=torch.bool)
    mask[1, 0, 0] = False
    operator = Mask(mask)
    assert operator.observed_mask.shape == (1, 3, 4, 4)
    assert int((operator(torch.ones(1, 3, 4, 4)) == 0).sum()) == 1
    with pytest.raises(InvalidInputError, match="no known pixel"):
        Mask(torch.zeros(4, 4, dtype=torch.bool))
    with pytest.raises(InvalidInputError, match="bool tensor"):
        Mask(torch.ones(4, 4))
    with pytest.raises(InvalidInputError, match=r"\(H, W\) or \(C, H, W\)"):
        Mask(torch.ones(1, 1, 4, 4, dtype=torch.bool))
    with pytest.raises(InvalidInputError, match="mask is 4x4 but the image is 8x8"):
        operator(torch.rand(1, 3, 8, 8))
    with pytest.raises(InvalidInputError, match="3 channels but the image has 2"):
        operator(torch.rand(1, 2, 4, 4))


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


# --- sparse-view CT --------------------------------------------------------------------------


def test_radon_matches_skimage_on_the_phantom():
    from skimage.transform import radon

    image = phantom()
    angles = default_ct_angles()
    assert len(angles) == 45 and float(angles[-1]) == 176.0
    ours = Radon(angles, 128)(image)[0, 0].double().numpy()
    reference = radon(image[0, 0].double().numpy(), theta=angles.numpy(), circle=True)
    assert ours.shape == reference.shape == (128, 45)
    error = np.linalg.norm(ours - reference) / np.linalg.norm(reference)
    assert error < 1e-4  # measured: 2.0e-7 (float32 rounding; same rotation and sampling)


def test_radon_matches_skimage_for_odd_sizes_and_any_angles():
    from skimage.transform import radon

    size = 33
    offsets = np.arange(size) - size // 2
    disk = (offsets[:, None] ** 2 + offsets[None] ** 2) <= (size // 2) ** 2
    image = np.random.default_rng(0).random((size, size)) * disk
    angles = np.array([0.0, 17.0, 45.0, 90.0, 133.5, 180.0, 270.0, -30.0])
    ours = Radon(angles, size)(torch.from_numpy(image)[None, None]).numpy()[0, 0]
    reference = radon(image, theta=angles, circle=True)
    assert np.linalg.norm(ours - reference) / np.linalg.norm(reference) < 1e-4


def test_fbp_reconstructs_the_phantom():
    image = phantom()
    operator = Radon(default_ct_angles(), 128)
    reconstruction = operator.fbp(operator(image)).clamp(0, 1)
    assert reconstruction.shape == image.shape
    psnr = -10 * math.log10(float(((reconstruction - image) ** 2).mean()))
    assert psnr > 28.0  # measured: 28.63 dB (skimage's iradon: 28.75 dB)


def test_radon_refusals():
    operator = Radon(default_ct_angles(), 16)
    with pytest.raises(InvalidInputError, match="needs a square image, got 16x12"):
        operator(torch.rand(1, 1, 16, 12))
    with pytest.raises(InvalidInputError, match="image_size=8"):
        operator(torch.rand(1, 1, 8, 8))
    with pytest.raises(InvalidInputError, match=r"\(B, C, 16 detectors, 45 angles\)"):
        operator.fbp(torch.rand(1, 1, 16, 44))
    for angles in ([], [0.0, math.inf], ["a"]):
        with pytest.raises(InvalidInputError, match="angles must be"):
            Radon(angles, 16)
    for size in (1, 16.0, True):
        with pytest.raises(InvalidInputError, match="image_size"):
            Radon(None, size)
    assert Radon(None, 16).n_angles == 45


# --- batches, dtypes, devices, gradients -----------------------------------------------------


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize(("name", "operator", "shape"), OPERATORS, ids=OPERATOR_IDS)
def test_batches_dtypes_and_devices(name, operator, shape, dtype, device):
    operator = operator.to(device)
    x = torch.rand(shape, dtype=dtype, device=device)
    y = operator(x)
    assert y.dtype == dtype and y.device == x.device and y.shape[0] == 2
    # each image of the batch is mapped on its own
    assert torch.allclose(y[1:], operator(x[1:]), atol=1e-5)
    back = operator.adjoint(y)
    assert back.shape == x.shape and back.dtype == dtype and back.device == x.device


@pytest.mark.parametrize(("name", "operator", "shape"), OPERATORS, ids=OPERATOR_IDS)
def test_gradients_flow(name, operator, shape):
    x = torch.rand(shape).requires_grad_()
    (operator(x) ** 2).sum().backward()
    assert x.grad is not None and x.grad.shape == x.shape and bool(x.grad.abs().sum() > 0)


@pytest.mark.parametrize("device", DEVICES)
def test_fbp_on_device(device):
    operator = Radon(default_ct_angles(), 64).to(device)
    image = torch.zeros(2, 1, 64, 64, device=device)
    image[:, :, 24:40, 20:44] = 1.0
    reconstruction = operator.fbp(operator(image))
    assert reconstruction.device == image.device and reconstruction.shape == image.shape
    assert float(((reconstruction - image) ** 2).mean()) < 0.01
