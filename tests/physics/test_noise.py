import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from pyrodip.errors import InvalidInputError
from pyrodip.physics.noise import (
    LOG_FLOOR,
    NOISE_MODELS,
    GaussianNoise,
    PoissonNoise,
    SpeckleNoise,
    make_noise,
)

SIDE = 256  # 65 536 pixels: every bound below is many standard errors wide
LEVELS = {"gaussian": 0.1, "speckle": 0.2, "poisson": 100.0}


def seeded(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def ramp() -> torch.Tensor:
    """A (1, SIDE, SIDE) image with values from 0.2 to 0.9."""
    return torch.linspace(0.2, 0.9, SIDE * SIDE).reshape(1, SIDE, SIDE)


@pytest.mark.parametrize("name", sorted(NOISE_MODELS))
def test_a_seeded_generator_makes_it_reproducible(name):
    noise = make_noise(name, LEVELS[name])
    clean = torch.rand(1, 32, 32, generator=seeded(9))
    first = noise.sample(clean, generator=seeded(1))
    assert torch.equal(first, noise.sample(clean, generator=seeded(1)))
    assert torch.equal(first, noise(clean, seeded(1)))  # callable, like deepinv's noise
    assert not torch.equal(first, noise.sample(clean, generator=seeded(2)))
    assert noise.sample(clean).shape == clean.shape  # the global generator when none is given


def test_gaussian_noise_has_the_stated_std():
    clean = ramp()
    residual = GaussianNoise(0.1).sample(clean, generator=seeded()) - clean
    assert abs(float(residual.mean())) < 0.003  # standard error 0.0004
    assert abs(float(residual.std()) - 0.1) < 0.003  # standard error 0.0003


def test_speckle_is_log_normal_with_the_stated_std():
    clean = ramp()
    noisy = SpeckleNoise(0.2).sample(clean, generator=seeded())
    assert (noisy > 0).all()
    log_ratio = torch.log(noisy) - torch.log(clean)
    assert abs(float(log_ratio.mean())) < 0.006  # standard error 0.0008
    assert abs(float(log_ratio.std()) - 0.2) < 0.006  # standard error 0.0006


def test_speckle_floors_black_pixels():
    noisy = SpeckleNoise(0.2).sample(torch.zeros(1, SIDE, SIDE), generator=seeded())
    assert (noisy > 0).all()
    log_ratio = torch.log(noisy) - math.log(LOG_FLOOR)
    assert abs(float(log_ratio.mean())) < 0.006 and abs(float(log_ratio.std()) - 0.2) < 0.006


@pytest.mark.parametrize("value, peak", [(0.3, 100.0), (0.8, 20.0), (0.05, 1000.0)])
def test_poisson_mean_is_x_and_variance_is_x_over_peak(value, peak):
    noisy = PoissonNoise(peak).sample(torch.full((1, SIDE, SIDE), value), generator=seeded())
    std_error = math.sqrt(value / peak / SIDE**2)
    assert abs(float(noisy.mean()) - value) < 8 * std_error
    # the sample variance's relative standard error is about sqrt(2 / n) = 0.0055
    assert float(noisy.var()) == pytest.approx(value / peak, rel=0.06)
    counts = noisy * peak
    assert torch.allclose(counts, counts.round(), atol=1e-3)  # whole photon counts


def test_poisson_clamps_negative_values_to_zero():
    clean = torch.full((1, 8, 8), -0.5)
    noisy = PoissonNoise(100.0).sample(clean, generator=seeded())
    assert torch.equal(noisy, torch.zeros_like(clean))


@settings(max_examples=15, deadline=None)
@given(
    name=st.sampled_from(sorted(NOISE_MODELS)),
    shape=st.lists(st.integers(1, 6), min_size=1, max_size=4).map(tuple),
    dtype=st.sampled_from([torch.float32, torch.float64]),
)
def test_shape_and_dtype_are_preserved(name, shape, dtype):
    clean = torch.rand(shape, generator=seeded(), dtype=dtype)
    noisy = make_noise(name, LEVELS[name]).sample(clean, generator=seeded())
    assert noisy.shape == clean.shape and noisy.dtype == dtype
    assert noisy.device == clean.device and torch.isfinite(noisy).all()
    if name != "gaussian":
        assert (noisy >= 0).all()


def test_make_noise_builds_each_model_with_its_level():
    assert make_noise("gaussian", 0.1) == GaussianNoise(0.1)
    assert make_noise("speckle", 0.3) == SpeckleNoise(0.3)
    assert make_noise("poisson", 500) == PoissonNoise(500.0)
    for name, level in LEVELS.items():
        noise = make_noise(name, level)
        assert noise.name == name and noise.level == level
    assert list(NOISE_MODELS) == ["gaussian", "speckle", "poisson"]


def test_unknown_names_are_refused_with_the_valid_ones_listed():
    with pytest.raises(InvalidInputError, match="'salt'.*gaussian, speckle, poisson"):
        make_noise("salt", 0.1)


@pytest.mark.parametrize("name", sorted(NOISE_MODELS))
@pytest.mark.parametrize("level", [0, -0.1, float("nan"), float("inf"), "loud", None, True])
def test_bad_levels_are_refused(name, level):
    with pytest.raises(InvalidInputError, match="must be a positive number"):
        make_noise(name, level)


def test_integer_images_are_refused():
    for name in NOISE_MODELS:
        with pytest.raises(InvalidInputError, match="floating-point"):
            make_noise(name, LEVELS[name]).sample(torch.ones(1, 4, 4, dtype=torch.int64))


def test_each_model_names_its_level_setting_and_default():
    assert [(cls.level_setting, cls.default_level) for cls in NOISE_MODELS.values()] == [
        ("noise_std", 0.1), ("noise_std", 0.1), ("photons", 1000.0)]


def test_levels_scale_with_the_image_as_each_noise_does():
    assert GaussianNoise.scaled_level(0.1, 4.0) == 0.1 * 4.0
    assert SpeckleNoise.scaled_level(0.1, 4.0) == 0.1
    assert PoissonNoise.scaled_level(1000.0, 4.0) == 1000.0 / 4.0


# --- GaussianNoise.sample (was pyrodip.io.images.add_gaussian_noise) -------------------------


def test_noise_is_reproducible_with_a_seeded_generator():
    truth = torch.rand(1, 32, 32, generator=torch.Generator().manual_seed(1))
    first = GaussianNoise(0.1).sample(truth, generator=torch.Generator().manual_seed(5))
    second = GaussianNoise(0.1).sample(truth, generator=torch.Generator().manual_seed(5))
    other = GaussianNoise(0.1).sample(truth, generator=torch.Generator().manual_seed(6))
    torch.testing.assert_close(first, second, rtol=0, atol=0)
    assert not torch.equal(first, other)
    assert first.shape == truth.shape and first.dtype == truth.dtype


@pytest.mark.parametrize("std", [0.01, 0.1, 0.5])
def test_noise_has_the_stated_std_and_is_not_clipped(std):
    truth = torch.full((1, 256, 256), 0.5)
    noisy = GaussianNoise(std).sample(truth, generator=torch.Generator().manual_seed(0))
    noise = noisy - truth
    # 65536 draws: the sample std's relative standard error is about 0.3 %, so a 5 %
    # tolerance is over 15 standard errors (and the seed makes the draw fixed anyway).
    assert float(noise.std()) == pytest.approx(std, rel=0.05)
    assert abs(float(noise.mean())) < 0.05 * std
    if std == 0.5:
        assert float(noisy.max()) > 1 and float(noisy.min()) < 0


@pytest.mark.parametrize("std", [0.0, -0.1, float("nan"), float("inf"), "abc", None])
def test_noise_rejects_bad_std(std):
    with pytest.raises(InvalidInputError, match="noise_std must be a positive number"):
        GaussianNoise(std).sample(torch.zeros(1, 4, 4))


def test_noise_rejects_integer_truth():
    with pytest.raises(InvalidInputError, match="floating-point"):
        GaussianNoise(0.1).sample(torch.zeros(1, 4, 4, dtype=torch.uint8))
