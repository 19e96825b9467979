import dataclasses
import json
import math

import numpy as np
import pyro
import pytest
import torch
import xarray as xr
from pyro import poutine

from pyrodip.bayes.guides import make_guide
from pyrodip.bayes.likelihoods import GaussianLikelihood, PoissonLikelihood
from pyrodip.bayes.model import BayesianDIP
from pyrodip.bayes.networks import NetConfig
from pyrodip.bayes.sure import (
    SureDivergence,
    monte_carlo_divergence,
    probe_step,
    sure_input,
)
from pyrodip.cli import main
from pyrodip.errors import InvalidInputError
from pyrodip.infer.batched import fit_generator, fit_models
from pyrodip.infer.fitting import Training
from pyrodip.infer.predictive import predict
from pyrodip.physics.observation import Observation, hold_out
from pyrodip.physics.operators import Downsample, Identity, Subset
from pyrodip.run.config import RunConfig
from pyrodip.run.fit import batchable, build_model, fit, fit_batch

TINY = NetConfig(scales=2, input_channels=4, channels_down=4, channels_up=4, channels_skip=2)
SIDE = 16


def _mean_and_error(values: list[float]) -> tuple[float, float]:
    array = np.array(values)
    return float(array.mean()), float(array.std() / math.sqrt(len(array)))


def test_divergence_of_a_linear_map_averages_to_its_trace():
    generator = torch.Generator().manual_seed(0)
    matrix = torch.randn(30, 30, generator=generator, dtype=torch.float64)
    y = torch.randn(30, generator=generator, dtype=torch.float64)
    draws = [float(monte_carlo_divergence(lambda v: matrix @ v, y, 1e-3,
                                          torch.randn(30, generator=generator,
                                                      dtype=torch.float64)))
             for _ in range(4000)]
    mean, error = _mean_and_error(draws)
    assert abs(mean - float(matrix.trace())) < 4 * error
    assert error < 1.0  # the test can tell the trace (about +-5) from 0


def test_divergence_of_the_identity_averages_to_the_number_of_values():
    generator = torch.Generator().manual_seed(1)
    y = torch.rand(1, 2, 8, 8, generator=generator, dtype=torch.float64)
    draws = [float(monte_carlo_divergence(lambda v: v, y, probe_step(y),
                                          torch.randn(y.shape, generator=generator,
                                                      dtype=torch.float64)))
             for _ in range(2000)]
    mean, error = _mean_and_error(draws)
    assert abs(mean - y.numel()) < 4 * error and error < 1.0


def test_divergence_of_a_nonlinear_map_is_its_jacobians_trace_up_to_eps():
    """f(y) = y^2 per value: div = 2 sum y, up to O(eps) for a small step."""
    generator = torch.Generator().manual_seed(2)
    y = torch.rand(100, generator=generator, dtype=torch.float64)
    draws = [float(monte_carlo_divergence(torch.square, y, 1e-4,
                                          torch.randn(100, generator=generator,
                                                      dtype=torch.float64)))
             for _ in range(3000)]
    mean, error = _mean_and_error(draws)
    assert abs(mean - float(2 * y.sum())) < 4 * error + 0.05


def test_sure_with_the_divergence_estimates_the_risk_of_a_smoother():
    """SURE = ||y - f(y)||^2 - N sigma^2 + 2 sigma^2 div, averaged over noise draws, is the
    true squared error of f(y) = a box blur of y (the sign and scale of the divergence term)."""
    generator = torch.Generator().manual_seed(3)
    clean = torch.rand(1, 1, 16, 16, generator=generator, dtype=torch.float64)
    kernel = torch.full((1, 1, 3, 3), 1 / 9, dtype=torch.float64)

    def blur(v):
        return torch.nn.functional.conv2d(v, kernel, padding=1)

    sigma, sures, errors = 0.2, [], []
    for _ in range(400):
        y = clean + sigma * torch.randn(clean.shape, generator=generator, dtype=torch.float64)
        probe = torch.randn(clean.shape, generator=generator, dtype=torch.float64)
        div = monte_carlo_divergence(blur, y, probe_step(y), probe)
        sures.append(float(((y - blur(y)) ** 2).sum() - y.numel() * sigma**2
                           + 2 * sigma**2 * div))
        errors.append(float(((blur(y) - clean) ** 2).sum()))
    difference = np.array(sures) - np.array(errors)
    assert abs(difference.mean()) < 4 * difference.std() / math.sqrt(len(difference))
    # without the divergence term, the estimate is off by 2 sigma^2 div = 2 sigma^2 N / 9
    assert 2 * sigma**2 * clean.numel() / 9 > 8 * difference.std() / math.sqrt(len(difference))


