import numpy as np
import pyro
import pytest
import torch
from pyro import poutine
from pyro.infer import TraceMeanField_ELBO

from pyrodip import (
    BayesianDIP,
    Downsample,
    GaussianLikelihood,
    Identity,
    InvalidInputError,
    Mask,
    NetConfig,
    Observation,
    PoissonLikelihood,
    Radon,
    RunConfig,
    SpeckleLikelihood,
    fit,
    make_guide,
    predict,
)
from pyrodip.bayes.image_priors import RegularizationByDenoising, TotalVariation
from pyrodip.bayes.sure import SureDivergence
from pyrodip.infer.elbo import FastELBO, PyroELBO, make_loss, supports, unsupported_reason
from pyrodip.physics.masks import random_mask
from pyrodip.physics.operators import Subset
from pyrodip.run.fit import build_model

TINY = NetConfig(scales=2, input_channels=4, channels_down=4, channels_up=4, channels_skip=2)
SIDE = 16


def _observed(operator, likelihood, channels=1):
    """An observation y for ``operator`` that ``likelihood`` can score (batch dim 1)."""
    x = torch.rand(1, channels, SIDE, SIDE)
    with torch.no_grad():
        clean = operator(x) if operator is not None else x
    if isinstance(likelihood, PoissonLikelihood):
        return torch.poisson(clean * likelihood.peak) / likelihood.peak
    if isinstance(likelihood, SpeckleLikelihood):
        return clean.clamp_min(0.05) * torch.exp(0.1 * torch.randn_like(clean))
    noisy = clean + 0.1 * torch.randn_like(clean)
    censored = getattr(likelihood, "censored", None)
    return noisy if censored is None else noisy.clamp(*censored)


def _grads(model, guide) -> dict[str, torch.Tensor]:
    named = [*model.named_parameters(prefix="model"), *guide.named_parameters(prefix="guide")]
    grads = {n: p.grad.clone() if p.grad is not None else torch.zeros_like(p) for n, p in named}
    for _, p in named:
        p.grad = None
    return grads


def _assert_same_elbo(model, guide, y, seed=1):
    """Pyro's TraceMeanField_ELBO and FastELBO fed the same weights (one trace of the guide):
    the same loss and the same gradient of every parameter. With an image prior, the image's
    gradient adds two terms in an order of autograd's, so a parameter whose gradient is small
    (BatchNorm's, a bias before BatchNorm) is compared to rounding of the largest gradient."""
    trace = poutine.trace(guide).get_trace()
    weights = {site: trace.nodes[site]["value"] for site in model.weight_sites}
    pyro.set_rng_seed(seed)  # the model's input jitter
    replayed = poutine.replay(guide, trace=trace)
    expected = TraceMeanField_ELBO().differentiable_loss(model, replayed, y)
    expected.backward(retain_graph=True)
    expected_grads = _grads(model, guide)
    pyro.set_rng_seed(seed)
    loss = FastELBO(model, guide).loss(y, weights)
    loss.backward()
    grads = _grads(model, guide)
    assert torch.isfinite(loss)
    assert torch.allclose(loss, expected, rtol=1e-6, atol=1e-4)
    assert grads.keys() == expected_grads.keys()
    largest = max(float(g.abs().max()) for g in expected_grads.values())
    for name, grad in grads.items():
        scale = float(expected_grads[name].abs().max()) + 1e-6
        if model.image_prior is not None:
            scale = max(scale, 0.1 * largest)
        assert torch.allclose(grad, expected_grads[name], rtol=1e-5, atol=1e-6 * scale), name
    assert any(bool(g.abs().sum() > 0) for g in grads.values())


def _site_by_site(loss_fn, generator=None):
    """FastELBO's eps drawn as Pyro's guide draws it: site by site, in the guide's order."""
    if not loss_fn._normal:
        return None
    return torch.cat([torch.randn(size, generator=generator) for size in loss_fn._sizes])


@pytest.fixture
def pyro_draws(monkeypatch):
    """FastELBO draws Pyro's numbers: the engines can be compared draw for draw."""
    monkeypatch.setattr(FastELBO, "draw_noise", _site_by_site)


