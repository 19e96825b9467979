import pytest
import torch

from pyrodip import BayesianDIP, InvalidInputError, Observation, make_guide
from pyrodip.infer.fitting import CHECK_EVERY, Fitting, Training, model_device


def fitting(steps: int = 3) -> Fitting:
    observation = Observation.simulate(torch.rand(1, 32, 32), noise=0.1, seed=0)
    torch.manual_seed(0)
    model = BayesianDIP(observation.image_shape, operator=observation.operator)
    guide = make_guide("meanfield", model)
    return Fitting(model, guide, observation, Training(steps=steps, samples=2), None, "f", None)


@pytest.mark.parametrize(("change", "message"), [
    ({"steps": 0}, "steps must be a positive integer"),
    ({"samples": 2.5}, "samples must be a positive integer"),
    ({"lr": -1.0}, "lr must be a positive number"),
    ({"ema": 1.0}, r"ema must be in \[0, 1\)"),
    ({"weight_decay": -0.1}, "weight_decay must be a number >= 0"),
    ({"optimizer": "lbfgs"}, "unknown optimizer 'lbfgs'"),
    ({"engine": "jax"}, "unknown engine 'jax'"),
    ({"local_reparam": True, "engine": "fast"}, "local reparameterisation runs on the pyro"),
])
def test_training_settings_are_checked(change, message):
    with pytest.raises(InvalidInputError, match=message):
        Training(**change)


def test_a_fitting_runs_its_steps_and_summarises_them():
    one = fitting()
    assert model_device(one.model) == torch.device("cpu")
    one.run(progress=False, checkpoint=None, stop=None)
    result = one.result()
    assert one.step == 3 and result.status == "completed" and result.events == []
    assert result.history.curves["loss"].shape == (3,)
    assert result.prediction.mean.shape == (1, 32, 32)


def test_a_fitting_resumed_from_its_state_continues_where_it_stopped():
    torch.manual_seed(1)
    first = fitting(steps=CHECK_EVERY)
    first.run(progress=False, checkpoint=None, stop=None)
    state = first.state_dict()
    second = fitting(steps=CHECK_EVERY)
    second.load_state_dict(state)
    assert second.step == CHECK_EVERY and second.resumed_at == [CHECK_EVERY]
    assert torch.equal(second.tracker.curves["loss"], first.tracker.curves["loss"])
    state["config"] = "other settings"
    with pytest.raises(InvalidInputError, match="written with other settings"):
        second.load_state_dict(state)
