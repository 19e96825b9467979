import math

import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro import poutine
from pyro.infer import Trace_ELBO, TraceMeanField_ELBO

from pyrodip import (
    BayesianDIP,
    InvalidInputError,
    NetConfig,
    Observation,
    RunConfig,
    fit,
    make_guide,
)
from pyrodip.bayes.guides import GUIDES, LowRankGuide, MeanFieldGuide, PartialGuide, register_guide

TINY = NetConfig(scales=2, input_channels=4, channels_down=4, channels_up=4, channels_skip=2)
TINY_WEIGHTS = 1061  # weights of a BayesianDIP with TINY


def tiny_model(**options):
    return BayesianDIP((1, 16, 16), net=TINY, **options)


def test_locations_start_from_the_pytorch_initialisation():
    model = tiny_model()
    guide = make_guide("meanfield", model, init_scale=0.02)
    for name, initial in model.initial_weights.items():
        assert torch.equal(guide.loc(name), initial)
        assert torch.allclose(guide.scale(name), torch.tensor(0.02))


def test_paper_initialisation_draws_locations_from_a_normal():
    torch.manual_seed(0)
    model = BayesianDIP((1, 16, 16), net=NetConfig.preset("small"))
    guide = make_guide("meanfield", model, init_loc="normal:0.1")
    locs = torch.cat([guide.loc(n).detach().flatten() for n in guide.sites])
    assert abs(float(locs.std()) - 0.1) < 0.005
    assert abs(float(locs.mean())) < 0.005


def test_map_guide_samples_its_locations():
    model = tiny_model()
    guide = make_guide("map", model)
    draws = guide()
    assert all(torch.equal(draws[n], guide.loc(n)) for n in guide.sites)


def test_meanfield_draws_vary_around_the_location():
    model = tiny_model()
    guide = make_guide("meanfield", model, init_scale=0.05)
    name = "net.body.down.0.weight"
    with torch.no_grad():
        draws = torch.stack([guide()[name] for _ in range(200)])
        spread = float((draws - guide.loc(name)).std())
    assert abs(spread - 0.05) < 0.005


@pytest.mark.parametrize("spec, options, words", [
    ("nosuch", {}, "unknown guide 'nosuch': choose one of meanfield, map, partial:PATTERNS, "
                   "lowrank:RANK"),
    ("meanfield:3", {}, "guide 'meanfield' takes no argument, got 'meanfield:3'"),
    ("lowrank", {}, "guide 'lowrank' needs an argument: lowrank:RANK"),
    ("lowrank:", {}, "needs an argument: lowrank:RANK"),
    ("lowrank:0", {}, r"lowrank rank must be an integer >= 1, got '0' \(e.g. lowrank:10\)"),
    ("lowrank:2.5", {}, "lowrank rank must be an integer >= 1, got '2.5'"),
    ("lowrank:two", {}, "lowrank rank must be an integer >= 1, got 'two'"),
    ("partial", {}, "guide 'partial' needs an argument: partial:PATTERNS"),
    ("partial:,", {}, "partial guide needs layer patterns, e.g. 'partial:net.head.*'"),
    ("partial:net.head.*,head.*", {}, r"partial guide pattern 'head\.\*' matches no weight "
                                      r"site: the sites are named like net\.body\.skip\.0\."),
    ("meanfield", {"init_scale": 0.0}, "init_scale"),
    ("lowrank:2", {"init_scale": -1.0}, "init_scale"),
    ("meanfield", {"init_loc": "uniform"}, "normal:STD"),
])
def test_bad_guides_are_refused(spec, options, words):
    with pytest.raises(InvalidInputError, match=words):
        make_guide(spec, tiny_model(), **options)


def test_lowrank_memory_is_refused_with_a_rank_that_fits():
    model = tiny_model()
    # 1061 weights x rank 100 x 4 bytes = 424 400 bytes; 200 000 bytes fit rank 47.
    message = (r"lowrank:100 needs 0\.4 MiB for its covariance factor \(1061 weights x rank 100 "
               r"x 4 bytes\), over the budget of 0\.2 MiB: use rank <= 47, or raise memory_budget")
    with pytest.raises(InvalidInputError, match=message):
        make_guide("lowrank:100", model, memory_budget=200_000)
    with pytest.raises(InvalidInputError, match="not even rank 1 fits"):
        make_guide("lowrank:1", model, memory_budget=1000)
    assert make_guide("lowrank:47", model, memory_budget=200_000).cov_factor.shape == (1061, 47)


def test_lowrank_default_budget_on_the_paper_network():
    model = BayesianDIP((1, 32, 32), net="paper")  # 2 211 093 weights
    with pytest.raises(InvalidInputError, match=r"needs 1\.65 GiB .* over the budget of "
                                                r"1\.00 GiB: use rank <= 121"):
        make_guide("lowrank:200", model)


def test_lowrank_puts_its_joint_draw_at_every_model_site():
    pyro.set_rng_seed(0)
    model = tiny_model()
    guide = make_guide("lowrank:3", model, init_scale=0.05)
    assert isinstance(guide, LowRankGuide)
    trace = poutine.trace(guide).get_trace()
    joint = trace.nodes["_lowrank"]
    assert joint["infer"]["is_auxiliary"] and joint["value"].shape == (TINY_WEIGHTS,)
    values = [trace.nodes[site]["value"].flatten() for site in model.weight_sites]
    assert torch.equal(torch.cat(values), joint["value"])
    for site, shape in model.weight_sites.items():
        fn = trace.nodes[site]["fn"]
        assert isinstance(fn, dist.Delta) and fn.event_shape == shape
    # half the initial variance from the factor, half from the diagonal: std near init_scale
    with torch.no_grad():
        q = guide.joint()
        assert float(q.variance.mean().sqrt()) == pytest.approx(0.05, rel=0.1)
        assert float(q.cov_diag.sqrt()[0]) == pytest.approx(0.05 / math.sqrt(2), rel=1e-5)


