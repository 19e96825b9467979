"""pyrodip's model in a Pyro user's own script: Pyro's SVI, optimisers, ELBOs, autoguides and
Predictive, with no Pyro setting changed (docs/pyro.md shows the same script)."""

import pyro
import pytest
import torch
from pyro.infer import SVI, Predictive, Trace_ELBO, TraceMeanField_ELBO
from pyro.infer.autoguide import AutoDelta, AutoLowRankMultivariateNormal, AutoNormal
from pyro.infer.autoguide.initialization import init_to_value
from pyro.optim import Adam

from pyrodip import BayesianDIP, NetConfig, RunConfig, fit, make_guide, prepare_observation
from pyrodip.bayes.autoguides import tempered
from pyrodip.cli import main
from pyrodip.run.results import read_dataset

TINY = NetConfig(scales=2, input_channels=4, channels_down=4, channels_up=4, channels_skip=2)


@pytest.fixture(scope="module")
def ct32():
    return prepare_observation(RunConfig(size=32))


def pyro_autonormal(model, init_scale=0.1):
    """Pyro's own AutoNormal, started where pyrodip's guides start, tempered."""
    auto = AutoNormal(model, init_loc_fn=init_to_value(values=model.initial_weights),
                      init_scale=init_scale)
    return tempered(auto, model)


@pytest.mark.parametrize("which", ["pyrodip", "autonormal"])
def test_the_ten_line_svi_script_runs_and_its_loss_falls(ct32, which):
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    y = ct32.observation[None]
    model = BayesianDIP(ct32.image_shape, operator=ct32.operator)
    if which == "pyrodip":
        guide = make_guide("meanfield", model, init_scale=0.01)
    else:
        guide = pyro_autonormal(model, init_scale=0.01)
    svi = SVI(model, guide, Adam({"lr": 0.01}), Trace_ELBO())
    losses = [svi.step(y) for _ in range(30)]
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5 - 300


@pytest.mark.parametrize("elbo", [Trace_ELBO, TraceMeanField_ELBO])
@pytest.mark.parametrize("kind", ["meanfield", "map", "autonormal", "autodelta", "autolowrank"])
def test_svi_steps_with_every_guide_and_elbo(kind, elbo):
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    model = BayesianDIP((1, 16, 16), net=TINY)
    values = init_to_value(values=model.initial_weights)
    guide = {
        "autonormal": lambda: tempered(AutoNormal(model, init_loc_fn=values), model),
        "autodelta": lambda: tempered(AutoDelta(model, init_loc_fn=values), model),
        "autolowrank": lambda: tempered(
            AutoLowRankMultivariateNormal(model, init_loc_fn=values, rank=2), model),
    }.get(kind, lambda: make_guide(kind, model))()
    svi = SVI(model, guide, Adam({"lr": 0.01}), elbo())
    y = torch.rand(1, 1, 16, 16)
    losses = [svi.step(y) for _ in range(2)]
    assert all(torch.isfinite(torch.tensor(losses)))
    assert len(pyro.get_param_store()) > 0  # pyro.optim found and stepped the parameters


def test_building_and_fitting_change_no_pyro_setting(ct32):
    before = dict(pyro.settings.get())
    model = BayesianDIP((1, 32, 32))
    for spec in ("meanfield", "autonormal", "autolowrank:2"):
        make_guide(spec, model)
    fit(ct32, RunConfig(size=32, steps=2, samples=2, engine="pyro"), progress=False)
    assert pyro.settings.get() == before


def test_tempered_autonormal_has_the_objective_of_the_meanfield_guide():
    """The same parameters and the same draws: the same tempered loss (T log q counted as
    T log p is), and not the same untempered."""
    pyro.clear_param_store()
    model = BayesianDIP((1, 16, 16), net=TINY, temperature=0.1)
    y = torch.rand(1, 1, 16, 16)
    meanfield = make_guide("meanfield", model, init_scale=0.05)
    auto = AutoNormal(model, init_loc_fn=init_to_value(values=model.initial_weights),
                      init_scale=0.05)
    auto(y)  # sets up its parameters (this runs the model once)

    def loss(guide):
        pyro.set_rng_seed(7)
        return Trace_ELBO().loss(model, guide, y)

    tempered_loss, mine = loss(tempered(auto, model)), loss(meanfield)
    assert tempered_loss == pytest.approx(mine, rel=1e-6)
    # Untempered, AutoNormal's log q keeps weight 1: the loss moves by (1 - T) log q.
    pyro.set_rng_seed(7)
    log_q = pyro.poutine.trace(meanfield).get_trace().log_prob_sum().detach() / model.temperature
    assert loss(auto) == pytest.approx(mine + (1 - model.temperature) * float(log_q), rel=1e-5)


def test_predictive_draws_posterior_images():
    pyro.clear_param_store()
    model = BayesianDIP((1, 16, 16), net=TINY)
    guide = make_guide("autonormal", model)
    model.eval()  # no input jitter, BatchNorm's running statistics: as pyrodip.predict
    draws = Predictive(model, guide=guide, num_samples=3, return_sites=["_RETURN"])()
    images = draws["_RETURN"]
    assert images.shape == (3, 1, 1, 16, 16)
    assert images.std(0).mean() > 0


def test_guide_autonormal_runs_from_the_command_line(tmp_path):
    out = tmp_path / "run"
    code = main(["run", "--guide", "autonormal", "--size", "32", "--steps", "3", "--samples",
                 "2", "--out", str(out)])
    assert code == 0
    result = read_dataset(out / "result.nc")
    assert float(result["std_epistemic"].mean()) > 0
