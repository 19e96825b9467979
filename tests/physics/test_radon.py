"""pyrodip.physics.radon: the Radon transform against scikit-image, filtered back projection,
and the refusals."""

import math

import numpy as np
import pytest
import torch
from conftest import DEVICES

from pyrodip.errors import InvalidInputError
from pyrodip.io.images import load_image
from pyrodip.physics.radon import Radon, default_ct_angles


def phantom() -> torch.Tensor:
    return torch.from_numpy(load_image("sample:phantom"))[None]  # (1, 1, 128, 128)


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


@pytest.mark.parametrize("device", DEVICES)
def test_fbp_on_device(device):
    operator = Radon(default_ct_angles(), 64).to(device)
    image = torch.zeros(2, 1, 64, 64, device=device)
    image[:, :, 24:40, 20:44] = 1.0
    reconstruction = operator.fbp(operator(image))
    assert reconstruction.device == image.device and reconstruction.shape == image.shape
    assert float(((reconstruction - image) ** 2).mean()) < 0.01