def test_fast_draws_every_site_from_one_call():
    """FastELBO draws the eps of all Normal sites in one call, in the guide's order:
    loc + eps * scale at each Normal site, the location at each point-estimate site."""
    model = BayesianDIP((1, SIDE, SIDE), net=TINY)
    guide = make_guide("partial:net.head.*,net.body.up.*", model, init_scale=0.1)
    loss_fn = FastELBO(model, guide)
    torch.manual_seed(4)
    weights = loss_fn.draw()
    torch.manual_seed(4)
    eps = iter(torch.randn(sum(loss_fn._sizes)).split(loss_fn._sizes))
    for site in model.weight_sites:
        expected = guide.loc(site)
        if site in guide.bayesian_sites:
            expected = expected + next(eps).view_as(expected) * guide.scale(site)
        assert torch.equal(weights[site], expected), site
    assert next(eps, None) is None


def test_fast_draws_are_the_guides_draws_when_drawn_site_by_site(pyro_draws):
    """With eps drawn site by site, FastELBO draws, for a seed, the weights Pyro's guide
    draws for it (what the engine comparisons below rely on)."""
    model = BayesianDIP((1, SIDE, SIDE), net=TINY)
    guide = make_guide("partial:net.head.*,net.body.up.*", model, init_scale=0.1)
    pyro.set_rng_seed(4)
    trace = poutine.trace(guide).get_trace()
    pyro.set_rng_seed(4)
    weights = FastELBO(model, guide).draw()
    for site in model.weight_sites:
        assert torch.equal(weights[site], trace.nodes[site]["value"]), site


CASES = {
    "denoise": dict(),
    "inpaint": dict(operator=Mask(random_mask((1, SIDE, SIDE), 0.3, seed=0))),
    "superres": dict(operator=Downsample(2)),
    "ct": dict(operator=Radon(image_size=SIDE)),
    "learned": dict(likelihood=GaussianLikelihood(0.1, learn_std=True)),
    "heteroscedastic": dict(likelihood=GaussianLikelihood(0.1, heteroscedastic=True)),
    "heteroscedastic-inpaint": dict(
        likelihood=GaussianLikelihood(0.1, heteroscedastic=True),
        operator=Mask(random_mask((1, SIDE, SIDE), 0.3, seed=1)),
    ),
    "censored": dict(likelihood=GaussianLikelihood(0.1, censored=(0.0, 1.0))),
    "censored-heteroscedastic-inpaint": dict(
        likelihood=GaussianLikelihood(0.1, heteroscedastic=True, censored=(0.0, 1.0)),
        operator=Mask(random_mask((1, SIDE, SIDE), 0.3, seed=2)),
    ),
    "speckle": dict(likelihood=SpeckleLikelihood(0.1, learn_std=True)),
    "poisson": dict(likelihood=PoissonLikelihood(100.0)),
    "fanin-prior": dict(prior="fanin:1.0"),
    "laplace-prior": dict(prior="laplace:0.1"),
    "layer-priors": dict(layer_priors={"net.head.*": "fanin:0.5", "net.body.up.*": "normal:0.2"}),
    "bayesian-batchnorm": dict(bayesian_batchnorm=True),
    "dropout": dict(net=NetConfig(**{**vars(TINY), "dropout": 0.3})),
    "tv-image-prior": dict(image_prior=TotalVariation(5.0)),
    "tv-image-prior-superres": dict(image_prior=TotalVariation(0.5), operator=Downsample(2)),
    "red-image-prior": dict(image_prior=RegularizationByDenoising(5.0, 0.1, "tv", every=1)),
}


MATRIX = [(case, w) for case in ("denoise", "inpaint", "superres") for w in (0.0, 0.3, 1.0)]
MATRIX += [(case, 0.3) for case in CASES if case not in ("denoise", "inpaint", "superres")]


@pytest.mark.parametrize(("case", "temperature"), MATRIX)
def test_fast_elbo_equals_pyro_loss_and_gradients(case, temperature):
    pyro.set_rng_seed(0)
    options = {"net": TINY, **CASES[case]}
    model = BayesianDIP((1, SIDE, SIDE), temperature=temperature, **options)
    guide = make_guide("meanfield", model, init_scale=0.05)
    y = _observed(options.get("operator"), model.likelihood)
    assert supports(model, guide)
    _assert_same_elbo(model, guide, y)


