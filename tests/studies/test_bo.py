import json
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from conftest import exit_code

import pyrodip.studies.bo as bo
import pyrodip.studies.bo_results as bo_results
from pyrodip import Observation, RunConfig
from pyrodip.bayes.likelihoods import GaussianLikelihood
from pyrodip.cli import main
from pyrodip.errors import InvalidInputError, MissingFileError, PyrodipError
from pyrodip.infer.checkpoints import Checkpointing, Interrupted
from pyrodip.io.files import check_result_set
from pyrodip.physics.observation import hold_out
from pyrodip.physics.operators import Downsample, Mask
from pyrodip.run.results import read_dataset
from pyrodip.studies.bo import (
    FitObjective,
    Param,
    Study,
    best_parameters,
    heldout_log_likelihood,
    optimize,
    read_trials,
    resume,
    score,
)

LOG_PRIOR = Param("prior_scale", 0.01, 0.4, log=True)


def prior_study(**settings) -> Study:
    """A study of the prior's scale alone (the default search is the temperature)."""
    return Study(params=(LOG_PRIOR,), **settings)
OPTIMUM = {"prior_scale": 0.05, "temperature": 0.1}


@pytest.fixture(autouse=True)
def cheap_acquisition(monkeypatch):
    """A cheaper acquisition optimiser than the shipped one (same loop), to keep tests fast."""
    monkeypatch.setattr(bo, "NUM_RESTARTS", 4)
    monkeypatch.setattr(bo, "RAW_SAMPLES", 128)
    monkeypatch.setattr(bo, "MC_SAMPLES", 128)
    monkeypatch.setattr(bo_results, "MC_SAMPLES", 128)  # the grid stored in bo.nc


def bowl(params: dict) -> float:
    """Maximal (0) at OPTIMUM, a parabola in log10 of each setting."""
    return -sum((math.log10(v) - math.log10(OPTIMUM[k])) ** 2 for k, v in params.items())


def log_error(best: dict) -> float:
    return max(abs(math.log10(v / OPTIMUM[k])) for k, v in best["params"].items())


# --- parameters and settings -----------------------------------------------------------------


def test_param_parses_and_maps_log_scale_to_the_unit_interval():
    p = Param.parse("lr=0.001:0.1:log")
    assert p == Param("lr", 0.001, 0.1, log=True)
    assert p.to_unit(0.01) == pytest.approx(0.5)  # log10: -3, -2, -1
    assert p.from_unit(0.25) == pytest.approx(10**-2.5)
    assert (p.from_unit(0), p.from_unit(1)) == (0.001, 0.1)
    linear = Param.parse("temperature=0.5:1.5")
    assert not linear.log and linear.from_unit(0.25) == pytest.approx(0.75)
    assert Param.parse(LOG_PRIOR.spec()) == LOG_PRIOR


@pytest.mark.parametrize("text, words", [
    ("prior_scale=0.4:0.01", "low 0.4 must be below high 0.01"),
    ("prior_scale=0.1:0.1", "must be below"),
    ("prior_scale=0:0.4:log", "a log scale needs low > 0"),
    ("lr=-1:1:log", "a log scale needs low > 0"),
    ("prior_scal=0.01:0.4", "did you mean 'prior_scale'"),
    ("noise_std=0.01:0.4", "not a tunable setting"),
    ("steps=1:5", "not a tunable setting"),
    ("prior_scale=0.01:0.4:ln", "NAME=LOW:HIGH"),
    ("prior_scale:0.01:0.4", "NAME=LOW:HIGH"),
    ("prior_scale=a:b", "bounds must be numbers"),
    ("prior_scale=0.01:inf", "bounds must be finite"),
])
def test_bad_params_are_rejected(text, words):
    with pytest.raises(InvalidInputError, match=words):
        Param.parse(text)


def test_study_checks_its_settings():
    with pytest.raises(InvalidInputError, match="one value per `param`"):
        prior_study(init=((0.1, 0.2),))
    with pytest.raises(InvalidInputError, match="outside"):
        prior_study(init=((0.5,),))
    with pytest.raises(InvalidInputError, match="unknown objective"):
        prior_study(objective="mse")
    with pytest.raises(InvalidInputError, match="batch must be an integer >= 1"):
        prior_study(batch=0)
    with pytest.raises(InvalidInputError, match="ema must be in"):  # bounds make bad settings
        Study(params=(Param("ema", 0.5, 1.5),))
    study = Study(params=(LOG_PRIOR, Param("lr", 1e-3, 1e-2, True)), init=((0.05, 0.005),),
                  rounds=2, batch=3)
    assert (study.initial, study.budget) == (1, 7)
    assert [study.round_of(n) for n in range(7)] == [0, 1, 1, 1, 2, 2, 2]
    assert Study.from_json(study.to_json()) == study


