import pyro
import pytest
import torch
from pyro import poutine
from pyro.infer import Trace_ELBO
from pyro.infer.autoguide import AutoNormal

from pyrodip import BayesianDIP, InvalidInputError, NetConfig, make_guide
from pyrodip.bayes.autoguides import (
    AutoDeltaGuide,
    AutoLowRankGuide,
    AutoNormalGuide,
    Tempered,
    tempered,
)
from pyrodip.infer.elbo import FastELBO, PyroELBO, make_loss

TINY = NetConfig(scales=2, input_channels=4, channels_down=4, channels_up=4, channels_skip=2)


def tiny_model(**options):
    return BayesianDIP((1, 16, 16), net=TINY, **options)


@pytest.fixture(autouse=True)
def fresh_param_store():
    """Each test in a parameter store of its own, as a Pyro script clears it before a fit."""
    with pyro.get_param_store().scope():
        yield


@pytest.mark.parametrize("spec", ["autonormal", "autodelta", "autolowrank:2"])
def test_locations_start_from_the_pytorch_initialisation(spec):
    model = tiny_model()
    guide = make_guide(spec, model)
    medians = guide.median()
    assert list(medians) == list(model.weight_sites)
    for site, value in model.initial_weights.items():
        assert torch.equal(medians[site], value), site


def test_autonormal_scales_start_at_init_scale_and_locations_can_be_drawn():
    pyro.set_rng_seed(0)
    model = tiny_model()
    guide = make_guide("autonormal", model, init_loc="normal:0.1", init_scale=0.03)
    assert isinstance(guide, AutoNormalGuide)
    assert torch.allclose(guide.flat_scale(), torch.tensor(0.03))
    assert 0.05 < float(guide.flat_loc().detach().std()) < 0.15  # N(0, 0.1^2), not Pyro's zeros


def test_autolowrank_marginal_std_starts_near_init_scale():
    pyro.set_rng_seed(0)
    guide = make_guide("autolowrank:3", tiny_model(), init_scale=0.05)
    assert isinstance(guide, AutoLowRankGuide) and guide.rank == 3
    std = guide.get_posterior().stddev.detach()
    assert 0.03 < float(std.mean()) < 0.08


@pytest.mark.parametrize(("spec", "words"), [
    ("autolowrank:0", "integer >= 1"),
    ("autolowrank", "needs an argument"),
    ("autonormal:3", "takes no argument"),
])
def test_bad_autoguide_specs_are_refused(spec, words):
    with pytest.raises(InvalidInputError, match=words):
        make_guide(spec, tiny_model())


def test_autolowrank_over_the_memory_budget_is_refused():
    with pytest.raises(InvalidInputError, match="use rank <= 1"):
        AutoLowRankGuide(tiny_model(), 5, memory_budget=5_000)  # 1061 weights


@pytest.mark.parametrize("spec", ["autonormal", "autodelta", "autolowrank:2"])
@pytest.mark.parametrize("temperature", [0.0, 0.3])
def test_every_site_of_a_registered_autoguide_carries_the_temperature(spec, temperature):
    model = tiny_model(temperature=temperature)
    trace = poutine.trace(make_guide(spec, model)).get_trace()
    sites = [site for site in trace.nodes.values() if site["type"] == "sample"]
    assert len(sites) >= len(model.weight_sites)
    for site in sites:
        if temperature:
            assert site["scale"] == temperature, site["name"]
        else:
            assert site["mask"] is False, site["name"]


def test_tempered_wraps_a_pyro_autoguide_and_leaves_pyrodip_guides_alone():
    model = tiny_model(temperature=0.3)
    auto = AutoNormal(model)
    wrapped = tempered(auto, model)
    assert isinstance(wrapped, Tempered) and wrapped.guide is auto
    trace = poutine.trace(wrapped).get_trace(torch.rand(1, 1, 16, 16))
    scales = {site["scale"] for site in trace.nodes.values() if site["type"] == "sample"}
    assert scales == {0.3}
    for spec in ("meanfield", "autonormal"):
        guide = make_guide(spec, model)
        assert tempered(guide, model) is guide


@pytest.mark.parametrize(("spec", "same_as"), [("autonormal", "meanfield"), ("autodelta", "map")])
def test_the_fast_engine_gives_the_loss_of_the_matching_pyrodip_guide(spec, same_as):
    model = tiny_model(temperature=0.3)
    y = torch.rand(1, 1, 16, 16)
    losses = []
    for name in (spec, same_as):
        guide = make_guide(name, model)
        loss_fn = make_loss(model, guide)
        assert isinstance(loss_fn, FastELBO)
        pyro.set_rng_seed(5)
        losses.append(loss_fn(y))
    assert torch.allclose(losses[0], losses[1], rtol=1e-6)


def test_autolowrank_runs_on_pyro_engine_and_its_loss_is_trace_elbo():
    model = tiny_model(temperature=0.3)
    guide = make_guide("autolowrank:2", model)
    with pytest.warns(UserWarning, match="AutoLowRankGuide"):
        loss_fn = make_loss(model, guide)
    assert isinstance(loss_fn, PyroELBO)
    y = torch.rand(1, 1, 16, 16)
    pyro.set_rng_seed(2)
    loss = loss_fn(y)
    pyro.set_rng_seed(2)
    assert torch.allclose(loss, Trace_ELBO().differentiable_loss(model, guide, y), rtol=1e-5)
    loss.backward()
    assert guide.cov_factor.grad.abs().sum() > 0


def test_autodelta_keeps_one_value_per_weight():
    guide = make_guide("autodelta", tiny_model())
    assert isinstance(guide, AutoDeltaGuide) and guide.bayesian_sites == []
    assert guide.flat_loc().numel() == sum(p.numel() for p in guide.parameters())
    assert AutoDeltaGuide.values_per_weight("") == 1
    assert AutoLowRankGuide.values_per_weight("4") == 6


def test_local_reparameterisation_refuses_autolowrank():
    from pyrodip.infer.local_reparam import LocalReparameterization

    model = tiny_model()
    with pytest.raises(InvalidInputError, match="local_reparam"):
        LocalReparameterization(model, make_guide("autolowrank:2", model))
