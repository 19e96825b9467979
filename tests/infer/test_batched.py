"""Batched fits (pyrodip.infer.batched) against the same fits one by one (pyrodip.fit_batch:
tests/run/test_fit.py).

A DIP fit is chaotic: a change in the last bit of one weight grows to a visible difference
within tens of steps (docs/performance.md). The tight checks therefore run in float64 over
the first steps, where a batch and single fits must agree to rounding; longer fits are
compared by their PSNR.
"""

import math

import numpy as np
import pyro
import pytest
import torch

from pyrodip import (
    BayesianDIP,
    InvalidInputError,
    Observation,
    RunConfig,
    Training,
    fit_model,
    make_guide,
)
from pyrodip.infer.batched import fit_generator, fit_models
from pyrodip.run import resources


@pytest.fixture
def float64():
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(torch.float32)


TRUTH = torch.linspace(0, 1, 32 * 32).reshape(1, 32, 32)


def build(seed, guide="meanfield", prior_scale=0.05, temperature=0.1, jitter=0.03, side=32):
    truth = TRUTH if side == 32 else torch.rand(1, side, side)
    observation = Observation.simulate(truth.to(torch.get_default_dtype()), noise=0.1, seed=seed)
    pyro.set_rng_seed(seed)
    model = BayesianDIP(observation.image_shape, operator=observation.operator,
                        prior=f"normal:{prior_scale}", temperature=temperature, jitter=jitter)
    return model, make_guide(guide, model), observation


def singles(specs, training):
    return [fit_model(*build(**spec), training, progress=False) for spec in specs]


def batched(specs, training):
    fits = []
    for spec in specs:
        model, guide, observation = build(**spec)
        fits.append((model, guide, observation, fit_generator("cpu")))
    models, guides, observations, generators = zip(*fits, strict=True)
    return fit_models(models, guides, observations, generators, training, progress=False)


def relative(a, b):
    return float(np.max(np.abs(a - b) / np.abs(a)))


@pytest.mark.parametrize("varied", ["seed", "prior and temperature"])
def test_a_batch_takes_the_steps_each_fit_takes_alone(float64, varied):
    if varied == "seed":
        specs = [{"seed": seed} for seed in (0, 1, 2)]
    else:  # one seed: only the prior's scale and the temperature tell the fits apart
        specs = [{"seed": 0, "prior_scale": scale, "temperature": t}
                 for scale, t in ((0.05, 0.1), (0.2, 1.0))]
    training = Training(steps=2, samples=3)
    for one, many in zip(singles(specs, training), batched(specs, training), strict=True):
        assert relative(one.history.curves["loss"], many.history.curves["loss"]) < 1e-10
        for name, values in one.history.curves.items():  # recorded for all fits at once
            assert relative(values, many.history.curves[name]) < 1e-10, name
        assert torch.allclose(one.smoothed, many.smoothed, atol=1e-10)
        # the predictive draws the same weights (each fit's own generator)
        assert torch.allclose(one.prediction.mean, many.prediction.mean, atol=1e-8)
        assert torch.allclose(one.prediction.std_total, many.prediction.std_total, atol=1e-8)
        assert many.status == "completed" and many.engine == "fast"


def test_a_batch_anneals_and_averages_as_each_fit_alone(float64):
    specs = [{"seed": seed} for seed in (0, 1)]
    training = Training(steps=4, samples=2, lr_decay=0.5, average=0.5, readout="renders")
    for one, many in zip(singles(specs, training), batched(specs, training), strict=True):
        assert relative(one.history.curves["loss"], many.history.curves["loss"]) < 1e-10
        assert many.prediction.num_samples == 2  # the renders of the last two steps
        for name in ("final", "renders", "params"):
            assert torch.allclose(one.readouts[name], many.readouts[name], atol=1e-8), name
        assert torch.allclose(one.prediction.std_total, many.prediction.std_total, atol=1e-8)


def test_point_estimate_fits_agree_over_many_steps(float64):
    # No weight noise and no jitter: nothing but rounding tells a batch from single fits.
    specs = [{"seed": seed, "guide": "map", "temperature": 0.0, "jitter": 0.0}
             for seed in (0, 1)]
    training = Training(steps=30, samples=1)
    for one, many in zip(singles(specs, training), batched(specs, training), strict=True):
        assert relative(one.history.curves["loss"], many.history.curves["loss"]) < 1e-8


def test_a_stop_rule_freezes_each_fit_at_its_own_step(float64):
    specs = [{"seed": seed, "guide": "map", "temperature": 0.0, "jitter": 0.0}
             for seed in (0, 1)]
    training = Training(steps=400, samples=1, lr=0.05, stop_rule="wmv", patience=25)
    alone, together = singles(specs, training), batched(specs, training)
    assert [r.status for r in alone] == ["stopped", "stopped"]
    for one, many in zip(alone, together, strict=True):
        assert (many.status, many.chosen_step) == (one.status, one.chosen_step)
        assert len(many.history.curves["loss"]) == len(one.history.curves["loss"])
        assert torch.allclose(one.prediction.mean, many.prediction.mean, atol=1e-6)


def test_a_diverging_fit_is_marked_and_the_others_go_on(float64):
    training = Training(steps=30, samples=2)
    fits = []
    for seed in (0, 1):
        model, guide, observation = build(seed)
        fits.append([model, guide, observation, fit_generator("cpu")])
    fits[1][2].observation[0, 0, 0] = math.inf  # fit 1's loss is infinite from the start
    healthy = singles([{"seed": 0}], Training(steps=2, samples=2))[0]
    results = fit_models(*zip(*fits, strict=True), training, progress=False)
    assert [r.status for r in results] == ["completed", "diverged"]
    assert results[1].events and len(results[1].history.curves["loss"]) == 25
    first_two = results[0].history.curves["loss"][:2]
    assert relative(healthy.history.curves["loss"], first_two) < 1e-10


def test_fit_models_refuses_fits_of_other_shapes_or_kinds():
    training = Training(steps=2, samples=1)
    small, large = build(0), build(1, side=64)
    generators = [fit_generator("cpu")] * 2
    with pytest.raises(InvalidInputError, match="other parameter shapes|more than its values"):
        fit_models([small[0], large[0]], [small[1], large[1]], [small[2], large[2]],
                   generators, training, progress=False)
    other = build(1, jitter=0.1)
    with pytest.raises(InvalidInputError, match="differs from fit 0 in more than its values"):
        fit_models([small[0], other[0]], [small[1], other[1]], [small[2], other[2]],
                   generators, training, progress=False)


def test_the_memory_guard_names_the_batch_that_fits(monkeypatch):
    config = RunConfig(size=64)
    estimate = resources.estimate_memory(config, (1, 64, 64)).total
    monkeypatch.setattr(resources, "available_memory", lambda device: int(3.5 * estimate))
    resources.check_memory(config, (1, 64, 64), fits=3)
    with pytest.raises(InvalidInputError, match=r"a batch of 8 fits .* use `batch=3`"):
        resources.check_memory(config, (1, 64, 64), fits=8)