def _sure_model(y, operator=None, **options):
    mask = getattr(operator, "observed_mask", None)
    return BayesianDIP(tuple(y.shape[1:]), net=TINY, operator=operator,
                       likelihood=GaussianLikelihood(0.1), sure=SureDivergence(y, mask),
                       **options)


def test_the_model_adds_minus_the_divergence_as_sures_data_term():
    """log N(y; f, sigma^2) + the factor = -SURE / (2 sigma^2) - N/2 - N log(sigma sqrt(2 pi)),
    with the divergence from a second pass at y + eps b (same weights)."""
    pyro.set_rng_seed(0)
    y = torch.rand(1, 1, SIDE, SIDE)
    model = _sure_model(y).eval()  # no jitter: the passes are at y and y + eps b
    probe = torch.randn_like(y)
    model.sure.draw_probe = lambda like: probe
    trace = poutine.trace(model).get_trace(y)
    trace.compute_log_prob()
    weights = {site: trace.nodes[site]["value"] for site in model.weight_sites}
    with torch.no_grad():
        image = model.render(weights)[0]
        probed = model.render(weights, net_input=y + model.sure.eps * probe)[0]
    div = float((probe * (probed - image)).sum() / model.sure.eps)
    factor = float(trace.nodes["sure_divergence"]["log_prob_sum"].detach())
    assert factor == pytest.approx(-div, rel=1e-4, abs=1e-3)
    assert abs(div) > 1.0  # the network's divergence is not 0: the test sees the term
    sigma, count = 0.1, y.numel()
    sure = float(((y - image) ** 2).sum()) - count * sigma**2 + 2 * sigma**2 * div
    expected = -sure / (2 * sigma**2) - count / 2 - count * math.log(sigma * math.sqrt(2 * math.pi))
    got = float(trace.nodes["obs"]["log_prob_sum"].detach()) + factor
    assert got == pytest.approx(expected, rel=1e-4)


def test_the_network_is_fed_the_observation_and_predictions_render_there_once():
    y = torch.rand(1, 2, SIDE, SIDE)
    model = _sure_model(y)
    assert torch.equal(model.z, y) and model.net_config.input_channels == 2
    guide = make_guide("meanfield", model, init_scale=0.05)

    def refuse(*args):
        raise AssertionError("a prediction ran the divergence pass")

    model.sure.forward = refuse
    prediction = predict(model, guide, num_samples=2, keep_samples=True)
    model.eval()
    weights = {site: guide.loc(site) for site in model.weight_sites}
    with torch.no_grad():
        at_y = model.render(weights, net_input=y)[0][0]
    assert prediction.samples.shape == (2, 2, SIDE, SIDE)
    assert not torch.allclose(prediction.samples[0], prediction.samples[1])
    guide.scales = lambda: torch.zeros_like(guide.locs)  # the draws are the locations now
    assert torch.allclose(predict(model, guide, num_samples=1).mean, at_y, atol=1e-6)


def test_values_held_out_of_the_fit_are_hidden_from_the_input_and_the_probe():
    observation = Observation.simulate(torch.rand(1, 32, 32), noise=0.1, seed=0)
    fitted, held = hold_out(observation, 0.2, seed=0)
    model, _ = build_model(RunConfig(data_term="sure"), fitted)
    y = observation.observation
    assert torch.equal(model.z[0][:, ~held[0]], y[:, ~held[0]])
    assert torch.allclose(model.z[0][:, held[0]], y[:, ~held[0]].mean())
    probe = model.sure.draw_probe(model.z)
    assert bool((probe[0][:, held[0]] == 0).all()) and bool((probe[0][:, ~held[0]] != 0).all())
    assert model.sure.eps == pytest.approx(1e-3 * float(y[:, ~held[0]].abs().max()))


def test_sure_input_and_probe_step():
    y = torch.tensor([[[[0.2, -3.0], [float("nan"), 1.0]]]])
    assert probe_step(y) == pytest.approx(3e-3) and probe_step(torch.zeros(3)) == 1e-3
    mask = torch.tensor([[[[True, False], [False, True]]]])
    assert torch.allclose(sure_input(y, mask), torch.tensor([[[[0.2, 0.6], [0.6, 1.0]]]]))


