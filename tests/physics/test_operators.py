"""pyrodip.physics.operators: the forward operators (identity, downsampling, masking, and the
Radon transform among them) and their adjoints, on batches, dtypes and devices."""

import numpy as np
import pytest
import torch
from conftest import DEVICES
from hypothesis import given, settings
from hypothesis import strategies as st

from pyrodip.errors import InvalidInputError
from pyrodip.physics.masks import random_mask
from pyrodip.physics.operators import Downsample, Identity, LinearOperator, Mask
from pyrodip.physics.radon import Radon, default_ct_angles

FEW = settings(max_examples=12, deadline=None)


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
