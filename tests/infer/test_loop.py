import numpy as np
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


def test_curves_cover_every_step_and_metric(noisy64):
    result = fit(noisy64, QUICK, progress=False)
    curves = result.history.curves
    for name in ("loss", "psnr", "ssim", "psnr_current", "ssim_current", "psnr_observation",
                 "ssim_observation", "psnr_current_observation", "ssim_current_observation"):
        assert curves[name].shape == (5,) and np.isfinite(curves[name]).all()
    assert list(result.history.steps) == [1, 2, 3, 4, 5]


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


def test_fitting_one_model_leaves_another_untouched(noisy64):
    first = fit(noisy64, QUICK, progress=False)
    before = {n: first.guide.loc(n).detach().clone() for n in first.guide.sites}
    fit(noisy64, QUICK.replace(seed=3), progress=False)
    assert all(torch.equal(first.guide.loc(n), before[n]) for n in before)


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


def test_observation_without_truth_tracks_only_data_fit(noisy64):
    from pyrodip import Observation

    observed = Observation.observed(noisy64.observation, noise=0.1)
    result = fit(observed, QUICK, progress=False)
    assert "psnr" not in result.history.curves
    assert "psnr_observation" in result.history.curves


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