@pytest.mark.parametrize(("settings", "message"), [
    (dict(task="superres"), "needs denoising.*task=superres"),
    (dict(task="inpaint"), "needs denoising.*task=inpaint"),
    (dict(task="ct"), "needs denoising.*task=ct"),
    (dict(noise="speckle"), "assumes Gaussian noise, not speckle"),
    (dict(noise="poisson"), "assumes Gaussian noise, not poisson"),
    (dict(noise_level="learned"), "needs a known noise level.*--noise-level known"),
    (dict(noise_level="heteroscedastic"), "needs a known noise level"),
    (dict(clip=True), "unclipped.*pass --censoring off"),
    (dict(local_reparam=True), "both of its passes.*--local-reparam"),
    (dict(method="mcdropout"), "both of its passes.*dropout"),
])
def test_settings_where_sure_does_not_hold_are_refused(settings, message):
    with pytest.raises(InvalidInputError, match=message):
        RunConfig(data_term="sure", **settings)
    RunConfig(**settings)  # each is fine with the likelihood


def test_the_model_refuses_what_sure_does_not_hold_for():
    y = torch.rand(1, 1, SIDE, SIDE)
    for options, message in [
        (dict(operator=Downsample(2)), "needs denoising.*Downsample"),
        (dict(likelihood=PoissonLikelihood(100.0)), "assumes Gaussian noise, not poisson"),
        (dict(likelihood=GaussianLikelihood(0.1, learn_std=True)), "known noise level"),
        (dict(likelihood=GaussianLikelihood(0.1, censored=(0.0, 1.0))), "--censoring off"),
    ]:
        with pytest.raises(InvalidInputError, match=message):
            BayesianDIP((1, SIDE, SIDE), net=TINY, sure=SureDivergence(y), **options)
    with pytest.raises(InvalidInputError, match="the image's"):
        BayesianDIP((1, 2 * SIDE, 2 * SIDE), net=TINY, sure=SureDivergence(y))
    _sure_model(y, Subset(Identity(), torch.rand(SIDE, SIDE) > 0.1))  # held-out values: fine


def test_a_clipped_observation_is_refused_unless_censoring_is_off():
    clean = torch.rand(1, 32, 32)
    noisy = Observation.simulate(clean, noise=0.1, seed=0)
    clipped = dataclasses.replace(noisy, observation=noisy.observation.clamp(0, 1))
    with pytest.raises(InvalidInputError, match="pass --censoring off"):
        build_model(RunConfig(data_term="sure"), clipped)
    build_model(RunConfig(data_term="sure", censoring="off"), clipped)


def test_sure_fits_are_neither_batched_nor_captured():
    configs = [RunConfig(data_term="sure", steps=2, seed=seed) for seed in (0, 1)]
    assert "data_term=sure" in batchable(configs[0]) and batchable(RunConfig()) is None
    observations = [Observation.simulate(torch.rand(1, 32, 32), noise=0.1, seed=0)] * 2
    with pytest.raises(InvalidInputError, match="cannot run in a batch: data_term=sure"):
        fit_batch(observations, configs, progress=False)
    built = [build_model(config, observations[0]) for config in configs]
    with pytest.raises(InvalidInputError, match="data_term=sure.*batch 1"):
        fit_models([m for m, _ in built], [g for _, g in built], observations,
                   [fit_generator("cpu") for _ in built], Training(steps=2), progress=False)
    with pytest.raises(InvalidInputError, match="second network pass is not captured"):
        RunConfig(data_term="sure", capture=True, device="cuda")


def test_a_sure_fit_is_repeated_by_its_seed():
    observation = Observation.simulate(torch.rand(1, 32, 32), noise=0.1, seed=0)
    curves = [fit(observation, RunConfig(data_term="sure", steps=5, samples=2, seed=seed),
                  progress=False).history.curves["loss"] for seed in (0, 0, 1)]
    np.testing.assert_array_equal(curves[0], curves[1])
    assert not np.array_equal(curves[0], curves[2])


@pytest.mark.parametrize(("flags", "message"), [
    (["--task", "superres"], "needs denoising"),
    (["--noise", "poisson"], "assumes Gaussian noise"),
    (["--noise-level", "learned"], "known noise level"),
    (["--clip"], "pass --censoring off"),
])
def test_cli_refuses_sure_in_one_line_before_writing(tmp_path, capsys, flags, message):
    out = tmp_path / "bad"
    assert main(["run", "--data-term", "sure", *flags, "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not out.exists()


def test_cli_fits_with_sure_and_records_the_data_term(tmp_path):
    out = tmp_path / "sure"
    assert main(["run", "--size", "32", "--steps", "20", "--samples", "2", "--data-term",
                 "sure", "--out", str(out), "--quiet"]) == 0
    with xr.open_dataset(out / "result.nc") as result:
        assert result.attrs["data_term"] == "sure"
        assert json.loads(result.attrs["config"])["data_term"] == "sure"
        assert np.isfinite(result["loss"].values).all()
