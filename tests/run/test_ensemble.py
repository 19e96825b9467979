"""pyrodip.run.ensemble: K fits of one observation, combined as a mixture. K=1 is the single
fit; member 0 is the run's own fit; the members share the observation and held-out values and
differ in their fits; the mixture is the law of total variance; bad K is refused."""

import dataclasses

import pytest
import torch

import pyrodip.run.fit as run_fit
from pyrodip import InvalidInputError, Observation, RunConfig, fit
from pyrodip.infer.predictive import Prediction
from pyrodip.run.ensemble import combined, member_configs, mixture
from pyrodip.run.results import to_dataset
from pyrodip.seeding import member_seed

TINY = {"steps": 15, "samples": 3}


@pytest.fixture
def tiny() -> Observation:
    truth = torch.linspace(0, 1, 32 * 32).reshape(1, 32, 32)
    return Observation.simulate(truth, noise=0.1, seed=0, name="ramp")


def prediction(mean, std, measured_mean, measured_std, samples=None) -> Prediction:
    tensor = torch.tensor  # one channel, one row of two pixels
    return Prediction(
        mean=tensor([[mean]]), std_epistemic=tensor([[std]]), std_aleatoric=None,
        std_total=tensor([[std]]), num_samples=2, samples=samples,
        measured_mean=tensor([[measured_mean]]), measured_std=tensor([[measured_std]]),
    )


def test_the_mixture_is_the_law_of_total_variance():
    members = [
        prediction([0.2, 0.5], [0.1, 0.0], [1.0, 2.0], [0.3, 0.1], torch.zeros(2, 1, 1, 2)),
        prediction([0.4, 0.5], [0.2, 0.0], [3.0, 2.0], [0.4, 0.1], torch.ones(2, 1, 1, 2)),
        prediction([0.9, 0.5], [0.3, 0.0], [2.0, 2.0], [0.5, 0.1], torch.ones(2, 1, 1, 2)),
    ]
    mixed = mixture(members)
    # by hand: pixel 0, means 0.2, 0.4, 0.9 -> 0.5; their variance over K = 3 (population)
    between = ((0.2 - 0.5) ** 2 + (0.4 - 0.5) ** 2 + (0.9 - 0.5) ** 2) / 3  # 0.08667
    within = (0.1**2 + 0.2**2 + 0.3**2) / 3  # 0.04667
    assert torch.allclose(mixed.mean, torch.tensor([[[0.5, 0.5]]]))
    assert torch.allclose(mixed.std_total.square(), torch.tensor([[[within + between, 0.0]]]))
    assert torch.allclose(mixed.std_epistemic, mixed.std_total)
    assert torch.allclose(mixed.std_between.square(), torch.tensor([[[between, 0.0]]]))
    # the measured summaries likewise: means 1, 3, 2 -> 2, variance 2/3; within (0.09+0.16+0.25)/3
    assert torch.allclose(mixed.measured_mean, torch.tensor([[[2.0, 2.0]]]))
    assert torch.allclose(mixed.measured_std.square(),
                          torch.tensor([[[0.5 / 3 + 2 / 3, 0.01]]]))
    assert mixed.samples.shape == (6, 1, 1, 2) and mixed.num_samples == 6
    assert mixture(members[:1]).std_between.abs().max() == 0  # one member: no spread


def test_a_heteroscedastic_mixture_keeps_its_noise_apart():
    members = [dataclasses.replace(prediction([0.0], [0.0], [0.0], [0.0]),
                                   std_aleatoric=torch.tensor([[[s]]])) for s in (0.1, 0.3)]
    mixed = mixture(members)
    assert torch.allclose(mixed.std_aleatoric.square(), torch.tensor([[[0.05]]]))
    assert mixed.measured_std is not None and mixture(members[:1]).samples is None


def test_member_configs_differ_only_in_the_fit_seed():
    configs = member_configs(RunConfig(seed=4, ensemble=3, steps=7))
    assert [c.seed for c in configs] == [4, member_seed(4, 1), member_seed(4, 2)]
    assert all(c.ensemble == 1 and c.replace(seed=4) == RunConfig(seed=4, steps=7)
               for c in configs)


