"""The resumable run grid every study fits on: named runs of a :class:`RunConfig` each, written
to ``OUT/runs/NAME.nc``.

:func:`run_grid` fits the runs not yet on disk (a run already there with the same settings is
kept, one with other settings refused), on an executor (default: one after another in this
process; :func:`pyrodip.studies.execution.dask_executor` runs them in parallel, locally or on
a cluster), with one progress bar. A run that fails twice (it raised, ran out of memory, or its
worker died: :class:`~pyrodip.studies.execution.Retrying`) is recorded in
``OUT/runs/NAME.failed.json`` and skipped until ``retry_failed``; a single fit saves a
checkpoint (``NAME.checkpoint.pt``) and resumes from it when it was cut short. Runs that differ
only in their seed or slice (:func:`batch_key`) are fitted up to ``batch`` at a time as one
batched computation, where their method allows it. :class:`Hooks` give a study its own
observation and metrics per run.

>>> [run.name for run in batches([GridRun("a", RunConfig(seed=0)),
...                               GridRun("b", RunConfig(seed=1, steps=9)),
...                               GridRun("c", RunConfig(seed=2))], 2)[0]]
['a', 'c']
"""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import xarray as xr
from tqdm.auto import tqdm

from ..errors import InvalidInputError
from ..infer.fitting import FitResult
from ..physics.observation import Observation
from ..plugins import load_plugins
from ..run.config import RunConfig
from ..validation import positive_int
from .execution import Executor, Failed, Retrying, SyncExecutor


@dataclass(frozen=True)
class GridRun:
    """One run of a study: its ``name`` (unique in the grid: the file names under
    ``OUT/runs``) and its settings."""

    name: str
    config: RunConfig


@dataclass(frozen=True)
class Hooks:
    """What a study adds to each run; module-level functions, since they go to the workers.

    ``observe``: the run's observation (default :func:`pyrodip.run.observe.prepare_observation`);
    ``metrics``: a JSON-able dict of the study's own values, from the fit and its observation,
    kept in the run's dataset (:func:`run_metrics`); ``baselines``: whether each run's dataset
    holds the task's classical baselines.
    """

    observe: Callable[[RunConfig], Observation] | None = None
    metrics: Callable[[FitResult, Observation], dict] | None = None
    baselines: bool = True


@dataclass
class GridOutcome:
    """What :func:`run_grid` gives: the finished runs' datasets and the failed runs' errors,
    each by run name in the grid's order."""

    datasets: dict[str, xr.Dataset]
    failures: dict[str, str]


def run_grid(
    runs: list[GridRun], out: str | Path, *, hooks: Hooks = Hooks(),
    executor: Executor | None = None, batch: int | str = 1, retry_failed: bool = False,
    checkpoint_every: int | None = None, progress: bool = True,
    stop: threading.Event | None = None, desc: str = "study", folder: str = "runs",
) -> GridOutcome:
    """Fit every run of ``runs`` that ``out/folder`` lacks (see the module docstring) and read
    them all back. ``batch``: a positive integer or ``"auto"`` (:func:`check_batch`). A single
    fit in this process saves a checkpoint every ``checkpoint_every`` steps (default every 5
    minutes); ``stop`` interrupts it as in :func:`pyrodip.fit`.

    >>> run_grid([GridRun("a", RunConfig()), GridRun("a", RunConfig(seed=1))], "out")
    Traceback (most recent call last):
    ...
    pyrodip.errors.InvalidInputError: two runs of the grid are named 'a': give each its own name
    """
    from ..run.results import read_dataset

    names = [run.name for run in runs]
    twice = next((name for name in names if names.count(name) > 1), None)
    if twice is not None:
        raise InvalidInputError(
            f"two runs of the grid are named {twice!r}: give each its own name"
        )
    batch = check_batch(runs, batch, hooks.observe)
    runs_dir = Path(out).absolute() / folder  # workers may run in another folder
    runs_dir.mkdir(parents=True, exist_ok=True)
    paths = {run.name: runs_dir / f"{run.name}.nc" for run in runs}
    if retry_failed:
        for path in paths.values():
            failure_path(path).unlink(missing_ok=True)
    done = {run.name: _read_run(paths[run.name], run.config) for run in runs
            if paths[run.name].exists()}
    missing = [run for run in runs
               if run.name not in done and not failure_path(paths[run.name]).exists()]
    tasks = [([run.config for run in group], [paths[run.name] for run in group])
             for group in batches(missing, batch)]
    failed = _run_tasks(tasks, hooks, executor, progress, len(runs), desc, checkpoint_every, stop)
    for path, failure in failed.items():
        _record_failure(path, failure)
    outcome = GridOutcome({}, {})
    for run in runs:
        path = paths[run.name]
        if run.name in done:
            outcome.datasets[run.name] = done[run.name]
        elif path.exists():
            outcome.datasets[run.name] = read_dataset(path)
        elif failure_path(path).exists():
            outcome.failures[run.name] = json.loads(failure_path(path).read_text())["error"]
        else:
            outcome.failures[run.name] = (f"{path} is gone (moved or deleted while the study "
                                          "ran): run the study again to fit it")
    return outcome