@pytest.mark.parametrize("spec", ["map", "partial:net.head.*", "autodelta"])
@pytest.mark.parametrize("temperature", [0.0, 0.3])
@pytest.mark.parametrize("prior", ["normal:0.1", "laplace:0.1"])
def test_fast_elbo_equals_pyro_for_point_estimates(spec, temperature, prior):
    pyro.clear_param_store()  # the trace of an autoguide registers its parameters there
    pyro.set_rng_seed(0)
    model = BayesianDIP((1, SIDE, SIDE), net=TINY, temperature=temperature, prior=prior,
                        layer_priors={"net.head.*": "normal:0.3"})
    guide = make_guide(spec, model)
    assert supports(model, guide)
    _assert_same_elbo(model, guide, _observed(None, model.likelihood))


@pytest.mark.parametrize("held_out", [False, True])
@pytest.mark.parametrize("channels", [1, 2])
def test_fast_elbo_equals_pyro_with_sures_data_term(held_out, channels):
    """Fed y, with the divergence from a second pass (same weights, same jitter, the probe
    drawn after the jitter in both engines): the same loss and gradients, in training (input
    jitter) and without; the divergence is part of the loss."""
    pyro.set_rng_seed(0)
    y = _observed(None, GaussianLikelihood(0.1), channels=channels)
    operator = Subset(Identity(), torch.rand(SIDE, SIDE) > 0.2) if held_out else None
    sure = SureDivergence(y, getattr(operator, "observed_mask", None))
    model = BayesianDIP((channels, SIDE, SIDE), net=TINY, temperature=0.3, operator=operator,
                        sure=sure)
    guide = make_guide("meanfield", model, init_scale=0.05)
    _assert_same_elbo(model, guide, y)
    model.eval()
    _assert_same_elbo(model, guide, y)
    loss_fn, weights = FastELBO(model, guide), {s: guide.loc(s) for s in model.weight_sites}
    with torch.no_grad():
        pyro.set_rng_seed(2)
        with_term = loss_fn.loss_and_image(y, weights, None, 0.0)[0]
        pyro.set_rng_seed(2)
        divergence = model.render_fit(weights)[2]
        model.sure = None
        without = loss_fn.loss_and_image(y, weights, None, 0.0)[0]
    assert abs(float(divergence)) > 1.0
    assert float(with_term - without) == pytest.approx(float(divergence), rel=1e-3)


def test_two_channel_inpainting_and_training_without_jitter():
    pyro.set_rng_seed(0)
    operator = Mask(random_mask((1, SIDE, SIDE), 0.5, seed=2))
    model = BayesianDIP((2, SIDE, SIDE), net=TINY, operator=operator, temperature=0.5)
    guide = make_guide("meanfield", model)
    y = _observed(operator, model.likelihood, channels=2)
    y[~operator.observed_mask.expand_as(y)] = float("nan")  # unobserved: anything, even NaN
    _assert_same_elbo(model, guide, y)
    model.eval()  # no input jitter
    _assert_same_elbo(model, guide, y)


def test_prior_scale_changed_in_place_is_followed():
    model = BayesianDIP((1, SIDE, SIDE), net=TINY, prior="normal:0.05")
    guide = make_guide("meanfield", model)
    fast = FastELBO(model, guide)
    y = _observed(None, model.likelihood)
    model.prior.scale = 0.2
    _assert_same_elbo(model, guide, y)
    # The KL against N(0, 0.2^2) by hand: 0.5 * (r + m^2/s_p^2 - 1 - log r), r = s^2 / s_p^2.
    loc, scale = fast.variational()
    ratio = (scale / 0.2) ** 2
    by_hand = 0.5 * (ratio + (loc / 0.2) ** 2 - 1 - ratio.log()).sum()
    assert torch.allclose(fast.kl((loc, scale)), by_hand)


