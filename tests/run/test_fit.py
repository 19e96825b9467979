"""pyrodip.run.fit: one reconstruction from a run config. Equal configs give equal fits; the
config's settings reach the model (build_model); values are held out for the calibration and
the refit; fit_batch gives what fit gives, refits a diverged fit alone, and refuses fits it
cannot batch."""

import dataclasses

import numpy as np
import pytest
import torch

from pyrodip import InvalidInputError, Observation, RunConfig, fit, fit_batch, prepare_observation
from pyrodip.infer import loop
from pyrodip.physics.observation import hold_out
from pyrodip.run.fit import build_model

QUICK = RunConfig(steps=5, samples=2)
TINY = {"size": 32, "steps": 20, "samples": 4}


@pytest.fixture
def tiny() -> Observation:
    truth = torch.linspace(0, 1, 32 * 32).reshape(1, 32, 32)
    return Observation.simulate(truth, noise=0.1, seed=0, name="ramp")


def relative(a, b):
    return float(np.max(np.abs(a - b) / np.abs(a)))


def test_same_seed_same_result_and_fits_share_no_parameters(noisy64):
    first = fit(noisy64, QUICK, progress=False)
    second = fit(noisy64, QUICK, progress=False)
    assert np.array_equal(first.history.curves["loss"], second.history.curves["loss"])
    assert torch.equal(first.prediction.mean, second.prediction.mean)
    first_params = {id(p) for p in first.guide.parameters()} | {
        id(p) for p in first.model.parameters()}
    second_params = {id(p) for p in second.guide.parameters()} | {
        id(p) for p in second.model.parameters()}
    assert not first_params & second_params
    other_seed = fit(noisy64, QUICK.replace(seed=1), progress=False)
    assert not torch.equal(first.prediction.mean, other_seed.prediction.mean)


@pytest.mark.parametrize("changes", [
    {"method": "dip"},
    {"noise_level": "learned"},
    {"noise_level": "heteroscedastic"},
    {"optimizer": "adamw", "weight_decay": 1e-4},
    {"bayesian_batchnorm": True},
])
def test_variants_run(noisy64, changes):
    result = fit(noisy64, QUICK.replace(**changes), progress=False)
    assert np.isfinite(result.history.curves["loss"]).all()
    if changes.get("noise_level") == "heteroscedastic":
        assert result.prediction.std_aleatoric is not None


@pytest.mark.parametrize(("method", "temperature"), [("mfvi", 0.1), ("dip", 0.0), ("sgld", 0.0)])
def test_temperature_defaults_to_the_methods(tiny, method, temperature):
    model, _ = build_model(RunConfig(method=method), tiny)
    assert model.temperature == temperature
    assert build_model(RunConfig(method=method, temperature=0.5), tiny)[0].temperature == 0.5


def test_held_out_values_never_reach_the_likelihood():
    config = RunConfig(**TINY)
    obs = prepare_observation(config)
    _, held = hold_out(obs, config.heldout_fraction, config.seed)
    changed = dataclasses.replace(
        obs, observation=torch.where(held, torch.rand_like(obs.observation), obs.observation))
    first, second = fit(obs, config, progress=False), fit(changed, config, progress=False)
    assert np.array_equal(first.history.curves["loss"], second.history.curves["loss"])
    assert torch.equal(first.prediction.mean, second.prediction.mean)
    assert first.calibration.scale != second.calibration.scale  # scored on the changed values
    assert first.observation is obs  # the result holds the whole observation


def test_refit_is_the_uncalibrated_fit_with_the_held_out_scale():
    obs = Observation.simulate(torch.rand(1, 32, 32), 0.1, seed=0)
    whole = fit(obs, RunConfig(calibration="none", **TINY), progress=False)
    kept_out = fit(obs, RunConfig(**TINY), progress=False)
    refit = fit(obs, RunConfig(calibration_refit=True, **TINY), progress=False)
    assert torch.equal(refit.prediction.mean, whole.prediction.mean)  # all values fitted
    assert refit.calibration.scale == kept_out.calibration.scale  # scored on the held-out fit
    assert torch.allclose(refit.prediction.std_total,
                          refit.calibration.scale * whole.prediction.std_total)


