import math

import pyro
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from pyro import poutine

from pyrodip.bayes.likelihoods import (
    LIKELIHOODS,
    GaussianLikelihood,
    PoissonLikelihood,
    SpeckleLikelihood,
)
from pyrodip.errors import InvalidInputError
from pyrodip.physics.noise import LOG_FLOOR

HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)
PEAK = 50.0


def trace_of(lik, prediction, observation, **kwargs):
    # A fresh parameter store, as pyrodip's own fits use: a learned std is then the module's own.
    with pyro.validation_enabled(True), pyro.get_param_store().scope():
        return poutine.trace(lambda: lik(prediction, observation, **kwargs)).get_trace()


def log_prob(lik, prediction, observation, **kwargs) -> torch.Tensor:
    return trace_of(lik, prediction, observation, **kwargs).log_prob_sum()


def images(seed: int = 0, shape=(1, 2, 6, 5)) -> tuple[torch.Tensor, torch.Tensor]:
    """A prediction in (0.05, 0.95) and a positive observation on the 1 / PEAK grid."""
    g = torch.Generator().manual_seed(seed)
    prediction = 0.05 + 0.9 * torch.rand(shape, generator=g)
    observation = torch.round(PEAK * (0.05 + 0.9 * torch.rand(shape, generator=g))) / PEAK
    return prediction, observation


ALL = {
    "gaussian": lambda: GaussianLikelihood(0.1),
    "learned": lambda: GaussianLikelihood(0.1, learn_std=True),
    "heteroscedastic": lambda: GaussianLikelihood(0.1, heteroscedastic=True),
    "speckle": lambda: SpeckleLikelihood(0.2),
    "poisson": lambda: PoissonLikelihood(PEAK),
}


def call_kwargs(lik, prediction) -> dict:
    if lik.heteroscedastic:
        g = torch.Generator().manual_seed(1)
        return {"log_variance": torch.randn(prediction[:, :1].shape, generator=g) - 4}
    return {}


# ----------------------------------------------------------------------------- closed forms


def test_gaussian_log_prob_is_the_normal_density():
    prediction, observation = images()
    std = 0.1
    expected = -0.5 * ((observation - prediction) / std) ** 2 - math.log(std) - HALF_LOG_2PI
    actual = log_prob(GaussianLikelihood(std), prediction, observation)
    assert torch.allclose(actual, expected.sum(), rtol=1e-5)


def test_heteroscedastic_uses_the_per_pixel_std():
    prediction, observation = images()
    log_variance = torch.linspace(-6, -2, 30).reshape(1, 1, 6, 5)  # broadcast over channels
    std = torch.exp(0.5 * log_variance)
    expected = -0.5 * ((observation - prediction) / std) ** 2 - torch.log(std) - HALF_LOG_2PI
    lik = GaussianLikelihood(0.1, heteroscedastic=True)
    actual = log_prob(lik, prediction, observation, log_variance=log_variance)
    assert torch.allclose(actual, expected.sum(), rtol=1e-5)
    # the scalar noise_std plays no part
    assert not torch.allclose(actual, log_prob(GaussianLikelihood(0.1), prediction, observation))
    with pytest.raises(InvalidInputError, match="log-variance"):
        lik(prediction, observation)


def test_speckle_log_prob_is_the_log_normal_density():
    prediction, observation = images()
    prediction[0, 0, 0, 0] = 0.0  # clamped to LOG_FLOOR
    std = 0.2
    log_y = torch.log(observation)
    log_x = torch.log(prediction.clamp_min(LOG_FLOOR))
    expected = -log_y - math.log(std) - HALF_LOG_2PI - 0.5 * ((log_y - log_x) / std) ** 2
    actual = log_prob(SpeckleLikelihood(std), prediction, observation)
    assert torch.isfinite(actual)
    assert torch.allclose(actual, expected.sum(), rtol=1e-5)


def test_poisson_log_prob_is_the_poisson_mass_of_the_counts():
    prediction, observation = images()
    counts = torch.round(observation * PEAK)
    rate = PEAK * prediction
    expected = counts * torch.log(rate) - rate - torch.lgamma(counts + 1)
    lik = PoissonLikelihood(PEAK)
    trace = trace_of(lik, prediction, observation)
    assert torch.allclose(trace.log_prob_sum(), expected.sum(), rtol=1e-5)
    assert torch.equal(trace.nodes["obs"]["value"], counts)  # the site holds the counts


def test_poisson_rate_is_clamped_where_the_prediction_is_zero():
    prediction = torch.zeros(1, 1, 4, 4)
    assert torch.isfinite(log_prob(PoissonLikelihood(PEAK), prediction, torch.zeros(1, 1, 4, 4)))


# ----------------------------------------------------------------------------- masking


@pytest.mark.parametrize("kind", sorted(ALL))
def test_masked_out_pixels_contribute_nothing(kind):
    lik = ALL[kind]()
    prediction, observation = images()
    kwargs = call_kwargs(lik, prediction)
    mask = torch.ones_like(prediction, dtype=torch.bool)
    mask[0, 1, 2, 3] = False
    base = log_prob(lik, prediction, observation, mask=mask, **kwargs)

    hidden = observation.clone()
    hidden[0, 1, 2, 3] += 0.4
    assert torch.equal(log_prob(lik, prediction, hidden, mask=mask, **kwargs), base)

    seen = observation.clone()
    seen[0, 0, 2, 3] += 0.4
    assert not torch.allclose(log_prob(lik, prediction, seen, mask=mask, **kwargs), base)

    full = torch.ones_like(mask)
    assert torch.allclose(
        log_prob(lik, prediction, observation, mask=full, **kwargs),
        log_prob(lik, prediction, observation, **kwargs),
    )
    none = torch.zeros_like(mask)
    assert log_prob(lik, prediction, observation, mask=none, **kwargs) == 0