def test_forward_keeps_the_rendered_image():
    model = BayesianDIP((1, SIDE, SIDE), net=TINY)
    FastELBO(model, make_guide("meanfield", model))(torch.rand(1, 1, SIDE, SIDE))
    assert model.last_image.shape == (1, 1, SIDE, SIDE) and not model.last_image.requires_grad
    assert bool(((model.last_image > 0) & (model.last_image < 1)).all())


@pytest.mark.parametrize(("prior", "guide_spec", "reason"), [
    ("studentt:0.1", "meanfield", "no closed-form KL"),
    ("mixture:0.1", "partial:net.head.*", "no closed-form KL"),
    ("normal:0.1", "lowrank:2", "LowRankGuide"),
])
def test_unsupported_combinations_are_reported(prior, guide_spec, reason):
    model = BayesianDIP((1, SIDE, SIDE), net=TINY, prior=prior)
    guide = make_guide(guide_spec, model)
    assert not supports(model, guide)
    assert reason in unsupported_reason(model, guide)
    with pytest.raises(InvalidInputError, match=f"engine 'fast' cannot.*{reason}"):
        make_loss(model, guide, "fast")
    assert isinstance(make_loss(model, guide, "auto"), PyroELBO)


def test_engines():
    model = BayesianDIP((1, SIDE, SIDE), net=TINY)
    guide = make_guide("meanfield", model)
    assert isinstance(make_loss(model, guide, "auto"), FastELBO)
    assert isinstance(make_loss(model, guide, "fast"), FastELBO)
    assert isinstance(make_loss(model, guide, "pyro"), PyroELBO)
    with pytest.raises(InvalidInputError, match="unknown engine"):
        make_loss(model, guide, "jax")
    assert not supports(torch.nn.Linear(1, 1), guide)


@pytest.mark.parametrize("method", ["mfvi", "dip", "sgld", "mcdropout"])
def test_every_method_gets_the_fast_path_by_default(noisy64, method):
    model, guide = build_model(RunConfig(method=method), noisy64)
    assert isinstance(make_loss(model, guide, RunConfig().engine), FastELBO)


@pytest.mark.slow  # the Pyro engine's 20 steps: 5 to 50 s on the shared 2-core machine
def test_fit_gives_the_same_curves_with_either_engine(phantom64, pyro_draws):
    observation = Observation.simulate(phantom64[:, 16:48, 16:48], noise=0.1, seed=0)
    results = {
        engine: fit(observation, RunConfig(steps=20, samples=2, engine=engine), progress=False,
                    validate=False)
        for engine in ("pyro", "fast")
    }
    pyro_curves, fast_curves = (results[e].history.curves for e in ("pyro", "fast"))
    # Not bitwise: softplus over all sites at once rounds a few scales 1 ulp apart from
    # softplus site by site, and Adam turns such differences in gradients that are pure
    # rounding noise (e.g. of a BatchNorm shift that the next BatchNorm cancels) into steps
    # of size lr. The trajectories drift apart slowly.
    np.testing.assert_allclose(fast_curves["loss"], pyro_curves["loss"], rtol=1e-4)
    np.testing.assert_allclose(fast_curves["psnr"], pyro_curves["psnr"], atol=0.01)
    np.testing.assert_allclose(fast_curves["ssim"], pyro_curves["ssim"], atol=1e-3)
    assert torch.allclose(results["fast"].prediction.mean, results["pyro"].prediction.mean,
                          atol=0.01)


@pytest.mark.parametrize("spec", ["meanfield", "map", "partial:net.head.*"])
def test_fast_predictive_draws_the_images_pyro_draws(spec, pyro_draws):
    likelihood = GaussianLikelihood(0.1, heteroscedastic=True)
    net = NetConfig(**{**vars(TINY), "dropout": 0.2})
    model = BayesianDIP((1, SIDE, SIDE), net=net, likelihood=likelihood)
    guide = make_guide(spec, model, init_scale=0.1)
    pyro.set_rng_seed(5)
    prediction = predict(model, guide, num_samples=4, keep_samples=True)
    pyro.set_rng_seed(5)
    model.eval()
    images = []
    with torch.no_grad():
        for _ in range(4):
            with poutine.replay(trace=poutine.trace(guide).get_trace()):
                images.append(model.render(jitter=False)[0][0])
    assert torch.allclose(prediction.samples, torch.stack(images), atol=1e-6)


