import dataclasses

import pyro
import pytest
import torch
from pyro import poutine
from pyro.infer import TraceMeanField_ELBO
from torch import nn

from pyrodip import BayesianDIP, GaussianLikelihood, InvalidInputError, NetConfig, make_guide

TINY = NetConfig(scales=2, input_channels=4, channels_down=4, channels_up=4, channels_skip=2)


def weight_sites(trace):
    return {name: site for name, site in trace.nodes.items()
            if site["type"] == "sample" and not site["is_observed"]}


@pytest.mark.parametrize("normalization", ["batch", "none", "scaled"])
def test_one_sample_site_per_conv_weight_and_bias_but_none_before_batchnorm(normalization):
    net = dataclasses.replace(TINY, normalization=normalization)
    model = BayesianDIP((1, 16, 16), net=net)
    trace = poutine.trace(model).get_trace(torch.rand(1, 1, 16, 16))
    sites = weight_sites(trace)
    convs = {name: m for name, m in model.net.named_modules() if isinstance(m, nn.Conv2d)}
    expected = {f"net.{name}.weight" for name in convs}
    if normalization == "batch":  # a bias before BatchNorm cancels: only the head has one
        expected.add("net.head.bias")
    else:
        expected |= {f"net.{name}.bias" for name in convs}
    assert set(sites) == expected
    assert list(sites) == list(model.weight_sites)  # the guide samples in the model's order
    for name, site in sites.items():
        assert site["value"].shape == model.weight_sites[name]
    assert trace.nodes["obs"]["is_observed"]


def test_batchnorm_is_deterministic_unless_asked():
    bn_sites = [n for n in BayesianDIP((1, 16, 16), net=TINY).weight_sites if ".up.0." in n]
    assert bn_sites == []
    model = BayesianDIP((1, 16, 16), net=TINY, bayesian_batchnorm=True)
    bn = {f"net.{name}.{p}" for name, m in model.net.named_modules()
          if isinstance(m, nn.BatchNorm2d) for p in ("weight", "bias")}
    assert bn and bn <= set(model.weight_sites)


def test_changing_the_prior_scale_in_place_changes_every_site():
    model = BayesianDIP((1, 16, 16), net=TINY, prior="normal:0.05")
    model.prior.scale = 0.3
    trace = poutine.trace(model).get_trace(torch.rand(1, 1, 16, 16))
    for site in weight_sites(trace).values():
        assert torch.allclose(site["fn"].base_dist.scale, torch.tensor(0.3))


def test_heteroscedastic_adds_an_output_channel():
    model = BayesianDIP((3, 16, 16), net=TINY,
                        likelihood=GaussianLikelihood(0.1, heteroscedastic=True))
    assert model.weight_sites["net.head.weight"][0] == 4
    image, log_variance = model.render()
    assert image.shape == (1, 3, 16, 16) and log_variance.shape == (1, 1, 16, 16)


def test_image_size_must_fit_the_scales():
    with pytest.raises(InvalidInputError, match="multiple of 4"):
        BayesianDIP((1, 18, 16), net=TINY)


def closed_form_kl(guide, prior_scale):
    total = 0.0
    for name in guide.sites:
        mu, sigma = guide.loc(name), guide.scale(name)
        kl = (torch.log(prior_scale / sigma) + (sigma**2 + mu**2) / (2 * prior_scale**2) - 0.5)
        total += kl.sum()
    return total


@pytest.mark.parametrize("temperature", [1.0, 0.25])
def test_kl_is_closed_form_and_has_zero_spread(temperature):
    pyro.set_rng_seed(0)
    model = BayesianDIP((1, 16, 16), net=TINY, prior="normal:0.1", temperature=temperature)
    guide = make_guide("meanfield", model, init_scale=0.03)
    y = torch.rand(1, 1, 16, 16)

    def prior_only(observation):  # the likelihood switched off
        with poutine.block(hide=["obs"]):
            return model(observation)

    elbo = TraceMeanField_ELBO()
    with pyro.validation_enabled(True):
        losses = torch.stack([elbo.differentiable_loss(prior_only, guide, y) for _ in range(5)])
    expected = temperature * closed_form_kl(guide, torch.tensor(0.1))
    assert torch.allclose(losses, expected.detach().expand(5), rtol=1e-5)
    assert losses.std() == 0


def test_dip_loss_is_the_likelihood_alone():
    pyro.set_rng_seed(0)
    model = BayesianDIP((1, 16, 16), net=TINY, temperature=0.0,
                        likelihood=GaussianLikelihood(0.1), jitter=0.0)
    guide = make_guide("map", model)
    y = torch.rand(1, 1, 16, 16)
    loss = TraceMeanField_ELBO().differentiable_loss(model, guide, y)
    weights = poutine.trace(guide).get_trace()
    trace = poutine.trace(poutine.replay(model, trace=weights)).get_trace(y)
    nll = -trace.nodes["obs"]["fn"].log_prob(y).sum()
    assert torch.allclose(loss, nll)


def test_importing_pyrodip_or_building_a_model_changes_no_pyro_setting():
    import subprocess
    import sys

    code = ("import pyro; before = dict(pyro.settings.get()); import pyrodip; "
            "assert pyro.settings.get() == before, 'changed on import'; "
            "model = pyrodip.BayesianDIP((1, 32, 32)); pyrodip.make_guide('meanfield', model); "
            "assert pyro.settings.get() == before, 'changed by building'")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_a_batch_of_weights_is_refused_with_the_fix():
    from pyro.infer import Predictive

    model = BayesianDIP((1, 16, 16), net=TINY).eval()
    guide = make_guide("meanfield", model)
    with pytest.raises(InvalidInputError, match="parallel=False"):
        Predictive(model, guide=guide, num_samples=2, parallel=True)(torch.rand(1, 1, 16, 16))
    samples = Predictive(model, guide=guide, num_samples=2, return_sites=["_RETURN"])()
    assert samples["_RETURN"].shape == (2, 1, 1, 16, 16)
