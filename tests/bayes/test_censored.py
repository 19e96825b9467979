"""The censored (Tobit) Normal of clipped observations: its log-density against the closed
form, its draws, and where a run chooses it."""

import dataclasses

import numpy as np
import pytest
import torch
from scipy.stats import norm

from pyrodip import InvalidInputError, Observation, RunConfig, prepare_observation
from pyrodip.bayes.censored import CensoredNormal, censored_range
from pyrodip.bayes.likelihoods import GaussianLikelihood
from pyrodip.run.fit import build_model

LOC = torch.tensor([-0.2, 0.1, 0.5, 0.95, 1.3], dtype=torch.float64)
SCALE = torch.tensor([0.1, 0.05, 0.2, 0.1, 0.3], dtype=torch.float64)


@pytest.mark.parametrize("value", [0.0, 0.4, 1.0])
def test_log_prob_is_the_normal_density_inside_and_the_tail_mass_at_the_ends(value):
    found = CensoredNormal(LOC, SCALE, 0.0, 1.0).log_prob(torch.full_like(LOC, value))
    loc, scale = LOC.numpy(), SCALE.numpy()
    expected = {0.0: norm.logcdf((0.0 - loc) / scale),
                0.4: norm.logpdf(0.4, loc, scale),
                1.0: norm.logsf((1.0 - loc) / scale)}[value]
    np.testing.assert_allclose(found.numpy(), expected, rtol=1e-10)


def test_the_masses_and_the_density_add_up_to_one():
    fn = CensoredNormal(LOC, SCALE, 0.0, 1.0)
    grid = torch.linspace(0, 1, 200001, dtype=torch.float64)
    grid[0], grid[-1] = 1e-12, 1 - 1e-12  # just inside: the density, not the masses
    inside = torch.trapezoid(fn.expand((grid.numel(), 5)).log_prob(grid[:, None]).exp(),
                             grid, dim=0)
    ends = sum(fn.log_prob(torch.full_like(LOC, end)).exp() for end in (0.0, 1.0))
    np.testing.assert_allclose((inside + ends).numpy(), 1.0, atol=1e-5)


def test_draws_are_clipped_normal_draws_with_the_tail_mass_at_the_ends():
    torch.manual_seed(0)
    draws = CensoredNormal(LOC, SCALE, 0.0, 1.0).sample((40000,))
    assert draws.shape == (40000, 5) and bool(((draws >= 0) & (draws <= 1)).all())
    at_low = (draws == 0).double().mean(0).numpy()
    np.testing.assert_allclose(at_low, norm.cdf(-LOC.numpy() / SCALE.numpy()), atol=0.01)


def test_gradients_stay_finite_far_in_the_tails():
    loc = torch.tensor([-30.0, 0.5, 30.0], requires_grad=True)
    CensoredNormal(loc, torch.tensor(0.1), 0.0, 1.0).log_prob(
        torch.tensor([0.0, 1.0, 1.0])).sum().backward()
    assert torch.isfinite(loc.grad).all()


def test_clipped_observations_are_censored():
    obs = Observation.simulate(torch.rand(1, 16, 16), noise=0.3, seed=0)
    assert censored_range(obs) is None  # Gaussian noise leaves [0, 1]
    clipped = dataclasses.replace(obs, observation=obs.observation.clamp(0, 1))
    assert censored_range(clipped) == (0.0, 1.0)
    inside = dataclasses.replace(obs, observation=obs.observation.clamp(0.1, 0.9))
    assert censored_range(inside) is None
    with pytest.raises(InvalidInputError, match="low < high"):
        GaussianLikelihood(0.1, censored=(1.0, 0.0))


@pytest.mark.parametrize(("settings", "censored"), [
    ({"clip": True}, (0.0, 1.0)),
    ({"clip": True, "censoring": "off"}, None),
    ({}, None),
])
def test_a_run_censors_a_clipped_observation_unless_told_not_to(settings, censored):
    config = RunConfig(size=32, **settings)
    observation = prepare_observation(config)
    y = observation.observation
    assert bool(((y >= 0) & (y <= 1)).all()) == config.clip
    model, _ = build_model(config, observation)
    assert model.likelihood.censored == censored


@pytest.mark.parametrize("settings", [{"task": "ct"}, {"noise": "poisson"}, {"observed": True}])
def test_clip_is_refused_where_there_is_no_gaussian_image_space_observation(settings):
    with pytest.raises(InvalidInputError, match="`clip` clips a simulated image-space"):
        RunConfig(clip=True, **settings)
