"""Capture of a fit's step as a CUDA graph: refused where it cannot run (the CPU path is
unchanged), and the optimiser it needs (a tensor learning rate, capturable) follows the
usual one exactly on the CPU. The captured fit itself is tested on a GPU (tests/test_gpu.py)."""

import copy

import pytest
import torch

from pyrodip import BayesianDIP, InvalidInputError, NetConfig, Observation, RunConfig, make_guide
from pyrodip.cli import main
from pyrodip.infer.averaging import set_lr
from pyrodip.infer.batched import fit_generator, fit_models
from pyrodip.infer.capture import CapturedStep, check_capture
from pyrodip.infer.fitting import Training
from pyrodip.infer.loop import fit_model
from pyrodip.infer.optimizers import make_optimizer

TINY = NetConfig(scales=2, input_channels=4, channels_down=4, channels_up=4, channels_skip=2)


def _tiny_fit():
    observation = Observation.simulate(torch.rand(1, 16, 16), noise=0.1, seed=0)
    model = BayesianDIP(observation.image_shape, net=TINY, operator=observation.operator)
    return model, make_guide("meanfield", model), observation


@pytest.mark.parametrize(("device", "engine", "message"), [
    ("cpu", "fast", "capture needs a CUDA device, not cpu: use --device cuda, or drop"),
    ("cuda", "pyro", "capture records the fast engine's step, and this fit runs the pyro"),
])
def test_capture_is_refused_off_cuda_and_on_the_pyro_engine(device, engine, message):
    with pytest.raises(InvalidInputError, match=message):
        check_capture(torch.device(device), engine)
    with pytest.raises(InvalidInputError, match=message):
        CapturedStep(lambda: torch.zeros(()), torch.device(device), engine)
    check_capture(torch.device("cuda:1"), "fast")  # no CUDA needed to accept the settings
    check_capture("cuda", "auto")  # auto picks the fast engine where capture can run


def test_a_cpu_fit_with_capture_is_refused_before_any_step():
    model, guide, observation = _tiny_fit()
    before = copy.deepcopy(guide.state_dict())
    with pytest.raises(InvalidInputError, match="capture needs a CUDA device"):
        fit_model(model, guide, observation, Training(steps=2, capture=True), progress=False)
    assert all(torch.equal(before[key], value) for key, value in guide.state_dict().items())


def test_a_batch_refuses_capture():
    model, guide, observation = _tiny_fit()
    with pytest.raises(InvalidInputError, match="capture records one fit's step, not a batch"):
        fit_models([model], [guide], [observation], [fit_generator("cpu")],
                   Training(steps=2, capture=True), progress=False)


@pytest.mark.parametrize(("settings", "message"), [
    ({"capture": True}, "capture needs a CUDA device, not cpu"),
    ({"capture": True, "device": "cuda", "engine": "pyro"}, "runs the pyro engine"),
])
def test_run_config_refuses_capture_where_it_cannot_run(settings, message):
    with pytest.raises(InvalidInputError, match=message):
        RunConfig(**settings)
    assert RunConfig(capture=True, device="cuda").capture


def test_cli_refuses_capture_on_the_cpu_with_exit_status_2_and_writes_nothing(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["run", "--capture", "--steps", "2", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "capture needs a CUDA device" in err and "Traceback" not in err
    assert not out.exists()


@pytest.mark.parametrize("optimizer", ["adam", "adamw", "sgd"])
def test_a_capturable_optimizer_follows_the_usual_one_through_a_schedule(optimizer):
    """A tensor learning rate set in place (as a graph reads it) gives the float one's steps,
    and survives a state round trip (a roll-back) as a tensor."""
    torch.manual_seed(0)
    usual = torch.nn.Parameter(torch.randn(6))
    captured = torch.nn.Parameter(usual.detach().clone())
    optimizers = {
        "usual": (usual, make_optimizer([("w", usual)], optimizer, 0.1)),
        "captured": (captured, make_optimizer([("w", captured)], optimizer, 0.1,
                                              capturable=True)),
    }
    lr = optimizers["captured"][1].param_groups[0]["lr"]
    assert isinstance(lr, torch.Tensor) and float(lr) == pytest.approx(0.1)
    for step in range(6):
        for weight, opt in optimizers.values():
            set_lr(opt, [0.1], 0.5**step)
            opt.zero_grad()
            (weight**4).sum().backward()
            opt.step()
    assert float(lr) == pytest.approx(0.1 * 0.5**5)
    assert torch.equal(usual, captured)
    opt = optimizers["captured"][1]
    opt.load_state_dict(copy.deepcopy(opt.state_dict()))
    assert isinstance(opt.param_groups[0]["lr"], torch.Tensor)