# --- the loop on a synthetic objective -------------------------------------------------------


@pytest.mark.parametrize("batch, rounds", [(1, 6), (3, 3)])
def test_finds_the_optimum_of_a_synthetic_objective(tmp_path, batch, rounds):
    """Budget: 4 Sobol points + 6 x 1 or 3 x 3 proposals. Tolerance: the best point by GP
    mean within 0.05 decades (12 %) of the optimum 0.05 in [0.01, 0.4]."""
    study = Study(params=(LOG_PRIOR,), rounds=rounds, batch=batch)
    dataset = optimize(study, tmp_path, evaluate=bowl, figures=False)
    assert dataset.sizes["trial"] == 4 + rounds * batch
    assert list(dataset["round"].values) == [0] * 4 + sorted(list(range(1, rounds + 1)) * batch)
    best = json.loads(dataset.attrs["best"])
    assert log_error(best) < 0.05
    assert best["objective"] == pytest.approx(0, abs=0.01)  # the GP mean there
    assert best["observed"] == dataset["objective"].sel(trial=best["trial"])


def test_finds_the_optimum_in_two_dimensions(tmp_path):
    """prior_scale in [0.01, 0.4] and temperature in [0.001, 1], both log: 4 + 5 x 3 trials
    bring the best point within 0.15 decades of (0.05, 0.1) in each setting."""
    params = (LOG_PRIOR, Param("temperature", 1e-3, 1.0, log=True))
    dataset = optimize(Study(params=params, rounds=5, batch=3), tmp_path, evaluate=bowl,
                       figures=False)
    assert log_error(json.loads(dataset.attrs["best"])) < 0.15
    assert dataset["gp_mean"].dims == ("grid_prior_scale", "grid_temperature")
    assert dataset["acquisition"].shape == (40, 40)


def test_log_scale_bounds_are_respected(tmp_path):
    """Searched in log10: two of the four scrambled Sobol points lie below the geometric
    midpoint sqrt(0.01 * 0.4) = 0.063 (uniform in raw space: 14 % of the range); an objective
    that grows with the setting drives proposals to the upper bound, never past it."""
    seen = []

    def rising(params):
        seen.append(params["prior_scale"])
        return math.log10(params["prior_scale"])

    optimize(Study(params=(LOG_PRIOR,), rounds=4, batch=2), tmp_path, evaluate=rising,
             figures=False)
    assert sum(v < math.sqrt(0.01 * 0.4) for v in seen[:4]) == 2
    assert min(seen) >= 0.01 and max(seen) <= 0.4
    assert max(seen) == pytest.approx(0.4, rel=1e-3)


def test_fixed_initial_points_are_evaluated_first(tmp_path):
    init = ((0.01,), (0.05,), (0.1,), (0.4,))  # the paper's style of design
    dataset = optimize(prior_study(init=init, rounds=1, batch=1), tmp_path, evaluate=bowl,
                       figures=False)
    assert list(dataset["prior_scale"].values[:4]) == [0.01, 0.05, 0.1, 0.4]


def test_failed_trials_are_recorded_and_the_loop_goes_on(tmp_path):
    def fragile(params):
        if params["prior_scale"] > 0.2:
            raise RuntimeError("out of memory\n(on the GPU)")
        if params["prior_scale"] < 0.015:
            return math.nan
        return bowl(params)

    init = ((0.3,), (0.012,), (0.03,), (0.08,))
    dataset = optimize(prior_study(init=init, rounds=3, batch=1), tmp_path, evaluate=fragile,
                       figures=False)
    status, error = list(dataset["status"].values), list(dataset["error"].values)
    assert len(status) == 7 and status[:4] == ["failed", "failed", "ok", "ok"]
    assert error[0] == "RuntimeError: out of memory (on the GPU) (after 2 attempts)"
    assert error[1] == "diverged: the objective is nan"
    assert np.isnan(dataset["objective"].values[:2]).all()
    assert dataset.attrs["best"] != "null" and status.count("ok") >= 5