@pytest.mark.parametrize("likelihood", [None, GaussianLikelihood(0.1, heteroscedastic=True)])
def test_batched_predictive_renders_the_same_images(likelihood):
    model = BayesianDIP((1, SIDE, SIDE), net=TINY, likelihood=likelihood)
    guide = make_guide("meanfield", model, init_scale=0.1)
    pyro.set_rng_seed(3)
    one_by_one = predict(model, guide, num_samples=5, keep_samples=True, batch=1)
    pyro.set_rng_seed(3)
    batched = predict(model, guide, num_samples=5, keep_samples=True, batch=3)
    assert torch.allclose(batched.samples, one_by_one.samples, atol=1e-5)
    assert torch.allclose(batched.std_total, one_by_one.std_total, atol=1e-5)
    assert (batched.std_epistemic > 0).all()


@pytest.mark.parametrize("factor", [0.1, 3.0])
def test_kl_is_unchanged_when_guide_and_prior_scale_together(factor):
    """KL(N(a mu, a^2 s^2) || N(0, a^2 sigma_p^2)) = KL(N(mu, s^2) || N(0, sigma_p^2)): with
    BatchNorm, rescaling is free for the likelihood, so the ELBO's optimum ignores sigma_p."""
    model = BayesianDIP((1, SIDE, SIDE), net=TINY, prior="normal:0.1")
    guide = make_guide("meanfield", model, init_scale=0.02)
    loss_fn = make_loss(model, guide, "fast")
    before = loss_fn.kl(loss_fn.variational())
    with torch.no_grad():
        guide.locs *= factor
        scales = guide.scales() * factor
        guide.rhos.copy_(scales + torch.log(-torch.expm1(-scales)))  # softplus^-1
    model.prior.scale = 0.1 * factor
    after = loss_fn.kl(loss_fn.variational())
    assert float(after) == pytest.approx(float(before), rel=1e-4)
    # and against the closed form, site by site
    loc, scale = loss_fn.variational()
    closed = (torch.log(0.1 * factor / scale) + (scale**2 + loc**2) / (2 * (0.1 * factor) ** 2)
              - 0.5).sum()
    assert float(after) == pytest.approx(float(closed), rel=1e-4)


def test_autonormal_engines_agree_in_expectation():
    """Pyro's engine estimates AutoNormal's KL by Monte Carlo, the fast one takes it in closed
    form: with the same draws, the losses differ by T (log q(w) - log p(w) - KL), which has
    mean zero."""
    model = BayesianDIP((1, SIDE, SIDE), net=TINY, temperature=0.3, jitter=0.0)
    guide = make_guide("autonormal", model, init_scale=0.05)
    y = _observed(None, model.likelihood)
    pyro_engine, fast = make_loss(model, guide, "pyro"), make_loss(model, guide, "fast")
    differences = []
    with torch.no_grad():
        for seed in range(200):
            losses = []
            for loss_fn in (pyro_engine, fast):
                pyro.set_rng_seed(seed)
                losses.append(float(loss_fn(y)))
            differences.append(losses[0] - losses[1])
    differences = np.array(differences)
    assert differences.std() > 0.1  # a Monte Carlo KL, not the closed form
    assert abs(differences.mean()) < 4 * differences.std() / np.sqrt(len(differences))


def test_pyro_engine_keeps_no_parameter_in_the_global_store_and_tempers_any_guide():
    from pyro.infer.autoguide import AutoNormal

    from pyrodip.bayes.autoguides import Tempered

    pyro.clear_param_store()
    model = BayesianDIP((1, SIDE, SIDE), net=TINY, temperature=0.3,
                        likelihood=GaussianLikelihood(0.1, learn_std=True))
    for guide in (make_guide("meanfield", model), AutoNormal(model)):
        loss_fn = make_loss(model, guide, "pyro")
        assert isinstance(loss_fn.elbo.guide, Tempered) == isinstance(guide, AutoNormal)
        loss_fn(_observed(None, model.likelihood)).backward()
        assert model.likelihood.noise_std_unconstrained.grad is not None
        assert list(pyro.get_param_store().keys()) == []
