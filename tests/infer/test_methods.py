import math

import pyro
import pytest
import torch

from pyrodip import InvalidInputError, Observation, RunConfig, fit
from pyrodip.bayes.networks import NORMALIZATIONS, MCDropout2d, NetConfig, SkipNet
from pyrodip.infer.methods import (
    METHODS,
    SGLDNoise,
    burn_in_steps,
    temperature_from_beta,
    temperature_from_nll_criterion,
)
from pyrodip.physics.noise import PoissonNoise, SpeckleNoise
from pyrodip.physics.operators import Mask
from pyrodip.run.fit import build_model


@pytest.fixture
def tiny() -> Observation:
    truth = torch.linspace(0, 1, 32 * 32).reshape(1, 32, 32)
    return Observation.simulate(truth, noise=0.1, seed=0, name="ramp")


@pytest.mark.parametrize("normalization", NORMALIZATIONS)
@pytest.mark.parametrize("method", sorted(METHODS))
def test_every_method_runs_end_to_end_on_every_network(tiny, method, normalization):
    config = RunConfig(method=method, steps=6, samples=3, burn_in=2, sample_every=2,
                       normalization=normalization)
    result = fit(tiny, config, progress=False)
    prediction = result.prediction
    assert prediction.mean.shape == prediction.std_total.shape == (1, 32, 32)
    assert result.history.curves["psnr"].shape == (6,)
    assert torch.isfinite(prediction.mean).all() and (prediction.std_total >= 0).all()
    expected_samples = 2 if method == "sgld" else 3  # sgld: after step 2, every 2nd: 2 and 4
    assert prediction.num_samples == expected_samples


def test_dip_equals_plain_adam_on_the_unwrapped_network(tiny):
    """DIP through Pyro (MAP guide, no prior) takes exactly the steps plain PyTorch takes."""
    config = RunConfig(method="dip", steps=3, lr=0.01, jitter=0.03, ema=0.0)
    pyro.set_rng_seed(config.seed)  # as fit does, then the same model and guide
    model, guide = build_model(config, tiny)
    rng_after_build = torch.get_rng_state()

    net = SkipNet(1, NetConfig.preset("small"))
    plain = {name: guide.loc(f"net.{name}") if f"net.{name}" in guide.sites else None
             for name, _ in net.named_parameters()}
    model_params = dict(model.named_parameters())
    with torch.no_grad():
        for name, param in net.named_parameters():
            source = plain[name] if plain[name] is not None else model_params[f"net.{name}"]
            param.copy_(source)
    optimizer = torch.optim.Adam(net.parameters(), lr=config.lr)
    torch.set_rng_state(rng_after_build)
    y, sigma = tiny.observation[None], 0.1
    losses = []
    for _ in range(config.steps):
        optimizer.zero_grad()
        z = model.z + config.jitter * torch.randn_like(model.z)
        image = torch.sigmoid(net(z))
        nll = ((y - image) ** 2).sum() / (2 * sigma**2) + y.numel() * math.log(
            sigma * math.sqrt(2 * math.pi)
        )
        nll.backward()
        optimizer.step()
        losses.append(float(nll.detach()))

    result = fit(tiny, config, progress=False)
    # The first steps agree to float32 rounding; later ones drift (about 10 nats of 3500 by the
    # fourth step with torch 2.13 here): sums in another order, amplified by Adam.
    assert result.history.curves["loss"] == pytest.approx(losses, abs=0.5)
    # Weights feeding a BatchNorm (conv biases) get gradients that are zero up to rounding,
    # which Adam's normalisation turns into arbitrary steps of size lr: the images after five
    # steps differ by up to 0.03 on this machine, so only the first steps are compared.


@pytest.mark.parametrize(("variant", "lr", "std"), [("adam", 0.01, 0.02),
                                                    ("textbook", 0.01, math.sqrt(0.02))])
def test_sgld_noise_has_the_stated_variance(variant, lr, std):
    weights = [torch.zeros(200_000), torch.full((100, 1000), 3.0)]
    SGLDNoise(weights, lr=lr, variant=variant)()
    # std of a 1e5-sample std estimate is std / sqrt(2e5): 0.5 % is over three of those
    assert float(weights[0].std()) == pytest.approx(std, rel=0.005)
    assert float((weights[1] - 3).std()) == pytest.approx(std, rel=0.005)
    assert abs(float(weights[0].mean())) < 4 * std / math.sqrt(200_000)


