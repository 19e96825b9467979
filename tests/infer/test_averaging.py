"""The annealed learning rate and the averages over a fit's last steps
(pyrodip.infer.averaging), and the readouts they give a fit."""

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from pyrodip import BayesianDIP, InvalidInputError, Observation, Training, fit_model, make_guide
from pyrodip.infer.averaging import TailAverage, lr_factor, tail_start


@given(st.integers(1, 500), st.floats(0, 1))
def test_the_factor_falls_from_one_to_zero_without_rising(steps, decay):
    factors = [lr_factor(step, steps, decay) for step in range(steps)]
    assert all(0 <= f <= 1 for f in factors)
    assert all(b <= a for a, b in zip(factors, factors[1:], strict=False))
    assert factors[: tail_start(steps, decay)] == [1.0] * tail_start(steps, decay)
    if decay and tail_start(steps, decay) < steps:
        assert factors[-1] == 0.0


def test_the_factor_is_a_half_cosine():
    assert lr_factor(50, 101, 1.0) == pytest.approx(0.5)
    assert lr_factor(25, 101, 1.0) == pytest.approx(0.5 * (1 + math.cos(math.pi / 4)))


def test_the_average_is_the_mean_and_variance_of_the_last_steps():
    values = torch.arange(10.0)
    weight = torch.nn.Parameter(torch.zeros(3))
    tail = TailAverage(start=6)
    for step, value in enumerate(values):
        with torch.no_grad():
            weight.fill_(value)
        tail.update(step, torch.full((1, 2, 2), float(value)), None, [weight])
    prediction = tail.prediction()
    assert tail.count == 4
    assert float(prediction.mean[0, 0, 0]) == pytest.approx(7.5)
    assert float(prediction.std_epistemic[0, 0, 0]) == pytest.approx(float(values[6:].std()))
    with tail.swapped([weight]):
        assert torch.allclose(weight, torch.full((3,), 7.5))
    assert torch.allclose(weight, torch.full((3,), 9.0))  # put back


def test_nothing_is_averaged_before_the_start():
    tail = TailAverage(start=5)
    tail.update(0, torch.zeros(1, 1, 1), None, [torch.zeros(1)])
    assert tail.prediction() is None and tail.count == 0


def fitted(**training):
    truth = torch.linspace(0, 1, 32 * 32).reshape(1, 32, 32)
    observation = Observation.simulate(truth, noise=0.1, seed=0)
    torch.manual_seed(0)
    model = BayesianDIP(observation.image_shape, operator=observation.operator)
    guide = make_guide("meanfield", model)
    return fit_model(model, guide, observation, Training(**training), progress=False)


def test_a_fit_returns_the_readout_it_is_asked_for_and_keeps_the_others():
    result = fitted(steps=8, samples=3, average=0.5, readout="renders", lr_decay=0.25)
    assert set(result.readouts) == {"final", "renders", "params"}
    assert torch.equal(result.prediction.mean, result.readouts["renders"])
    assert result.prediction.num_samples == 4
    assert result.prediction.measured_mean is not None  # the calibration scores these


def test_a_fit_too_short_to_average_two_renders_says_it_returned_final():
    result = fitted(steps=6, samples=2, average=0.2, readout="renders")  # one render averaged
    assert result.readout == "final" and list(result.readouts) == ["final"]
    assert result.prediction.num_samples == 2


def test_without_averaging_a_fit_has_only_its_final_readout():
    result = fitted(steps=3, samples=2)
    assert list(result.readouts) == ["final"]
    assert torch.equal(result.prediction.mean, result.readouts["final"])


@pytest.mark.parametrize("settings, message", [
    ({"average": 1.5}, "average must be a number in [0, 1]"),
    ({"lr_decay": -0.1}, "lr_decay must be a number in [0, 1]"),
    ({"readout": "renders"}, "give `average` > 0, or `readout` final"),
    ({"readout": "last"}, "readout"),
])
def test_bad_settings_are_refused(settings, message):
    with pytest.raises(InvalidInputError, match=message.replace("[", r"\[").replace("]", r"\]")):
        Training(**settings)
