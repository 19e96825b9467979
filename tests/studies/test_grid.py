"""The run grid (pyrodip.studies.grid): resume, failure records, hooks, batching."""

import dataclasses

import pytest

from pyrodip.errors import InvalidInputError
from pyrodip.run.config import RunConfig
from pyrodip.run.observe import prepare_observation
from pyrodip.studies.grid import (
    GridRun,
    Hooks,
    batch_key,
    batches,
    check_batch,
    run_grid,
    run_metrics,
)

FAST = RunConfig(image="sample:phantom", method="dip", size=32, steps=3, samples=2)


def grid(seeds=(0, 1), **settings) -> list[GridRun]:
    return [GridRun(f"run{seed}", FAST.replace(seed=seed, **settings)) for seed in seeds]


def failing_at_seed_1(config: RunConfig):
    if config.seed == 1:
        raise MemoryError("out of memory")
    return prepare_observation(config)


def clipped(config: RunConfig):
    obs = prepare_observation(config)
    return dataclasses.replace(obs, observation=obs.observation.clamp(0.25, 0.75))


def observation_range(result, observation) -> dict:
    return {"low": float(observation.observation.min()), "steps": len(result.history.steps)}


def test_runs_on_disk_are_kept_and_other_settings_refused(tmp_path):
    outcome = run_grid(grid(), tmp_path, progress=False)
    assert list(outcome.datasets) == ["run0", "run1"] and outcome.failures == {}
    assert outcome.datasets["run1"].attrs["seed"] == 1
    before = (tmp_path / "runs" / "run0.nc").stat().st_mtime_ns
    again = run_grid(grid(), tmp_path, progress=False)
    assert (tmp_path / "runs" / "run0.nc").stat().st_mtime_ns == before
    assert again.datasets["run0"].identical(outcome.datasets["run0"])
    with pytest.raises(InvalidInputError, match="run0.nc was run with other settings"):
        run_grid(grid(steps=4), tmp_path, progress=False)


def test_a_failed_run_is_recorded_skipped_and_retried_on_request(tmp_path, capsys):
    outcome = run_grid(grid(), tmp_path, hooks=Hooks(observe=failing_at_seed_1), progress=False)
    assert list(outcome.datasets) == ["run0"]
    assert outcome.failures == {"run1": "MemoryError: out of memory"}
    assert "run1 failed (MemoryError: out of memory); running it again" in capsys.readouterr().err
    assert (tmp_path / "runs" / "run1.failed.json").exists()
    # recorded: not run again (the hook would fail again) until asked to
    kept = run_grid(grid(), tmp_path, hooks=Hooks(observe=failing_at_seed_1), progress=False)
    assert kept.failures == outcome.failures and capsys.readouterr().err == ""
    retried = run_grid(grid(), tmp_path, retry_failed=True, progress=False)
    assert list(retried.datasets) == ["run0", "run1"] and retried.failures == {}
    assert not (tmp_path / "runs" / "run1.failed.json").exists()


def test_a_run_whose_file_is_moved_away_during_the_study_is_reported_not_raised(tmp_path):
    def remove_run0(config: RunConfig):
        if config.seed == 1:
            (tmp_path / "runs" / "run0.nc").unlink()
        return prepare_observation(config)

    outcome = run_grid(grid(), tmp_path, hooks=Hooks(observe=remove_run0), progress=False)
    assert list(outcome.datasets) == ["run1"]
    assert "run0.nc is gone (moved or deleted while the study ran)" in outcome.failures["run0"]
    again = run_grid(grid(), tmp_path, progress=False)  # fitted again, as the message says
    assert list(again.datasets) == ["run0", "run1"] and again.failures == {}


def test_hooks_give_the_observation_and_the_metrics(tmp_path):
    hooks = Hooks(observe=clipped, metrics=observation_range, baselines=False)
    run = run_grid(grid(seeds=[0]), tmp_path, hooks=hooks, progress=False).datasets["run0"]
    assert float(run["observation"].min()) == 0.25 and float(run["observation"].max()) == 0.75
    assert run_metrics(run) == {"low": pytest.approx(float(run["observation"].min())),
                                "steps": 3}
    assert "baselines" not in run and "baseline" not in run


def test_runs_differing_in_seed_or_slice_are_batched_together():
    assert batch_key(FAST.replace(seed=1, slice_index=2)) == batch_key(FAST)
    assert batch_key(FAST.replace(steps=4)) != batch_key(FAST)
    runs = [GridRun("a0", FAST), GridRun("b0", FAST.replace(lr=0.5)),
            GridRun("a1", FAST.replace(seed=1)), GridRun("a2", FAST.replace(seed=2)),
            GridRun("s0", FAST.replace(method="sgld")), GridRun("s1", FAST.replace(method="sgld",
                                                                               seed=1))]
    groups = [[run.name for run in group] for group in batches(runs, 2)]
    assert groups == [["a0", "a1"], ["a2"], ["b0"], ["s0"], ["s1"]]  # SGLD: alone
    assert check_batch(runs, 5) == 3  # at most the runs of one kind
    assert check_batch(runs, 1) == 1
    with pytest.raises(InvalidInputError, match="batch must be a positive integer"):
        check_batch(runs, 0)


def test_a_batched_grid_writes_every_run(tmp_path):
    outcome = run_grid(grid(), tmp_path, batch=2, progress=False)
    assert [run.attrs["seed"] for run in outcome.datasets.values()] == [0, 1]


def test_run_names_are_unique():
    with pytest.raises(InvalidInputError, match="two runs of the grid are named 'run0'"):
        run_grid(grid(seeds=[0, 0]), "unused")
