"""pyrodip.infer.local_reparam: the local reparameterisation of the conv layers matches
sampling the weights, and runs only under a mean-field guide."""

import numpy as np
import pytest
import torch
from pyro import poutine

from pyrodip import Observation, RunConfig, fit
from pyrodip.infer.local_reparam import LocalReparameterization
from pyrodip.run.fit import build_model


@pytest.fixture
def tiny() -> Observation:
    truth = torch.linspace(0, 1, 32 * 32).reshape(1, 32, 32)
    return Observation.simulate(truth, noise=0.1, seed=0, name="ramp")


def test_local_reparameterisation_gives_a_conv_output_the_weight_samples_moments(tiny):
    """Per output pixel of the first conv: the same mean and variance as sampling weights."""
    config = RunConfig(init_scale=0.2)
    model, guide = build_model(config, tiny)
    model.eval()  # no input jitter: the conv's input is the fixed z
    conv, batchnorm = model.net.body.down[0], model.net.body.down[1]  # the first conv
    seen = []  # the conv's output, noise included: what the next layer receives
    batchnorm.register_forward_pre_hook(lambda module, inputs: seen.append(inputs[0].detach()))
    handler = LocalReparameterization(model, guide)
    draws = 150
    with torch.no_grad():
        for _ in range(draws):
            with handler, poutine.replay(trace=poutine.trace(guide).get_trace()):
                model.render()
        local = torch.stack(seen[-draws:])
        seen.clear()
        for _ in range(draws):
            with poutine.replay(trace=poutine.trace(guide).get_trace()):
                model.render()
        weights = torch.stack(seen)
    assert not handler._hooks and conv in handler.layers  # hooks gone after the handler
    spread = weights.std(0)
    # means agree within a few standard errors, variances within 25 %
    assert ((local.mean(0) - weights.mean(0)).abs() < 5 * spread / draws**0.5).float().mean() > 0.99
    ratio = local.var(0) / weights.var(0)
    assert 0.75 < float(ratio.median()) < 1.25 and float(ratio.mean()) == pytest.approx(1, abs=0.1)


def test_local_reparameterisation_fits_and_refuses_point_guides(tiny):
    result = fit(tiny, RunConfig(steps=3, samples=2, local_reparam=True), progress=False)
    assert np.isfinite(result.history.curves["loss"]).all()
    with pytest.raises(ValueError, match="meanfield"):
        fit(tiny, RunConfig(method="dip", steps=2, local_reparam=True), progress=False)
