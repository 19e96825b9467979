import dataclasses
import math

import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro import poutine
from pyro.infer import TraceMeanField_ELBO
from scipy import stats

from pyrodip import (
    BayesianDIP,
    InvalidInputError,
    NetConfig,
    NormalPrior,
    Observation,
    RunConfig,
    fit,
    make_guide,
    make_prior,
)
from pyrodip.bayes.priors import (
    PRIORS,
    FanInPrior,
    LaplacePrior,
    MixturePrior,
    Prior,
    StudentTPrior,
    register_prior,
)
from pyrodip.run.fit import build_model

TINY = NetConfig(scales=2, input_channels=4, channels_down=4, channels_up=4, channels_skip=2)
X = np.linspace(-0.3, 0.3, 13)


def mixture_logpdf(x, scale, pi, ratio):
    wide, narrow = stats.norm.pdf(x, scale=scale), stats.norm.pdf(x, scale=scale / ratio)
    density = pi * wide + (1 - pi) * narrow
    return np.log(density)


@pytest.mark.parametrize("spec, shape, expected", [
    ("normal:0.05", (3,), stats.norm(scale=0.05).logpdf(X)),
    ("fanin:0.6", (2, 4, 3, 3), stats.norm(scale=0.6 / 6).logpdf(X)),  # fan_in 4 * 3 * 3
    ("fanin:0.6", (5,), stats.norm(scale=0.6).logpdf(X)),  # a bias: fan_in 1
    ("laplace:0.05", (3,), stats.laplace(scale=0.05).logpdf(X)),
    ("studentt:0.05", (3,), stats.t(df=3, scale=0.05).logpdf(X)),
    ("studentt:0.05:7.5", (3,), stats.t(df=7.5, scale=0.05).logpdf(X)),
    ("mixture:0.1", (3,), mixture_logpdf(X, 0.1, 0.5, 10)),
    ("mixture:0.1:0.2:4", (3,), mixture_logpdf(X, 0.1, 0.2, 4)),
])
def test_log_prob_matches_scipy(spec, shape, expected):
    d = make_prior(spec).distribution(shape)
    assert d.batch_shape == shape
    x = torch.tensor(X, dtype=torch.float32).reshape(-1, *[1] * len(shape)).expand(-1, *shape)
    log_prob = d.log_prob(x).reshape(len(X), -1)
    assert torch.allclose(log_prob, torch.tensor(expected, dtype=torch.float32)[:, None],
                          rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("spec, cls, canonical", [
    ("normal:0.05", NormalPrior, "normal:0.05"),
    ("fanin:1", FanInPrior, "fanin:1"),
    ("laplace:0.02", LaplacePrior, "laplace:0.02"),
    ("studentt:0.05", StudentTPrior, "studentt:0.05:3"),
    ("studentt:0.05:5", StudentTPrior, "studentt:0.05:5"),
    ("mixture:0.1", MixturePrior, "mixture:0.1:0.5:10"),
    ("mixture:0.1:0.25", MixturePrior, "mixture:0.1:0.25:10"),
    ("mixture:0.1:0.25:20", MixturePrior, "mixture:0.1:0.25:20"),
])
def test_specs_parse_and_round_trip(spec, cls, canonical):
    prior = make_prior(spec)
    assert type(prior) is cls
    assert prior.spec() == canonical
    assert make_prior(canonical).spec() == canonical


@pytest.mark.parametrize("spec, words", [
    ("cauchy:1", "choose one of normal:SCALE, fanin:SCALE, laplace:SCALE, "
                 r"studentt:SCALE\[:DF\], mixture:SCALE\[:PI\[:RATIO\]\]"),
    ("normal", r"does not read normal:SCALE, as in 'normal:0.05'"),
    ("normal:0.1:3", "does not read normal:SCALE"),
    ("mixture:0.1:0.5:10:2", r"does not read mixture:SCALE\[:PI\[:RATIO\]\]"),
    ("normal:abc", "needs numeric values"),
    ("studentt:0.1:x", r"needs numeric values: studentt:SCALE\[:DF\]"),
    ("normal:-1", "prior scale must be a positive number"),
    ("laplace:nan", "prior scale must be a positive number"),
    ("studentt:0.1:0", "studentt DF must be a positive number"),
    ("mixture:0.1:1", r"mixture PI must be in \(0, 1\)"),
    ("mixture:0.1:0.5:-2", "mixture RATIO must be a positive number"),
])
def test_bad_specs_are_refused(spec, words):
    with pytest.raises(InvalidInputError, match=words):
        make_prior(spec)


@pytest.mark.parametrize("spec", ["normal:0.05", "fanin:0.5", "laplace:0.05", "studentt:0.05",
                                  "mixture:0.1:0.3:5"])
def test_scale_changes_in_place(spec):
    prior = make_prior(spec)
    buffer = prior._scale
    x = torch.tensor([0.01, -0.2])
    before = prior.distribution((2,)).log_prob(x)
    prior.scale = prior.scale * 2
    assert prior._scale is buffer
    rescaled = make_prior(prior.spec()).distribution((2,)).log_prob(x)
    assert torch.equal(prior.distribution((2,)).log_prob(x), rescaled)
    assert not torch.allclose(before, rescaled)
    with pytest.raises(InvalidInputError, match="positive"):
        prior.scale = 0.0


def test_mixture_samples_have_the_mixture_variance():
    torch.manual_seed(0)
    draws = make_prior("mixture:0.1:0.2:4").distribution((200_000,)).sample()
    expected = math.sqrt(0.2 * 0.1**2 + 0.8 * 0.025**2)
    assert draws.shape == (200_000,)
    assert float(draws.std()) == pytest.approx(expected, rel=0.01)


def test_user_prior_can_be_registered():
    @register_prior("test_logistic")
    class LogisticPrior(Prior):
        arguments = ("SHIFT",)

        def __init__(self, scale, shift=0.0):
            super().__init__(scale)
            self.shift = shift

        def distribution(self, shape):
            return dist.Normal(self.shift, self._scale).expand(torch.Size(shape))

    try:
        prior = make_prior("test_logistic:0.3:2")
        assert prior.spec() == "test_logistic:0.3:2"
        assert prior.distribution((2, 2)).batch_shape == (2, 2)
        assert make_prior("test_logistic:0.3").shift == 0.0
    finally:
        del PRIORS["test_logistic"]


def weight_fns(model):
    trace = poutine.trace(model).get_trace(torch.rand(1, 1, 16, 16))
    return {name: site["fn"].base_dist for name, site in trace.nodes.items()
            if site["type"] == "sample" and not site["is_observed"]}


def test_layer_priors_first_matching_pattern_wins():
    net = dataclasses.replace(TINY, normalization="none")  # a bias in every conv
    model = BayesianDIP((1, 16, 16), net=net, prior="normal:0.05", layer_priors={
        "net.head.*": "laplace:0.01",
        "net.body.up.*": "studentt:0.02",
        "net.*.bias": "fanin:1",
    })
    fns = weight_fns(model)
    assert isinstance(fns["net.head.bias"], dist.Laplace)  # "net.*.bias" comes later
    assert isinstance(fns["net.head.weight"], dist.Laplace)
    assert isinstance(fns["net.body.up.0.weight"], dist.StudentT)
    assert isinstance(fns["net.body.up.0.bias"], dist.StudentT)
    assert isinstance(fns["net.body.inner.up.0.bias"], dist.Normal)  # fanin: a Normal
    assert float(fns["net.body.inner.up.0.bias"].scale[0]) == 1.0
    assert float(fns["net.body.inner.up.0.weight"].scale[0, 0, 0, 0]) == pytest.approx(0.05)
    assert model.site_priors["net.body.down.0.bias"].prior is model.layer_priors["net.*.bias"]
    assert model.site_priors["net.body.down.0.weight"].prior is model.prior

    model.layer_priors["net.head.*"].scale = 0.5  # in place
    assert torch.allclose(weight_fns(model)["net.head.weight"].scale, torch.tensor(0.5))
    assert torch.allclose(model.prior_distribution("net.head.bias").base_dist.scale,
                          torch.tensor(0.5))


def test_layer_priors_move_with_the_model():
    model = BayesianDIP((1, 16, 16), net=TINY, layer_priors={"net.head.*": "laplace:0.01"})
    model.double()
    assert model.layer_priors["net.head.*"]._scale.dtype == torch.float64
    assert "layer_prior_modules.0._scale" in model.state_dict()


def test_layer_prior_pattern_must_match_a_site():
    message = (r"layer prior pattern 'head\.\*' matches no weight site: the sites are named "
               r"like net\.body\.skip\.0\.weight, .*net\.head\.weight, net\.head\.bias")
    with pytest.raises(InvalidInputError, match=message):
        BayesianDIP((1, 16, 16), net=TINY, layer_priors={"head.*": "laplace:0.01"})
    with pytest.raises(InvalidInputError, match="unknown prior 'cauchy'"):
        BayesianDIP((1, 16, 16), net=TINY, layer_priors={"net.head.*": "cauchy:1"})


def prior_only_losses(prior, count):
    """``count`` evaluations of the mean-field ELBO's KL term (the likelihood hidden)."""
    pyro.set_rng_seed(0)
    model = BayesianDIP((1, 16, 16), net=TINY, prior=prior, temperature=1.0)  # the whole KL
    guide = make_guide("meanfield", model, init_scale=S)

    def prior_only(observation):
        with poutine.block(hide=["obs"]):
            return model(observation)

    elbo, y = TraceMeanField_ELBO(), torch.rand(1, 1, 16, 16)
    with torch.no_grad(), pyro.validation_enabled(False):
        losses = torch.stack([elbo.differentiable_loss(prior_only, guide, y)
                              for _ in range(count)])
    locs = torch.cat([guide.loc(name).detach().flatten() for name in guide.sites]).double()
    return losses, locs.numpy()


S = 0.03  # the guide's std
NORMAL_ENTROPY = math.log(S * math.sqrt(2 * math.pi * math.e))


def test_laplace_prior_kl_is_closed_form():
    losses, mu = prior_only_losses("laplace:0.1", 3)
    # KL(N(mu, s^2) || Laplace(0, b)) = log(2b) + E|w| / b - H(q), with the folded normal's
    # E|w| = s sqrt(2/pi) exp(-mu^2 / 2s^2) + mu (1 - 2 Phi(-mu/s)).
    mean_abs = (S * math.sqrt(2 / math.pi) * np.exp(-mu**2 / (2 * S**2))
                + mu * (1 - 2 * stats.norm.cdf(-mu / S)))
    kl = np.sum(math.log(2 * 0.1) + mean_abs / 0.1 - NORMAL_ENTROPY)
    assert float(losses.std()) == 0
    assert float(losses[0]) == pytest.approx(kl, rel=1e-5)


@pytest.mark.parametrize("prior, logpdf", [
    ("studentt:0.1", stats.t(df=3, scale=0.1).logpdf),
    ("mixture:0.1:0.3:5", lambda x: mixture_logpdf(x, 0.1, 0.3, 5)),
])
def test_kl_without_closed_form_is_an_unbiased_monte_carlo_estimate(prior, logpdf):
    count = 40
    losses, mu = prior_only_losses(prior, count)
    # E_q[-log p(w)] by Gauss-Hermite quadrature (probabilists' weight exp(-x^2 / 2)).
    nodes, weights = np.polynomial.hermite_e.hermegauss(60)
    cross_entropy = -(logpdf(mu[:, None] + S * nodes) @ weights) / math.sqrt(2 * math.pi)
    kl = np.sum(cross_entropy - NORMAL_ENTROPY)
    standard_error = float(losses.std()) / math.sqrt(count)
    assert standard_error > 0.1  # a Monte Carlo estimate, not a closed form
    assert float(losses.mean()) == pytest.approx(kl, abs=4 * standard_error)


def test_run_config_keeps_prior_arguments_apart_from_the_scale():
    config = RunConfig(prior="studentt:0.05:4")
    assert (config.prior, config.prior_scale) == ("studentt::4", 0.05)
    config = config.replace(prior_scale=0.2)  # __post_init__ runs again: nothing moves
    assert (config.prior, config.prior_scale) == ("studentt::4", 0.2)
    assert RunConfig(prior="mixture::0.3").prior == "mixture::0.3"
    assert (RunConfig(prior="laplace").prior, RunConfig(prior="laplace").prior_scale) == (
        "laplace", 0.1)
    with pytest.raises(InvalidInputError, match="unknown prior 'cauchy'"):
        RunConfig(prior="cauchy:0.1")


@pytest.fixture(scope="module")
def obs32():
    return Observation.simulate(torch.rand(1, 32, 32, generator=torch.Generator().manual_seed(0)),
                                noise=0.1, seed=0)


def test_temperature_weights_the_kl_and_leaves_every_prior_as_given(obs32):
    config = RunConfig(prior="studentt:0.1:4", temperature=4.0,
                       layer_priors={"net.head.*": "laplace:0.01"})
    model, _ = build_model(config, obs32)
    assert model.prior.spec() == "studentt:0.1:4"
    assert model.layer_priors["net.head.*"].spec() == "laplace:0.01"
    assert model.temperature == 4.0


@pytest.mark.parametrize("prior", ["normal:0.05", "fanin:1", "laplace:0.05", "studentt:0.05:3",
                                   "mixture:0.1:0.5:10"])
def test_two_step_fit_with_each_prior(obs32, prior):
    result = fit(obs32, RunConfig(steps=2, samples=2, prior=prior), progress=False)
    assert result.model.prior.spec() == prior
    assert np.isfinite(result.history.curves["loss"]).all()
    assert float(result.prediction.std_epistemic.mean()) > 0