def test_one_member_is_todays_fit_and_member_0_is_the_single_fit(tiny):
    single = fit(tiny, RunConfig(**TINY), progress=False)
    again = fit(tiny, RunConfig(ensemble=1, **TINY), progress=False)
    assert torch.equal(single.prediction.std_total, again.prediction.std_total)
    assert single.prediction.std_between is None and single.member_means is None
    pair = fit(tiny, RunConfig(ensemble=2, **TINY), progress=False)
    assert torch.equal(pair.member_means[0], single.prediction.mean)  # paired with one fit
    assert not torch.equal(pair.member_means[1], single.prediction.mean)
    assert torch.allclose(pair.prediction.mean, pair.member_means.mean(0))
    dataset = to_dataset(pair, baseline=False)
    assert dataset.attrs["ensemble"] == 2 and dataset.sizes["member"] == 2
    assert dataset["ensemble_member_psnr"].values[0] == to_dataset(
        single, baseline=False).attrs["mean_psnr"]
    assert to_dataset(single, baseline=False).attrs["ensemble"] == 1


def test_members_share_the_observation_and_held_out_values(tiny, monkeypatch):
    calls = []
    fit_once = run_fit._fit_once

    def recording(observation, config, *args):
        calls.append((observation, config.seed, args[-1]))
        return fit_once(observation, config, *args)

    monkeypatch.setattr(run_fit, "_fit_once", recording)
    result = fit(tiny, RunConfig(ensemble=3, seed=2, **TINY), progress=False)
    (obs, seed, held), *others = calls
    assert seed == 2 and held is not None and held.any()
    assert len(others) == 2 and len({seed for _, seed, _ in calls}) == 3
    for other, _, other_held in others:
        assert torch.equal(other.observation, obs.observation) and torch.equal(other_held, held)
    # calibrated as one predictive: the std covers the spread between the members
    raw = result.prediction.std_total_raw
    assert (raw.square() >= result.prediction.std_between.square() - 1e-7).all()
    assert float(result.prediction.std_between.mean()) > 0
    assert torch.allclose(result.prediction.std_total, result.calibration.scale * raw)
    assert result.observation is tiny and result.config.ensemble == 3


def test_an_ensemble_of_dip_fits_has_the_spread_as_its_std(tiny):
    result = fit(tiny, RunConfig(method="dip", ensemble=2, **TINY), progress=False)
    assert result.calibration is None  # dip's calibration is none
    spread = result.prediction.std_between
    assert float(spread.mean()) > 0
    assert torch.allclose(result.prediction.std_total, spread, atol=1e-6)


def test_combined_keeps_every_members_divergences_and_the_batch_time(tiny):
    first = fit(tiny, RunConfig(steps=3, samples=2, calibration="none"), progress=False)
    second = dataclasses.replace(first, events=[{"step": 2}], status="diverged",
                                 wall_time_s=first.wall_time_s)
    config = RunConfig(ensemble=2, steps=3, samples=2, calibration="none")
    together = combined([first, second], config)
    assert together.status == "diverged" and together.events == [{"step": 2, "member": 1}]
    assert together.wall_time_s == 2 * first.wall_time_s
    assert combined([first, second], config, batched=True).wall_time_s == first.wall_time_s


@pytest.mark.parametrize("bad", [0, -2, 1.5, True, "2"])
def test_bad_ensemble_sizes_are_refused(bad):
    with pytest.raises(InvalidInputError, match="ensemble must be"):
        RunConfig(ensemble=bad)


def test_an_ensemble_cannot_be_resumed_or_batched(tiny):
    with pytest.raises(InvalidInputError, match="keeps no checkpoint to resume"):
        fit(tiny, RunConfig(ensemble=2, **TINY), progress=False, resume=True)
    assert "ensemble" in run_fit.batchable(RunConfig(ensemble=2))