def test_every_trial_failing_is_an_error(tmp_path):
    def broken(params):
        raise ValueError("no")

    with pytest.raises(PyrodipError, match="every trial failed .first error: ValueError: no"):
        optimize(prior_study(init_points=2, rounds=1, batch=1), tmp_path, evaluate=broken,
                 figures=False)
    assert json.loads(read_dataset(tmp_path / "bo.nc").attrs["best"]) is None


class Interrupt(BaseException):
    """Stands for the kill of the process (not caught as a failed trial)."""


def test_resume_gives_the_trials_of_an_uninterrupted_run(tmp_path):
    study = prior_study(init_points=4, rounds=3, batch=2)
    whole = optimize(study, tmp_path / "whole", evaluate=bowl, figures=False)
    calls = []

    def dies_at_the_seventh(params):
        calls.append(params)
        if len(calls) == 7:
            raise Interrupt
        return bowl(params)

    with pytest.raises(Interrupt):
        optimize(study, tmp_path / "cut", evaluate=dies_at_the_seventh, figures=False)
    logged = read_trials(tmp_path / "cut")
    assert [t.status for t in logged.values()] == ["ok"] * 6 + ["running"] * 2
    with open(tmp_path / "cut" / "trials.jsonl", "a") as log:
        log.write('{"event": "finished", "tri')  # a torn line, from a crash mid-write
    calls.clear()
    resumed = resume(tmp_path / "cut", evaluate=dies_at_the_seventh, figures=False)
    assert len(calls) == 4  # trials 6 and 7 again, then 8 and 9; none of the finished ones
    np.testing.assert_array_equal(resumed["prior_scale"].values, whole["prior_scale"].values)
    np.testing.assert_array_equal(resumed["objective"].values, whole["objective"].values)
    assert resumed.attrs["best"] == whole.attrs["best"]
    with pytest.raises(InvalidInputError, match="already holds a study"):
        optimize(study, tmp_path / "cut", evaluate=bowl)


def test_resume_can_extend_the_rounds(tmp_path):
    optimize(prior_study(init_points=2, rounds=1, batch=1), tmp_path, evaluate=bowl, figures=False)
    dataset = resume(tmp_path, rounds=3, evaluate=bowl, figures=False)
    assert list(dataset["round"].values) == [0, 0, 1, 2, 3]
    assert bo.load_study(tmp_path).rounds == 3


# --- results ---------------------------------------------------------------------------------


def test_bo_nc_schema_and_figures(tmp_path):
    dataset = optimize(prior_study(init_points=3, rounds=1, batch=2), tmp_path, evaluate=bowl)
    on_disk = read_dataset(tmp_path / "bo.nc")
    for name in ("prior_scale", "objective", "status", "round", "wall_time_s", "error"):
        assert on_disk[name].dims == ("trial",)
    assert list(on_disk["trial"].values) == [0, 1, 2, 3, 4]
    for name in ("gp_mean", "gp_std", "acquisition"):
        assert on_disk[name].dims == ("grid_prior_scale",) and on_disk[name].size == 200
    grid = on_disk["grid_prior_scale"].values
    assert grid[0] == 0.01 and grid[-1] == pytest.approx(0.4)
    assert np.allclose(np.diff(np.log10(grid)), np.log10(40) / 199)  # even in log10
    best = json.loads(on_disk.attrs["best"])
    assert set(best) == {"params", "objective", "observed", "trial"}
    assert best_parameters(tmp_path / "bo.nc") == best["params"] == best_parameters(tmp_path)
    assert on_disk.attrs["objective_name"] == "psnr" and "study" in on_disk.attrs
    assert dataset.attrs["best"] == on_disk.attrs["best"]
    for name in ("gp.png", "best.png", "gp_trial003.png"):  # the proposal of trials 3 and 4
        assert (tmp_path / name).stat().st_size > 10_000
    assert check_result_set(tmp_path) == ["best.png", "bo.nc", "gp.png"]  # written as one set
    text = bo.summary(on_disk, tmp_path, 12.0)
    assert "5 trials (5 ok, 0 failed)" in text and "best (GP mean)  prior_scale=" in text


def test_best_parameters_refuses_what_is_not_a_study(tmp_path):
    with pytest.raises(MissingFileError, match="study result not found"):
        best_parameters(tmp_path / "nothing.nc")
    (tmp_path / "other.nc").write_bytes(b"not netcdf")
    with pytest.raises(InvalidInputError, match="not a pyrodip bo.nc"):
        best_parameters(tmp_path / "other.nc")


# --- objectives ------------------------------------------------------------------------------