@pytest.mark.parametrize("kind", sorted(ALL))
def test_invalid_values_under_the_mask_are_harmless(kind):
    """NaN, negative or zero pixels where mask is False: finite log-prob and gradients."""
    lik = ALL[kind]()
    prediction, observation = images()
    prediction.requires_grad_(True)
    kwargs = call_kwargs(lik, prediction)
    mask = torch.ones_like(prediction, dtype=torch.bool)
    mask[0, 0, :3] = False
    observation[0, 0, 0] = float("nan")
    observation[0, 0, 1] = -1.0
    observation[0, 0, 2] = 0.0
    value = log_prob(lik, prediction, observation, mask=mask, **kwargs)
    value.backward()
    assert torch.isfinite(value)
    assert torch.isfinite(prediction.grad).all()
    assert (prediction.grad[0, 0, :3] == 0).all()
    assert (prediction.grad[0, 0, 3:] != 0).all()


def test_mask_broadcasts_over_channels():
    prediction, observation = images()
    mask = torch.rand(6, 5, generator=torch.Generator().manual_seed(2)) > 0.5
    lik = GaussianLikelihood(0.1)
    expected = log_prob(lik, prediction, observation, mask=mask.expand(1, 2, 6, 5).clone())
    assert torch.allclose(log_prob(lik, prediction, observation, mask=mask), expected)


@pytest.mark.parametrize(
    "mask, message",
    [
        (torch.ones(1, 2, 6, 5), "bool tensor"),
        (torch.ones(3, 6, 5, dtype=torch.bool), "does not broadcast"),
        (torch.ones(2, 1, 2, 6, 5, dtype=torch.bool), "does not broadcast"),
    ],
)
def test_bad_masks_are_refused(mask, message):
    prediction, observation = images()
    with pytest.raises(InvalidInputError, match=message):
        GaussianLikelihood(0.1)(prediction, observation, mask=mask)


# ----------------------------------------------------------------------------- parameters


@pytest.mark.parametrize(
    "lik", [GaussianLikelihood(0.1, learn_std=True), SpeckleLikelihood(0.2, learn_std=True)]
)
def test_learned_std_is_a_parameter_with_a_gradient(lik):
    prediction, observation = images()
    names = [name for name, _ in lik.named_parameters()]
    assert any(name.startswith("noise_std") for name in names)
    (param,) = list(lik.parameters())
    log_prob(lik, prediction, observation).backward()
    assert param.grad is not None and torch.isfinite(param.grad).all() and param.grad != 0


def test_fixed_likelihoods_have_no_parameters():
    for kind in ("gaussian", "heteroscedastic", "speckle", "poisson"):
        assert list(ALL[kind]().parameters()) == []


def test_interface_is_shared():
    expected = {
        "gaussian": ("gaussian", 0),
        "learned": ("learned", 0),
        "heteroscedastic": ("heteroscedastic", 1),
        "speckle": ("speckle", 0),
        "poisson": ("poisson", 0),
    }
    for kind, (name, extra) in expected.items():
        lik = ALL[kind]()
        assert lik.name == name
        assert lik.extra_channels == extra
        assert lik.heteroscedastic == (extra == 1)
    assert SpeckleLikelihood(0.2, learn_std=True).name == "speckle-learned"
    assert LIKELIHOODS == ("gaussian", "learned", "heteroscedastic")
    for name in LIKELIHOODS:
        assert ALL[name]().name == name


@pytest.mark.parametrize(
    "build",
    [
        lambda: GaussianLikelihood(0.0),
        lambda: GaussianLikelihood(float("nan")),
        lambda: GaussianLikelihood(0.1, learn_std=True, heteroscedastic=True),
        lambda: SpeckleLikelihood(-0.1),
        lambda: SpeckleLikelihood(float("inf")),
        lambda: PoissonLikelihood(0),
        lambda: PoissonLikelihood("many"),
    ],
)
def test_bad_parameters_are_refused(build):
    with pytest.raises(InvalidInputError):
        build()


# ----------------------------------------------------------------------------- sampling


@settings(max_examples=10, deadline=None)
@given(
    kind=st.sampled_from(sorted(ALL)),
    shape=st.lists(st.integers(1, 5), min_size=2, max_size=4).map(tuple),
)
def test_sampling_returns_an_observation_shaped_like_the_prediction(kind, shape):
    lik = ALL[kind]()
    prediction = torch.full(shape, 0.5)
    kwargs = {"log_variance": torch.full(shape, -4.0)} if lik.heteroscedastic else {}
    trace = trace_of(lik, prediction, None, **kwargs)
    sample = trace.nodes["_RETURN"]["value"]
    assert sample.shape == prediction.shape and torch.isfinite(sample).all()
    assert not trace.nodes["obs"]["is_observed"]
    if kind == "speckle":
        assert (sample > 0).all()
    if kind == "poisson":  # the site holds counts, forward returns them in image units
        assert torch.allclose(sample * PEAK, trace.nodes["obs"]["value"])
        assert (sample >= 0).all()