def run_metrics(dataset: xr.Dataset) -> dict:
    """The values the :class:`Hooks` ``metrics`` gave for the run of ``dataset`` (``{}``
    without).

    >>> run_metrics(xr.Dataset(attrs={"metrics": '{"gain": 1.5}'})), run_metrics(xr.Dataset())
    ({'gain': 1.5}, {})
    """
    return json.loads(dataset.attrs.get("metrics", "{}"))


def _read_run(path: Path, config: RunConfig) -> xr.Dataset:
    """The run on disk at ``path``, refused when it was fitted with other settings."""
    from ..run.results import read_dataset

    dataset = read_dataset(path)
    if dataset.attrs.get("config") != config.to_json():
        raise InvalidInputError(
            f"{path} was run with other settings than the study now asks for: use another "
            "`out` folder, or delete it to run it again"
        )
    return dataset


def failure_path(path: Path) -> Path:
    """Where the failure of the run whose dataset goes to ``path`` is recorded.

    >>> failure_path(Path("runs/ct-dip-seed0.nc")).name
    'ct-dip-seed0.failed.json'
    """
    return path.with_suffix(".failed.json")


def checkpoint_path(path: Path) -> Path:
    """Where the fit of the run whose dataset goes to ``path`` keeps its checkpoint.

    >>> checkpoint_path(Path("runs/ct-dip-seed0.nc")).name
    'ct-dip-seed0.checkpoint.pt'
    """
    return path.with_suffix(".checkpoint.pt")


def _record_failure(path: Path, failed: Failed) -> None:
    from ..io.files import atomic_path

    with atomic_path(failure_path(path)) as tmp:
        tmp.write_text(json.dumps({"error": failed.error, "attempts": failed.attempts}))


def _run_tasks(
    tasks: list[tuple[list[RunConfig], list[Path]]], hooks: Hooks, executor: Executor | None,
    progress: bool, total: int, desc: str, checkpoint_every: int | None,
    stop: threading.Event | None,
) -> dict[Path, Failed]:
    """Fit each task's runs (:func:`fit_runs`) on ``executor`` (default: in this process, one
    after another), with one progress bar over the ``total`` runs of which the tasks hold the
    missing ones (a single fit in this process shows its own bar instead). Returns the runs
    whose task failed on every attempt, by path, with the failure."""
    pending = sum(len(configs) for configs, _ in tasks)
    own_bar = executor is None and pending == 1

    def retried(task) -> None:
        names = ", ".join(Path(p).stem for p in task.args[1])
        tqdm.write(f"pyrodip: {names} failed ({task.errors[-1]}); running it again",
                   file=sys.stderr)

    failures: dict[Path, Failed] = {}
    runner = Retrying(executor or SyncExecutor(), on_retry=retried)
    queue = list(tasks)
    with tqdm(total=total, initial=total - pending, desc=desc, unit="run",
              disable=not progress or own_bar) as bar:
        while queue or runner.busy:
            # In this process one at a time (each finishes before the next starts), else all.
            for configs, paths in queue if executor is not None else queue[:1]:
                runner.submit(fit_runs, configs, paths, progress and own_bar, checkpoint_every,
                              stop if executor is None else None, hooks)
            queue = [] if executor is not None else queue[1:]
            for task in runner.next_completed():
                if isinstance(task.outcome, Failed):
                    failures.update((Path(path), task.outcome) for path in task.args[1])
                bar.update(len(task.args[1]))
    return failures


def batch_key(config: RunConfig) -> str:
    """What runs fitted in one batch share: every setting but the seed and the slice.

    >>> batch_key(RunConfig(seed=3)) == batch_key(RunConfig(seed=4))
    True
    """
    return config.replace(seed=0, slice_index=None).to_json()


def batches(runs: list[GridRun], size: int) -> list[list[GridRun]]:
    """``runs`` in groups of at most ``size`` of the same :func:`batch_key` (a run whose
    method cannot be batched alone), in the runs' order."""
    from ..run.fit import batchable

    groups: dict[str, list[GridRun]] = {}
    for run in runs:
        key = batch_key(run.config) if batchable(run.config) is None else f"run {run.name}"
        groups.setdefault(key, []).append(run)
    return [members[start : start + size] for members in groups.values()
            for start in range(0, len(members), size)]