def test_scores_of_a_fit():
    curves = {"psnr": np.array([20.0, 25.0, 24.0]), "ssim": np.array([0.5, 0.7, 0.6])}
    result = SimpleNamespace(history=SimpleNamespace(curves=curves))
    assert score(result, "psnr") == 24.0
    assert score(result, "psnr-best") == 25.0
    assert score(result, "ssim") == pytest.approx(0.6)


def test_heldout_log_likelihood_is_the_gaussian_predictive_density():
    """Residual 0.1 and sigma 0.1 with a measured std 0: log N = -0.5 (1 + log(2 pi 0.01));
    with a measured std 0.1 the variance doubles: -0.5 (0.5 + log(2 pi 0.02)).
    Only held pixels count."""
    y = torch.zeros(1, 4, 4)
    mean = torch.full((1, 4, 4), 0.1)
    mean[0, 0, 0] = 5.0  # a pixel the fit saw: ignored
    held = torch.zeros(1, 4, 4, dtype=torch.bool)
    held[0, 1:, :] = True

    def result(std_total):
        prediction = SimpleNamespace(measured_mean=mean, std_aleatoric=None,
                                     measured_std=torch.full((1, 4, 4), std_total))
        return SimpleNamespace(prediction=prediction, model=SimpleNamespace(
            likelihood=GaussianLikelihood(0.1)), observation=SimpleNamespace(observation=y))

    expected = -0.5 * (1 + math.log(2 * math.pi * 0.01))
    assert heldout_log_likelihood(result(0.0), held) == pytest.approx(expected)
    expected = -0.5 * (0.5 + math.log(2 * math.pi * 0.02))
    assert heldout_log_likelihood(result(0.1), held) == pytest.approx(expected)


def test_hold_out_hides_a_tenth_of_the_observed_pixels(phantom64):
    obs = Observation.simulate(phantom64, noise=0.1, seed=0)
    fit_obs, held = hold_out(obs, 0.1, seed=3)
    assert held.shape == (1, 64, 64) and int(held.sum()) == 410  # round(0.1 * 4096)
    known = fit_obs.operator.observed_mask[0]
    assert not bool((known & held).any()) and int(known.sum()) == 4096 - 410
    assert torch.equal(fit_obs.observation, obs.observation)
    assert torch.equal(hold_out(obs, 0.1, seed=3)[1], held)  # seeded
    mask = torch.rand(64, 64, generator=torch.Generator().manual_seed(0)) > 0.5
    inpaint = Observation.simulate(phantom64, noise=0.1, operator=Mask(mask))
    fit_obs, held = hold_out(inpaint, 0.1)
    assert int(held.sum()) == round(0.1 * int(mask.sum()))
    assert not bool((held[0] & ~mask).any())  # only pixels that were observed
    assert int(fit_obs.operator.observed_mask.sum()) == int(mask.sum()) - int(held.sum())
    superres = Observation.simulate(phantom64, operator=Downsample(2))
    fit_obs, held = hold_out(superres, 0.1)  # low-resolution pixels
    assert held.shape == (1, 32, 32) and int(held.sum()) == round(0.1 * 32 * 32)
    assert int(fit_obs.operator.observed_mask.sum()) == 32 * 32 - int(held.sum())
    assert fit_obs.operator(phantom64[None]).shape == (1, 1, 32, 32)


def test_fit_objective_runs_a_tiny_fit(tiny_png):
    config = RunConfig(image=str(tiny_png), steps=3, samples=2)
    psnr = FitObjective(config, "psnr")({"prior_scale": 0.2})
    heldout = FitObjective(config, "heldout")({"prior_scale": 0.2})
    assert 5 < psnr < 40 and math.isfinite(heldout) and heldout < 2


def test_a_trial_can_fit_an_ensemble():
    config = RunConfig(image="sample:phantom", size=32, steps=5, samples=2)
    one = FitObjective(config, "heldout")({"prior_scale": 0.2})
    pair = FitObjective(config.replace(ensemble=2), "heldout")({"prior_scale": 0.2})
    assert math.isfinite(pair) and pair != one  # the mixture of two fits scores otherwise


class StopAfter:
    """A fit's ``stop``, asked once a step: set at the ``steps``-th step (never with None)."""

    def __init__(self, steps: int | None = None) -> None:
        self.steps, self.asked = steps, 0

    def is_set(self) -> bool:
        self.asked += 1
        return self.asked == self.steps