def test_fit_batch_gives_what_fit_gives_on_every_task():
    for task in ("superres", "inpaint", "ct"):
        configs = [RunConfig(size=32, task=task, steps=3, samples=2, seed=s) for s in (0, 1)]
        observations = [prepare_observation(config) for config in configs]
        together = fit_batch(observations, configs, progress=False)
        for observation, config, many in zip(observations, configs, together, strict=True):
            one = fit(observation, config, progress=False)
            assert relative(one.history.curves["loss"][:1], many.history.curves["loss"][:1]) < 1e-5
            # every curve the batch's trackers record together (held-out values included)
            assert one.history.curves.keys() == many.history.curves.keys()
            for name, values in one.history.curves.items():
                assert np.allclose(values[:1], many.history.curves[name][:1], rtol=1e-4,
                                   atol=1e-5), (task, name)
            assert many.prediction.mean.shape == one.prediction.mean.shape
            assert many.calibration.method == one.calibration.method


def test_fit_batch_refits_a_diverged_fit_on_its_own(monkeypatch):
    monkeypatch.setattr(loop, "VALIDATE", False)  # Pyro's checks would raise at the NaN image
    # A prior this narrow under this temperature makes fit 1's KL, and so its loss, infinite.
    configs = [RunConfig(size=32, steps=4, samples=2),
               RunConfig(size=32, steps=4, samples=2, seed=1, prior_scale=1e-15,
                         temperature=1e10)]
    observations = [prepare_observation(config) for config in configs]
    results = fit_batch(observations, configs, progress=False)
    alone = fit(observations[1], configs[1], progress=False)
    assert results[1].status == alone.status == "diverged"
    assert results[1].events == alone.events  # the single fit's roll-backs, not the batch's
    np.testing.assert_array_equal(results[1].history.curves["loss"],
                                  alone.history.curves["loss"])
    assert results[0].status == "completed" and results[0].calibration is not None


@pytest.mark.parametrize(
    ("change", "message"),
    [({"steps": 5}, "differ in more than seed"),
     ({"method": "sgld"}, "SGLD"),
     ({"engine": "pyro"}, "fast engine"),
     ({"local_reparam": True}, "fast engine")],
)
def test_fit_batch_refuses_fits_it_cannot_batch(change, message):
    configs = [RunConfig(size=32, steps=3), RunConfig(size=32, steps=3, seed=1).replace(**change)]
    observations = [prepare_observation(config) for config in configs]
    with pytest.raises(InvalidInputError, match=message):
        fit_batch(observations, configs, progress=False)


def test_build_model_is_public_and_builds_what_fit_fits(tiny):
    import pyrodip

    assert "build_model" in pyrodip.__all__ and pyrodip.build_model is build_model
    config = RunConfig(steps=2, samples=2, seed=3)
    torch.manual_seed(config.seed)
    model, guide = build_model(config, tiny)
    fitted = fit(tiny, config.replace(steps=1), progress=False)
    assert model.prior.spec() == fitted.model.prior.spec() and type(guide) is type(fitted.guide)
    assert (model.temperature, model.jitter) == (fitted.model.temperature, fitted.model.jitter)


def test_the_howtos_decoder_only_guide_covers_exactly_the_decoder():
    import re
    import tomllib
    from pathlib import Path

    howto = (Path(__file__).resolve().parents[2] / "docs" / "howto.md").read_text()
    settings = tomllib.loads(re.search(r"```toml\n(.*?)```", howto, re.S).group(1))
    assert "decoder only" in howto and "10 of the small network's 22" in howto
    config = RunConfig(**settings).replace(size=64)
    model, guide = build_model(config, prepare_observation(config))
    decoder = [site for site in model.weight_sites if ".up." in site or site.startswith("net.head")]
    assert len(model.weight_sites) == 22 and guide.bayesian_sites == decoder
    assert len(decoder) == 10
