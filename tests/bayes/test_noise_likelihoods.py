import pyro
import pytest
import torch
from pyro import poutine

from pyrodip.bayes.likelihoods import GaussianLikelihood, PoissonLikelihood, SpeckleLikelihood
from pyrodip.bayes.noise_likelihoods import NOISE_LIKELIHOODS, noise_likelihood
from pyrodip.errors import InvalidInputError
from pyrodip.physics.noise import (
    NOISE_MODELS,
    GaussianNoise,
    NoiseModel,
    PoissonNoise,
    SpeckleNoise,
    make_noise,
)


def log_prob(lik, prediction, observation) -> torch.Tensor:
    with pyro.validation_enabled(True):
        return poutine.trace(lambda: lik(prediction, observation)).get_trace().log_prob_sum()


def test_each_noise_model_gets_its_matching_likelihood():
    lik = noise_likelihood(GaussianNoise(0.1))
    assert isinstance(lik, GaussianLikelihood) and float(lik.std()) == pytest.approx(0.1)
    assert noise_likelihood(GaussianNoise(0.1), learn=True).name == "learned"
    assert noise_likelihood(GaussianNoise(0.1), heteroscedastic=True).extra_channels == 1
    lik = noise_likelihood(SpeckleNoise(0.2))
    assert isinstance(lik, SpeckleLikelihood) and float(lik.std()) == pytest.approx(0.2)
    assert noise_likelihood(SpeckleNoise(0.2), learn=True).learn_std
    lik = noise_likelihood(PoissonNoise(100.0))
    assert isinstance(lik, PoissonLikelihood) and lik.peak == 100.0


@pytest.mark.parametrize(
    "noise, kwargs, message",
    [
        (SpeckleNoise(0.2), {"heteroscedastic": True}, "no heteroscedastic"),
        (PoissonNoise(100.0), {"heteroscedastic": True}, "no heteroscedastic"),
        (PoissonNoise(100.0), {"learn": True}, "no std to learn"),
    ],
)
def test_unsupported_likelihood_options_are_refused(noise, kwargs, message):
    with pytest.raises(InvalidInputError, match=message):
        noise_likelihood(noise, **kwargs)


@pytest.mark.parametrize("name", sorted(NOISE_MODELS))
def test_the_matching_likelihood_prefers_the_clean_image(name):
    noise = make_noise(name, {"gaussian": 0.1, "speckle": 0.2, "poisson": 100.0}[name])
    clean = torch.linspace(0.2, 0.9, 64 * 64).reshape(1, 1, 64, 64)
    noisy = noise.sample(clean, generator=torch.Generator().manual_seed(0))
    lik = noise_likelihood(noise)
    assert log_prob(lik, clean, noisy) > log_prob(lik, 0.8 * clean, noisy)
    assert log_prob(lik, clean, noisy) > log_prob(lik, 1.2 * clean, noisy)


def test_a_plugin_noise_model_finds_its_own_or_its_base_class_likelihood():
    class Quiet(GaussianNoise):
        name = "test_quiet"

    class Salt(NoiseModel):
        name = "test_salt"
        level = 0.3

    assert isinstance(noise_likelihood(Quiet(0.1)), GaussianLikelihood)
    with pytest.raises(InvalidInputError, match="'test_salt' has no likelihood: register one"):
        noise_likelihood(Salt())
    NOISE_LIKELIHOODS.register("test_salt", lambda noise, learn, hetero: SpeckleLikelihood(0.3))
    try:
        assert noise_likelihood(Salt()).name == "speckle"
    finally:
        NOISE_LIKELIHOODS.unregister("test_salt")