def test_a_stopped_trial_resumes_from_its_checkpoint_to_the_uninterrupted_value(tmp_path):
    objective = FitObjective(RunConfig(image="sample:phantom", size=32, steps=12, samples=2))
    params = {"prior_scale": 0.05}
    whole = objective(params)
    checkpoint = Checkpointing(tmp_path / "trial000.checkpoint.pt")
    with pytest.raises(Interrupted, match="interrupted at step 7; state saved"):
        objective.evaluate(params, checkpoint, stop=StopAfter(7))  # as a preempted worker
    counted = StopAfter()
    assert objective.evaluate(params, checkpoint, stop=counted) == (whole, [7])
    assert counted.asked == 12 - 7  # the steps after the checkpoint, none again
    assert not checkpoint.path.exists()
    # a checkpoint of other settings (another study's trial) is not resumed, but removed
    with pytest.raises(Interrupted):
        objective.evaluate({"prior_scale": 0.2}, checkpoint, stop=StopAfter(3))
    assert objective.evaluate(params, checkpoint) == (whole, [])
    assert not checkpoint.path.exists()


def test_a_study_resumes_its_interrupted_trial_from_the_checkpoint(tmp_path, monkeypatch):
    """A study killed mid-trial (its fit's checkpoint left in the folder) resumes that trial
    from the checkpoint; the trial log says at which step, and the study equals an
    uninterrupted one."""
    config = RunConfig(image="sample:phantom", size=32, steps=12, samples=2)
    study = prior_study(init=((0.05,), (0.2,)), rounds=0, config=config)
    whole = optimize(study, tmp_path / "whole", figures=False)
    folder = tmp_path / "cut"
    bo.create_study(study, folder)
    bo.append_record(folder, {"event": "submitted", "trial": 0, "round": 0,
                              "params": {"prior_scale": 0.05}})
    with pytest.raises(Interrupted):  # the trial's fit when the study was killed
        FitObjective(config).evaluate({"prior_scale": 0.05}, Checkpointing(
            folder / "trial000.checkpoint.pt"), stop=StopAfter(5))
    resumed = resume(folder, figures=False)
    assert [t.resumed_at for t in read_trials(folder).values()] == [[5], []]
    for name in ("objective", "status", "prior_scale"):
        np.testing.assert_array_equal(resumed[name], whole[name])
    assert not list(folder.glob("*.checkpoint.pt"))


@pytest.mark.parametrize("changes, objective, words", [
    ({"noise": "poisson"}, "heldout", "scores Gaussian noise"),
    ({"observed": True}, "psnr", "needs the truth"),
])
def test_fit_objective_refuses_what_it_cannot_score(tiny_png, changes, objective, words):
    config = RunConfig(image=str(tiny_png), **changes)
    with pytest.raises(InvalidInputError, match=words):
        FitObjective(config, objective).check()


# --- command line ----------------------------------------------------------------------------


@pytest.mark.parametrize("args, words", [
    (["--param", "prior_scale=0.4:0.01"], "low 0.4 must be below high 0.01"),
    (["--param", "prior_scale=0:1:log"], "a log scale needs low > 0"),
    (["--objective", "heldout", "--noise", "poisson"], "scores Gaussian noise"),
    (["--init", "0.05,0.1"], "one value per --param"),
    (["--init", "x"], "--init takes numbers"),
    (["--batch", "0"], "batch must be an integer >= 1"),
    (["--retry-failed"], "--retry-failed reruns the failed trials of a study: add --resume DIR"),
    (["--checkpoint-every", "0"], "--checkpoint-every must be a positive integer, got 0"),
])
def test_bo_refuses_bad_options_in_one_line(tiny_png, tmp_path, capsys, args, words):
    code = exit_code(["bo", "--image", str(tiny_png), "--out", str(tmp_path / "s"), *args])
    err = capsys.readouterr().err.strip()
    assert code == 2 and words in err and len(err.splitlines()) == 1
    assert not (tmp_path / "s" / "study.json").exists()


def test_bo_resume_refuses_new_settings(tmp_path, capsys):
    optimize(prior_study(init_points=2, rounds=0), tmp_path, evaluate=bowl, figures=False)
    assert exit_code(["bo", "--resume", str(tmp_path), "--steps", "5"]) == 2
    assert "drop --steps" in capsys.readouterr().err
    assert exit_code(["bo", "--resume", str(tmp_path / "none")]) == 2
    assert "no study in" in capsys.readouterr().err