def prior_only(model):
    def run(observation):
        with poutine.block(hide=["obs"]):
            return model(observation)
    return run


def test_lowrank_kl_is_an_unbiased_monte_carlo_estimate():
    pyro.set_rng_seed(0)
    model = tiny_model(prior="normal:0.1", temperature=0.5)
    guide = make_guide("lowrank:3", model, init_scale=0.03)
    y = torch.rand(1, 1, 16, 16)
    count = 40
    with torch.no_grad():
        losses = torch.stack([TraceMeanField_ELBO().differentiable_loss(prior_only(model), guide, y)
                              for _ in range(count)])
        zeros = torch.zeros(TINY_WEIGHTS)
        prior = dist.LowRankMultivariateNormal(zeros, zeros[:, None], torch.full_like(zeros, 0.01))
        kl = 0.5 * float(torch.distributions.kl_divergence(guide.joint(), prior))
    standard_error = float(losses.std()) / math.sqrt(count)
    assert standard_error > 0.1
    assert float(losses.mean()) == pytest.approx(kl, abs=4 * standard_error)


def test_lowrank_loss_is_the_same_under_trace_elbo():
    model = tiny_model(prior="laplace:0.1")
    guide = make_guide("lowrank:2", model)
    y = torch.rand(1, 1, 16, 16)
    losses = []
    for elbo in (TraceMeanField_ELBO(), Trace_ELBO()):
        pyro.set_rng_seed(1)
        with pyro.validation_enabled(True):
            losses.append(elbo.differentiable_loss(model, guide, y))
    assert torch.allclose(losses[0], losses[1], rtol=1e-6)


def test_partial_guide_is_normal_on_matching_sites_and_a_point_elsewhere():
    pyro.set_rng_seed(0)
    model = tiny_model(prior="normal:0.1")
    guide = make_guide("partial:net.head.*, net.body.up.*", model, init_scale=0.03)
    assert isinstance(guide, PartialGuide)
    bayesian = ["net.body.up.1.weight", "net.body.up.4.weight", "net.head.weight",
                "net.head.bias"]
    assert guide.bayesian_sites == bayesian
    trace = poutine.trace(guide).get_trace()
    for site in model.weight_sites:
        fn = trace.nodes[site]["fn"]
        assert isinstance(fn.base_dist if site in bayesian else fn,
                          dist.Normal if site in bayesian else dist.Delta)
    assert not guide.scale("net.body.down.0.weight").any()
    assert torch.allclose(guide.scale("net.head.weight"), torch.tensor(0.03))
    # The loss: closed-form KL at the Normal sites, -log prior(loc) at the point estimates.
    y = torch.rand(1, 1, 16, 16)
    loss = TraceMeanField_ELBO().differentiable_loss(prior_only(model), guide, y)
    expected = 0.0
    for site in model.weight_sites:
        mu = guide.loc(site)
        if site in bayesian:
            s = guide.scale(site)
            expected += (math.log(0.1) - s.log() + (s**2 + mu**2) / (2 * 0.01) - 0.5).sum()
        else:
            expected -= model.prior_distribution(site).log_prob(mu)
    assert torch.allclose(loss, model.temperature * expected, rtol=1e-5)


def test_user_guide_can_be_registered():
    @register_guide("test_wide")
    class WideGuide(MeanFieldGuide):
        def __init__(self, model, **options):
            super().__init__(model, init_scale=0.5)

    @register_guide("test_width")
    class WidthGuide(MeanFieldGuide):
        argument = "WIDTH"

        def __init__(self, model, width, **options):
            super().__init__(model, init_scale=float(width))

    try:
        guide = make_guide("test_wide", tiny_model())
        assert math.isclose(float(guide.scale("net.head.bias").detach()[0]), 0.5, rel_tol=1e-5)
        guide = make_guide("test_width:0.2", tiny_model(), init_loc="pytorch")
        assert math.isclose(float(guide.scale("net.head.bias").detach()[0]), 0.2, rel_tol=1e-5)
    finally:
        del GUIDES["test_wide"], GUIDES["test_width"]


def test_run_config_validates_the_guide_name():
    assert RunConfig(guide="lowrank:4").guide == "lowrank:4"
    with pytest.raises(InvalidInputError, match="unknown guide 'lowrenk'"):
        RunConfig(guide="lowrenk:4")


@pytest.fixture(scope="module")
def obs32():
    return Observation.simulate(torch.rand(1, 32, 32, generator=torch.Generator().manual_seed(0)),
                                noise=0.1, seed=0)


@pytest.mark.parametrize("guide", ["meanfield", "map", "lowrank:2", "partial:net.head.*",
                                   "autonormal", "autodelta", "autolowrank:2"])
def test_two_step_fit_and_prediction_with_each_guide(obs32, guide):
    result = fit(obs32, RunConfig(steps=2, samples=2, guide=guide), progress=False)
    assert np.isfinite(result.history.curves["loss"]).all()
    spread = float(result.prediction.std_epistemic.mean())
    assert spread == 0 if guide in ("map", "autodelta") else spread > 0
