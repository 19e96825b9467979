"""pyrodip.physics.noise_estimate: the noise level estimated from an image (how an observed
run uses it is tested in tests/run/test_observe.py)."""

import numpy as np
import pytest
import torch
from conftest import NOISE_ESTIMATE_TOLERANCE, noisy_sample
from hypothesis import given, settings
from hypothesis import strategies as st

from pyrodip.errors import InvalidInputError
from pyrodip.io.images import load_image
from pyrodip.physics.noise import make_noise
from pyrodip.physics.noise_estimate import estimate_noise_level, estimate_noise_std
from pyrodip.seeding import generator


@pytest.mark.parametrize("name", ["ct", "mr", "phantom", "retina"])
@pytest.mark.parametrize("std", [0.05, 0.1, 0.2])
def test_estimate_within_tolerance_on_samples(name, std):
    estimate = estimate_noise_std(noisy_sample(name, std))
    assert abs(estimate / std - 1) <= NOISE_ESTIMATE_TOLERANCE, (name, std, estimate)


def test_pure_noise_is_measured_exactly():
    noise = torch.randn(3, 64, 64, generator=torch.Generator().manual_seed(1))
    assert estimate_noise_std(0.5 + 0.03 * noise) == pytest.approx(0.03, rel=0.03)


@settings(max_examples=10, deadline=None)
@given(scale=st.floats(0.1, 100), shift=st.floats(-5, 5))
def test_unbounded_estimate_scales_with_the_image(scale, shift):
    y = noisy_sample("phantom", 0.05).numpy()
    base = estimate_noise_std(y, -np.inf, np.inf)
    moved = estimate_noise_std(y * scale + shift, -np.inf, np.inf)
    assert moved == pytest.approx(base * scale, rel=1e-6)


@pytest.mark.parametrize("noise, level", [("speckle", 0.1), ("poisson", 300.0)])
def test_level_of_other_noise_models(noise, level):
    clean = torch.from_numpy(load_image("sample:retina")).clamp(0.2, 0.9)
    y = make_noise(noise, level).sample(clean, generator(0, "noise")).clamp(0, 1)
    assert estimate_noise_level(noise, y) == pytest.approx(level, rel=NOISE_ESTIMATE_TOLERANCE)


@pytest.mark.parametrize("image, fragment", [
    (np.zeros((5, 40)), "at least 7x7"),
    (np.full((16, 16), np.nan), "NaN"),
])
def test_bad_images_are_refused(image, fragment):
    with pytest.raises(InvalidInputError, match=fragment):
        estimate_noise_std(image)