def test_sgld_burn_in_defaults_and_refusals(tiny):
    assert burn_in_steps(None, 50_000) == 7000 and burn_in_steps(None, 100) == 50
    with pytest.raises(ValueError, match="variant"):
        SGLDNoise([], lr=0.1, variant="langevin")
    with pytest.raises(ValueError, match="burn_in"):
        RunConfig(method="sgld", steps=10, burn_in=10)


def test_mc_dropout_variance_is_positive_and_vanishes_without_dropout(tiny):
    config = RunConfig(method="mcdropout", steps=3, samples=4)
    assert float(fit(tiny, config, progress=False).prediction.std_epistemic.mean()) > 1e-4
    without = fit(tiny, config.replace(dropout=0.0), progress=False).prediction
    assert float(without.std_epistemic.max()) == 0.0


def test_mc_dropout_defaults_reach_the_network_and_optimiser(tiny):
    config = RunConfig(method="mcdropout")
    assert (config.resolved("optimizer"), config.resolved("weight_decay")) == ("adamw", 1e-4)
    model, _ = build_model(config, tiny)
    drops = [m for m in model.net.modules() if isinstance(m, MCDropout2d)]
    convs = [m for m in model.net.modules() if isinstance(m, torch.nn.Conv2d)]
    # after every conv of encoder and decoder: all but the skip convs and the output conv
    skips = [m for name, m in model.net.named_modules() if ".skip." in f".{name}."
             and isinstance(m, torch.nn.Conv2d)]
    assert len(drops) == len(convs) - len(skips) - 1 and drops[0].p == 0.3


def test_temperature_mappings_match_the_numbers_in_the_docs():
    """docs/concepts.md: MSE + beta KL is T = beta N / (2 sigma^2); the follow-up's criterion
    (twice the mean NLL) + t KL is T = t N / 2."""
    assert temperature_from_beta(1e-6, 256 * 256, 0.1) == pytest.approx(3.2768)
    assert temperature_from_beta(1e-6, 128 * 128, 0.1) == pytest.approx(0.8192)
    assert temperature_from_nll_criterion(5.7e-7, 256 * 256) == pytest.approx(0.018678, rel=1e-4)
    assert temperature_from_nll_criterion(5.7e-7, 128 * 128) == pytest.approx(0.0046694, rel=1e-4)


def test_paper_method_takes_its_temperature_from_beta_on_the_observed_values(tiny):
    model, guide = build_model(RunConfig(method="mfvi-paper"), tiny)
    assert model.temperature == pytest.approx(1e-6 * 32 * 32 / (2 * 0.1**2))
    assert float(guide.scales()[0]) == pytest.approx(math.log1p(math.exp(-3)), rel=1e-5)
    mask = Mask(torch.rand(32, 32, generator=torch.Generator().manual_seed(0)) > 0.5)
    masked = Observation.simulate(tiny.truth, noise=0.1, seed=0, operator=mask)
    observed = int(masked.operator.observed_mask.sum())
    assert build_model(RunConfig(method="mfvi-paper"), masked)[0].temperature == pytest.approx(
        1e-6 * observed / 0.02)
    assert build_model(RunConfig(method="mfvi-paper", temperature=2.0), tiny)[0].temperature == 2.0
    speckled = Observation.simulate(tiny.truth, noise=SpeckleNoise(0.2), seed=0)
    assert build_model(RunConfig(method="mfvi-paper", noise="speckle"), speckled)[0].temperature \
        == pytest.approx(1e-6 * 32 * 32 / (2 * 0.2**2))  # the log domain's std


def test_paper_method_refuses_noise_without_a_std():
    obs = Observation.simulate(torch.rand(1, 32, 32), noise=PoissonNoise(100.0), seed=0)
    with pytest.raises(InvalidInputError, match="needs Gaussian or speckle noise"):
        build_model(RunConfig(method="mfvi-paper"), obs)