def test_run_prior_from_takes_the_best_but_options_win(tiny_png, tmp_path, capsys):
    optimize(prior_study(init_points=3, rounds=0), tmp_path / "study", evaluate=bowl, figures=False)
    best = best_parameters(tmp_path / "study")["prior_scale"]
    fast = ["--image", str(tiny_png), "--steps", "3", "--samples", "2", "--quiet"]
    assert main(["run", "--prior-from", str(tmp_path / "study" / "bo.nc"), *fast,
                 "--out", str(tmp_path / "a")]) == 0
    config = json.loads(read_dataset(tmp_path / "a" / "result.nc").attrs["config"])
    assert config["prior_scale"] == best
    assert f"prior_scale={best:.4g}" in capsys.readouterr().err
    assert main(["run", "--prior-from", str(tmp_path / "study"), "--prior-scale", "0.3", *fast,
                 "--out", str(tmp_path / "b")]) == 0
    config = json.loads(read_dataset(tmp_path / "b" / "result.nc").attrs["config"])
    assert config["prior_scale"] == 0.3


@pytest.mark.slow
def test_bo_end_to_end_on_a_local_cluster(tiny_png, tmp_path, capsys):
    """2 initial points, 2 rounds of 2, on 2 worker processes (about a minute here)."""
    out = tmp_path / "study"
    args = ["bo", "--image", str(tiny_png), "--param", "prior_scale=0.01:0.4:log",
            "--init-points", "2", "--rounds", "2", "--batch", "2", "--steps", "5",
            "--samples", "2", "--net", "small", "--workers", "2", "--out", str(out), "--quiet"]
    assert main(args) == 0
    dataset = read_dataset(out / "bo.nc")
    assert dataset.sizes["trial"] == 6 and set(dataset["status"].values) == {"ok"}
    assert list(dataset["round"].values) == [0, 0, 1, 1, 2, 2]
    assert (dataset["wall_time_s"] > 0).all() and dataset["gp_mean"].size == 200
    assert 0.01 <= best_parameters(out)["prior_scale"] <= 0.4
    for name in ("gp.png", "best.png", "study.json", "trials.jsonl"):
        assert (out / name).stat().st_size > 0
    assert list(out.glob("gp_trial*.png"))
    assert "6 trials (6 ok, 0 failed)" in capsys.readouterr().out
    assert main(["bo", "--resume", str(out), "--workers", "1", "--quiet"]) == 0  # nothing left
    assert read_dataset(out / "bo.nc").sizes["trial"] == 6


def test_default_search_is_the_temperature_and_the_prior_scale_where_it_acts():
    assert [p.name for p in Study().params] == ["temperature"]  # BatchNorm: sigma_p is inert
    scaled = Study(config=RunConfig(normalization="scaled"))
    assert [(p.name, p.log) for p in scaled.params] == [("temperature", True),
                                                         ("prior_scale", True)]


def test_batched_study_fits_each_round_together(tiny_png, tmp_path, monkeypatch):
    config = RunConfig(image=str(tiny_png), steps=3, samples=2)
    study = Study(params=(LOG_PRIOR, Param("temperature", 0.01, 1.0, log=True)), config=config,
                  init_points=3, rounds=1, batch=2, batched=True)
    assert study.fits_at_once == 3
    calls = []
    scores = FitObjective.scores
    monkeypatch.setattr(FitObjective, "scores",
                        lambda self, trials: calls.append(len(trials)) or scores(self, trials))
    dataset = optimize(study, tmp_path / "s", figures=False)
    assert calls == [3, 2]  # the initial design, then the round's candidates: one batch each
    assert set(dataset["status"].values) == {"ok"}
    times = dataset["wall_time_s"].values
    assert times[0] == times[1] == times[2] and times[3] == times[4]  # a batch's wall time
    # a trial of the batch scores what the same trial alone scores (3 steps: to rounding)
    params = read_trials(tmp_path / "s")[3].params
    alone = FitObjective(config, "psnr")(params)
    assert dataset["objective"].values[3] == pytest.approx(alone, abs=0.05)


def test_batched_study_tunes_only_what_a_batch_may_vary(tiny_png):
    with pytest.raises(InvalidInputError, match="tunes lr"):
        Study(params=(Param("lr", 0.001, 0.1, log=True),), batched=True)
    with pytest.raises(InvalidInputError, match="SGLD"):
        Study(params=(LOG_PRIOR,), config=RunConfig(method="sgld"), batched=True)