def check_batch(runs: list[GridRun], batch: int | str,
                observe: Callable[[RunConfig], Observation] | None = None) -> int:
    """The batch size for ``runs``: ``batch``, checked before any fit against the memory
    estimate, or for ``"auto"`` the largest the estimate admits on a GPU (1 on a CPU, where a
    batch pays little: docs/performance.md), at most the runs of one :func:`batch_key`.
    Refuses a ``batch`` that is neither a positive integer nor ``"auto"``, or that will not fit.
    ``observe`` makes the observation whose shape the estimate takes (default
    :func:`pyrodip.run.observe.prepare_observation`).

    >>> check_batch([GridRun(f"s{seed}", RunConfig(seed=seed)) for seed in (0, 1)], "auto")
    1
    """
    from ..run.fit import batchable
    from ..run.observe import prepare_observation

    if batch != "auto":
        positive_int("batch", batch)
    groups: dict[str, list[RunConfig]] = {}
    for run in runs:
        if batchable(run.config) is None:
            groups.setdefault(batch_key(run.config), []).append(run.config)
    most = max(map(len, groups.values()), default=1)
    if batch != "auto" and min(batch, most) == 1:
        return 1
    fits = most
    for configs in groups.values():
        config = configs[0]
        if batch == "auto" and config.device == "cpu":
            return 1
        shape = (observe or prepare_observation)(config).image_shape
        fits = min(fits, batch_size(config, shape, batch, most))
    return fits if groups else 1


def batch_size(config: RunConfig, shape: tuple[int, int, int], batch: int | str,
               most: int) -> int:
    """How many fits of ``config`` to images shaped ``shape`` to batch, at most ``most``:
    ``batch`` (a positive integer), checked against the memory estimate, or for ``"auto"``
    the most the estimate admits on a GPU (1 on a CPU, where a batch pays little:
    docs/performance.md).

    >>> batch_size(RunConfig(), (1, 64, 64), "auto", 8), batch_size(RunConfig(), (1, 64, 64), 3, 2)
    (1, 2)
    """
    from ..run.resources import available_memory, check_memory, estimate_memory

    if batch == "auto":
        available = available_memory(config.device)
        if config.device == "cpu" or available is None:
            return 1
        return min(most, max(1, available // estimate_memory(config, shape).total))
    fits = min(positive_int("batch", batch), most)
    if fits > 1:
        check_memory(config, shape, fits=fits)
    return fits


def fit_run(config: RunConfig, path: str | Path, progress: bool = False) -> Path:
    """Fit one run and write its dataset to ``path`` (whole or not at all). On a worker, the
    config's plugins are imported first (unpickling it does not)."""
    return fit_runs([config], [path], progress)[0]


def fit_runs(configs: list[RunConfig], paths: list[str | Path], progress: bool = False,
             checkpoint_every: int | None = None, stop: threading.Event | None = None,
             hooks: Hooks = Hooks()) -> list[Path]:
    """Fit runs, more than one as a batch (:func:`pyrodip.fit_batch`), and write each dataset
    to its path (whole or not at all), with what ``hooks`` add. A single fit saves a
    checkpoint beside its path (:func:`checkpoint_path`) every ``checkpoint_every`` steps
    (default every 5 minutes) and resumes from it when it was cut short; ``stop`` interrupts
    it (on a Dask worker: the worker being stopped,
    :class:`~pyrodip.studies.execution.WorkerStopping`)."""
    from ..infer.checkpoints import Checkpointing
    from ..run.fit import fit, fit_batch
    from ..run.observe import prepare_observation
    from ..run.results import to_dataset, write_dataset
    from .execution import WorkerStopping

    for config in configs:
        load_plugins(config.plugins)
    observations = [(hooks.observe or prepare_observation)(config) for config in configs]
    paths = [Path(path) for path in paths]
    if len(configs) == 1:
        checkpoint = Checkpointing(checkpoint_path(paths[0]), every_steps=checkpoint_every)
        resume = _resumable(checkpoint.path, configs[0])
        results = [fit(observations[0], configs[0], progress=progress, checkpoint=checkpoint,
                       resume=resume, stop=stop or WorkerStopping.here())]
    else:
        results = fit_batch(observations, configs, progress=progress)
    for result, observation, path in zip(results, observations, paths, strict=True):
        dataset = to_dataset(result, baseline=hooks.baselines)
        if hooks.metrics is not None:
            dataset.attrs["metrics"] = json.dumps(hooks.metrics(result, observation))
        write_dataset(dataset, path)
        checkpoint_path(path).unlink(missing_ok=True)
    return paths


def _resumable(path: Path, config: RunConfig) -> bool:
    """Whether ``path`` holds a checkpoint of a fit of ``config`` (one of other settings, left
    by an earlier study in the folder, is removed: the fit starts afresh)."""
    from ..infer.checkpoints import read_checkpoint

    if not path.exists():
        return False
    if read_checkpoint(path)["config"] == config.to_json():
        return True
    path.unlink()
    return False
