import pyro
import pytest
import torch

from pyrodip import InvalidInputError, RunConfig, fit
from pyrodip.evaluate.metrics import psnr

QUICK = RunConfig(steps=5, samples=2)


def test_fit_raises_psnr_above_the_noisy_observation(noisy64):
    # The guide starts narrow (as DIP), so that 400 steps suffice: the default start at the
    # posterior's own spread rises more slowly (docs/concepts.md, "The defaults").
    config = RunConfig(steps=400, samples=8, seed=0, init_scale=0.01)
    result = fit(noisy64, config, progress=False)
    noisy_psnr = float(psnr(noisy64.observation, noisy64.truth))
    final_psnr = float(psnr(result.prediction.mean, noisy64.truth))
    assert final_psnr > noisy_psnr + 2.0
    assert result.history.curves["psnr"][-1] > noisy_psnr + 2.0


def test_fitting_one_model_leaves_another_untouched(noisy64):
    first = fit(noisy64, QUICK, progress=False)
    before = {n: first.guide.loc(n).detach().clone() for n in first.guide.sites}
    fit(noisy64, QUICK.replace(seed=3), progress=False)
    assert all(torch.equal(first.guide.loc(n), before[n]) for n in before)


class _OwnGuide(torch.nn.Module):
    """A guide written without pyrodip's guide classes: a Normal per weight site."""

    def __init__(self, model) -> None:
        super().__init__()
        self.sites = dict(model.weight_sites)
        self.locs = torch.nn.ParameterList(
            [torch.nn.Parameter(w.clone()) for w in model.initial_weights.values()]
        )

    def forward(self, *args):
        import pyro.distributions as dist

        for (site, shape), loc in zip(self.sites.items(), self.locs, strict=True):
            pyro.sample(site, dist.Normal(loc, 0.01).to_event(len(shape)))


def test_fit_model_runs_on_a_guide_the_user_built(noisy64):
    from pyrodip import BayesianDIP, Training, fit_model

    model = BayesianDIP(noisy64.image_shape, operator=noisy64.operator, temperature=0.3)
    guide = _OwnGuide(model)
    with pytest.warns(UserWarning, match="engine 'auto' runs Pyro's ELBO: the guide is a"):
        result = fit_model(model, guide, noisy64, Training(steps=3, samples=2), progress=False)
    assert result.engine == "pyro"
    assert result.history.curves["loss"].shape == (3,)
    assert (result.prediction.std_epistemic > 0).all()
    with pytest.raises(InvalidInputError, match="engine 'fast' cannot"):
        fit_model(model, guide, noisy64, Training(steps=1, engine="fast"), progress=False)


def test_results_say_which_engine_ran(noisy64):
    assert fit(noisy64, QUICK, progress=False).engine == "fast"
    assert fit(noisy64, QUICK.replace(engine="pyro"), progress=False).engine == "pyro"
