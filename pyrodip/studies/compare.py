"""Comparison studies (``pyrodip compare``): methods x images x seeds from one TOML file,
stacked into one dataset.

A study file::

    methods = ["dip", "mfvi"]
    images = ["../shared/data/denoising/oct.png"]   # paths or sample:NAME
    seeds = [0, 1, 2]

    [settings]          # RunConfig keys shared by every run
    task = "denoise"
    size = 128
    steps = 3000

    [method.dip]        # RunConfig keys for one method's runs only
    lr = 0.01

:func:`run_comparison` fits every combination (runs already on disk are kept, so an interrupted
study continues where it stopped; a fit that was cut short resumes from its checkpoint), writes
each run's dataset to ``runs/``, and stacks them with :func:`stack` into one dataset with dims
``method``, ``image``, ``seed`` (curves over ``step``; runs of different lengths or sizes padded
with NaN); :func:`summary_table` makes the table. A run that fails twice (it raised, ran out of
memory, or its worker died) is recorded as failed in ``runs/NAME.failed.json`` and the study
goes on; its ``status`` is ``failed`` in the dataset, and ``retry_failed`` runs it again.

>>> comparison = Comparison(methods=["dip", "mfvi"], images=["sample:phantom"], seeds=[0, 1])
>>> tuple((method, seed) for method, _, seed, _ in comparison.runs())
(('dip', 0), ('dip', 1), ('mfvi', 0), ('mfvi', 1))
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import xarray as xr
from tqdm.auto import tqdm

from ..errors import InvalidInputError, MissingFileError, PyrodipError
from ..infer.methods import METHODS
from ..physics.masks import names_a_mask_file
from ..plugins import load_plugins
from ..run.config import RunConfig, read_toml
from ..validation import positive_int
from .execution import Executor, Failed, Retrying, SyncExecutor

#: Scalar attributes of a run that become variables over (method, image, seed), by the name
#: they take there (the predictive mean's ``psnr`` and ``ssim`` would clash with the curves).
RUN_SCALARS = {
    "psnr": "mean_psnr", "ssim": "mean_ssim", "uce": "uce", "coverage_68": "coverage_68",
    "coverage_95": "coverage_95", "uce_raw": "uce_raw", "coverage_68_raw": "coverage_68_raw",
    "coverage_95_raw": "coverage_95_raw", "calibration_scale": "calibration_scale",
    "ause": "ause", "wall_time_s": "wall_time_s",
    "mean_std_total": "mean_std_total", "baseline_psnr": "baseline_psnr",
    "psnr_missing": "psnr_missing",
}
STUDY_KEYS = ("methods", "images", "seeds", "settings", "method")


@dataclass
class Comparison:
    """Which runs a comparison makes: every method on every image with every seed."""

    methods: list[str]
    images: list[str]
    seeds: list[int] = field(default_factory=lambda: [0])
    settings: dict = field(default_factory=dict)
    method_settings: dict[str, dict] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for key in ("methods", "images", "seeds"):
            if not getattr(self, key):
                raise InvalidInputError(f"the study lists no {key}: give at least one")
        for table in (self.settings, *self.method_settings.values()):  # they may add methods
            plugins = table.get("plugins", [])
            load_plugins([plugins] if isinstance(plugins, str) else plugins)
        for method in [*self.methods, *self.method_settings]:
            if method not in METHODS:
                raise InvalidInputError(
                    f"unknown method {method!r} in the study: choose from {', '.join(METHODS)}"
                )
        if len(set(map(image_label, self.images))) != len(self.images):
            raise InvalidInputError("two study images share a file name: rename one")
        list(self.runs())  # every run's settings validated before any fit

    @classmethod
    def from_toml(cls, path: str | Path) -> Comparison:
        path = Path(path)
        spec = read_toml(path, "study file")
        unknown = sorted(set(spec) - set(STUDY_KEYS))
        if unknown:
            raise InvalidInputError(
                f"unknown key {unknown[0]!r} in study file {path} (valid: {', '.join(STUDY_KEYS)}"
                "; run settings go under [settings])"
            )
        settings = dict(spec.get("settings", {}))
        method_settings = {name: dict(table) for name, table in spec.get("method", {}).items()}
        for table in (settings, *method_settings.values()):
            if isinstance(table.get("mask"), str) and names_a_mask_file(table["mask"]):
                table["mask"] = _relative_to(path.parent, table["mask"])
        return cls(
            methods=list(spec.get("methods", [])),
            images=[_relative_to(path.parent, image) for image in spec.get("images", [])],
            seeds=list(spec.get("seeds", [0])),
            settings=settings,
            method_settings=method_settings,
        )

    def with_settings(self, **settings: object) -> Comparison:
        """The same study with ``settings`` applied to every run, over its own.

        >>> study = Comparison(methods=["dip"], images=["sample:ct"], method_settings={"dip":
        ...                    {"steps": 500}}).with_settings(steps=20)
        >>> next(study.runs())[3].steps
        20
        """
        axes = sorted(set(settings) & {"image", "method", "seed"})
        if axes:
            raise InvalidInputError(
                f"{axes[0]} is an axis of the study, not a run setting: list it under "
                f"{axes[0]}s in the study file"
            )
        methods = {name: {**table, **settings} for name, table in self.method_settings.items()}
        return dataclasses.replace(
            self, settings={**self.settings, **settings}, method_settings=methods
        )

    def runs(self) -> Iterator[tuple[str, str, int, RunConfig]]:
        """(method, image, seed, config) of every run, methods outermost."""
        for method in self.methods:
            for image in self.images:
                for seed in self.seeds:
                    settings = {**self.settings, **self.method_settings.get(method, {})}
                    settings.update(method=method, image=image, seed=seed)
                    yield method, image, seed, RunConfig().replace(**settings)


def image_label(image: str) -> str:
    """The name an image goes by in a study: its file name without suffix, or the sample's.

    >>> image_label("../shared/data/denoising/oct.png"), image_label("sample:ct")
    ('oct', 'ct')
    """
    return image.removeprefix("sample:") if image.startswith("sample:") else Path(image).stem


def _relative_to(folder: Path, image: str) -> str:
    """Image and mask paths in a study file are relative to the file's folder."""
    if image.startswith("sample:") or Path(image).is_absolute():
        return image
    return os.path.normpath(folder / image)


def run_comparison(
    comparison: Comparison, out: str | Path, progress: bool = True,
    executor: Executor | None = None, batch: int | str = 1, retry_failed: bool = False,
    checkpoint_every: int | None = None, stop: threading.Event | None = None,
) -> xr.Dataset:
    """Fit every run of ``comparison`` (skipping runs already written to ``out/runs``, and runs
    recorded as failed unless ``retry_failed``), then stack them into ``out/comparison.nc`` and
    return that dataset.

    ``executor`` runs the fits (default: one after another in this process); with
    :func:`pyrodip.studies.execution.dask_executor` they run in parallel, locally or on a cluster.
    ``batch``: runs that differ only in their seed are fitted up to ``batch`` at a time as one
    batched computation (:func:`pyrodip.fit_batch`; one executor task per batch), where their
    method allows it (:func:`~pyrodip.run.fit.batchable`); ``"auto"``: see
    :func:`check_batch`. A single fit saves a checkpoint beside its run every
    ``checkpoint_every`` steps (default every 5 minutes); ``stop`` (in this process) interrupts
    it as in :func:`pyrodip.fit`.
    """
    from ..run.results import read_dataset, write_dataset

    batch = check_batch(comparison, batch)
    runs_dir = Path(out).absolute() / "runs"  # workers may run in another folder
    runs_dir.mkdir(parents=True, exist_ok=True)
    runs = [
        (method, image, seed, config, runs_dir / f"{image_label(image)}-{method}-seed{seed}.nc")
        for method, image, seed, config in comparison.runs()
    ]
    if retry_failed:
        for *_, path in runs:
            failure_path(path).unlink(missing_ok=True)
    missing = [(config, path) for *_, config, path in runs
               if not path.exists() and not failure_path(path).exists()]
    failures = run_tasks(_batches(missing, batch), executor, progress, len(runs), "comparison",
                         "run", checkpoint_every, stop)
    for path, failed in failures.items():
        _record_failure(path, failed)
    datasets, errors = {}, {}
    for method, image, seed, config, path in runs:
        key = method, image_label(image), seed
        if not path.exists():
            errors[key] = json.loads(failure_path(path).read_text())["error"]
            continue
        run = read_dataset(path)
        if run.attrs.get("config") != config.to_json():
            raise InvalidInputError(
                f"{path} was run with other settings than the study now asks for: use "
                "another `out` folder, or delete it to run it again"
            )
        datasets[key] = run
    if not datasets:
        raise PyrodipError(f"every run of the study failed (first error: "
                           f"{next(iter(errors.values()))}): see {runs_dir}")
    keys = [(method, image_label(image), seed) for method, image, seed, _, _ in runs]
    stacked = with_status(stack(datasets), keys, errors)
    write_dataset(stacked, Path(out) / "comparison.nc")
    return stacked


def failure_path(path: Path) -> Path:
    """Where the failure of the run whose dataset goes to ``path`` is recorded.

    >>> failure_path(Path("runs/ct-dip-seed0.nc")).name
    'ct-dip-seed0.failed.json'
    """
    return path.with_suffix(".failed.json")


def _record_failure(path: Path, failed: Failed) -> None:
    from ..io.files import atomic_path

    with atomic_path(failure_path(path)) as tmp:
        tmp.write_text(json.dumps({"error": failed.error, "attempts": failed.attempts}))


def with_status(study: xr.Dataset, keys: list[tuple[str, str, int]],
                errors: dict[tuple[str, str, int], str]) -> xr.Dataset:
    """``study`` over every run ``keys`` names, with ``status`` (``ok`` or ``failed``) and
    ``error`` (the failure's, else ``""``) per run; a failed run's values are NaN."""
    axes = {name: list(dict.fromkeys(key[i] for key in keys))
            for i, name in enumerate(("method", "image", "seed"))}
    study = study.reindex(axes)
    shape = tuple(len(values) for values in axes.values())
    status, error = np.full(shape, "ok", dtype=object), np.full(shape, "", dtype=object)
    for key, message in errors.items():
        at = tuple(axes[name].index(value) for name, value in zip(axes, key, strict=True))
        status[at], error[at] = "failed", message
    dims = tuple(axes)
    return study.assign(status=(dims, status.astype(str)), error=(dims, error.astype(str)))


def run_tasks(
    tasks: list[tuple[list[RunConfig], list[Path]]], executor: Executor | None, progress: bool,
    total: int, desc: str, unit: str, checkpoint_every: int | None = None,
    stop: threading.Event | None = None,
) -> dict[Path, Failed]:
    """Fit each task's runs (:func:`fit_runs`) on ``executor`` (default: in this process, one
    after another), with one progress bar over the ``total`` runs (``desc``, ``unit``) of which
    the tasks hold the missing ones. A single fit in this process shows its own progress bar
    instead. A task that raises or whose worker dies is run once more (:class:`Retrying`);
    returns the runs whose task failed again, by path, with the failure."""
    pending = sum(len(configs) for configs, _ in tasks)
    own_bar = executor is None and pending == 1

    def retried(task) -> None:
        names = ", ".join(Path(p).stem for p in task.args[1])
        tqdm.write(f"pyrodip: {names} failed ({task.errors[-1]}); running it again",
                   file=sys.stderr)

    failures: dict[Path, Failed] = {}
    runner = Retrying(executor or SyncExecutor(), on_retry=retried)
    queue = list(tasks)
    with tqdm(total=total, initial=total - pending, desc=desc, unit=unit,
              disable=not progress or own_bar) as bar:
        while queue or runner.busy:
            # In this process one at a time (each finishes before the next starts), else all.
            for configs, paths in queue if executor is not None else queue[:1]:
                runner.submit(fit_runs, configs, paths, progress and own_bar, checkpoint_every,
                              stop if executor is None else None)
            queue = [] if executor is not None else queue[1:]
            for task in runner.next_completed():
                if isinstance(task.outcome, Failed):
                    failures.update((Path(path), task.outcome) for path in task.args[1])
                bar.update(len(task.args[1]))
    return failures


def _batches(
    runs: list[tuple[RunConfig, Path]], size: int
) -> list[tuple[list[RunConfig], list[Path]]]:
    """The runs in groups of at most ``size`` that differ only in their seed (runs that
    cannot be batched alone), in the runs' order."""
    from ..run.fit import batchable

    groups: dict[str, list[tuple[RunConfig, Path]]] = {}
    for config, path in runs:
        key = _batch_kind(config) if batchable(config) is None else str(path)
        groups.setdefault(key, []).append((config, path))
    tasks = []
    for members in groups.values():
        for start in range(0, len(members), size):
            configs, paths = zip(*members[start : start + size], strict=True)
            tasks.append((list(configs), list(paths)))
    return tasks


def _batch_kind(config: RunConfig) -> str:
    """What runs batched together share: everything but the seed."""
    return config.replace(seed=0).to_json()


def check_batch(comparison: Comparison, batch: int | str) -> int:
    """The batch size for ``comparison``'s runs: ``batch``, checked before any fit against the
    memory estimate, or for ``"auto"`` the largest the estimate admits on a GPU, up to the
    seeds (1 on a CPU, where a batch pays little: docs/performance.md). Refuses a ``batch``
    that is neither a positive integer nor ``"auto"``, or that will not fit.

    >>> check_batch(Comparison(methods=["mfvi"], images=["sample:ct"], seeds=[0, 1]), "auto")
    1
    """
    from ..run.fit import batchable
    from ..run.observe import prepare_observation

    if batch != "auto" and min(positive_int("batch", batch), len(comparison.seeds)) == 1:
        return 1
    configs = {}  # one config per kind of batch
    for _, _, _, config in comparison.runs():
        if batchable(config) is None:
            configs.setdefault(_batch_kind(config), config)
    fits = len(comparison.seeds)
    for config in configs.values():
        if batch == "auto" and config.device == "cpu":
            return 1
        shape = prepare_observation(config).image_shape
        fits = min(fits, batch_size(config, shape, batch, len(comparison.seeds)))
    return fits if configs else 1


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
    """Fit one run of a study and write its dataset to ``path`` (whole or not at all). On a
    worker, the config's plugins are imported first (unpickling it does not)."""
    return fit_runs([config], [path], progress)[0]


def fit_runs(configs: list[RunConfig], paths: list[str | Path], progress: bool = False,
             checkpoint_every: int | None = None,
             stop: threading.Event | None = None) -> list[Path]:
    """Fit runs of a study, more than one as a batch (:func:`pyrodip.fit_batch`), and write
    each dataset to its path (whole or not at all). A single fit saves a checkpoint beside
    its path (:func:`checkpoint_path`) every ``checkpoint_every`` steps (default every 5
    minutes) and resumes from it when it was cut short; ``stop`` interrupts it (on a Dask
    worker: the worker being stopped, :class:`~pyrodip.studies.execution.WorkerStopping`)."""
    from ..infer.checkpoints import Checkpointing
    from ..run.fit import fit, fit_batch
    from ..run.observe import prepare_observation
    from ..run.results import to_dataset, write_dataset
    from .execution import WorkerStopping

    for config in configs:
        load_plugins(config.plugins)
    observations = [prepare_observation(config) for config in configs]
    paths = [Path(path) for path in paths]
    if len(configs) == 1:
        checkpoint = Checkpointing(checkpoint_path(paths[0]), every_steps=checkpoint_every)
        resume = _resumable(checkpoint.path, configs[0])
        results = [fit(observations[0], configs[0], progress=progress, checkpoint=checkpoint,
                       resume=resume, stop=stop or WorkerStopping.here())]
    else:
        results = fit_batch(observations, configs, progress=progress)
    for result, path in zip(results, paths, strict=True):
        write_dataset(to_dataset(result), path)
        checkpoint_path(path).unlink(missing_ok=True)
    return paths


def checkpoint_path(path: Path) -> Path:
    """Where the fit of the run whose dataset goes to ``path`` keeps its checkpoint.

    >>> checkpoint_path(Path("runs/ct-dip-seed0.nc")).name
    'ct-dip-seed0.checkpoint.pt'
    """
    return path.with_suffix(".checkpoint.pt")


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


def stack(datasets: dict[tuple[str, str, int], xr.Dataset]) -> xr.Dataset:
    """One dataset over (method, image, seed) from runs keyed by (method, image, seed): their
    variables, and :data:`RUN_SCALARS` attributes as variables; NaN where a run lacks one."""
    pieces = []
    for (method, image, seed), run in datasets.items():
        run = run.drop_vars([v for v in run.data_vars if "baseline" in v and v != "baseline"])
        scalars = {name: float(run.attrs.get(key, np.nan)) for key, name in RUN_SCALARS.items()}
        piece = run.reset_coords().assign(scalars).drop_attrs()  # per-run coords become vars
        # Index the pixel axes, so that images of other sizes are padded with NaN, not refused.
        piece = piece.assign_coords(
            {dim: np.arange(size) for dim, size in piece.sizes.items() if dim not in piece.coords}
        )
        pieces.append(piece.expand_dims(method=[method], image=[image], seed=[seed]))
    # The pieces never overlap (each is one (method, image, seed)): an outer merge pads every
    # variable a run lacks, or holds over fewer steps or pixels, with NaN.
    stacked = xr.merge(pieces, join="outer", compat="no_conflicts", combine_attrs="drop")
    methods = list(dict.fromkeys(key[0] for key in datasets))
    images = list(dict.fromkeys(key[1] for key in datasets))
    stacked = stacked.reindex({"method": methods, "image": images})
    any_run = next(iter(datasets.values())).attrs
    stacked.attrs = {"task": any_run.get("task", ""), "runs": len(datasets)}
    return stacked


def _columns(study: xr.Dataset) -> dict[str, xr.DataArray]:
    """The table's columns: each a value per (method, image, seed)."""
    columns = {}
    if "psnr" in study.data_vars and "step" in study["psnr"].dims:
        curve = study["psnr"]
        columns["PSNR last"] = _last(curve)
        columns["PSNR best"] = curve.max("step")
        columns["best step"] = curve.fillna(-np.inf).argmax("step") + 1
        columns["SSIM last"] = _last(study["ssim"])
    for header, name in (("PSNR mean", "mean_psnr"), ("UCE", "uce"), ("UCE raw", "uce_raw"),
                         ("cov 68", "coverage_68"), ("cov 68 raw", "coverage_68_raw"),
                         ("cov 95", "coverage_95"), ("cov 95 raw", "coverage_95_raw"),
                         ("std scale", "calibration_scale"), ("AUSE", "ause")):
        if name in study.data_vars:
            columns[header] = study[name]
    if "loss" in study.data_vars:
        elbo = -_last(study["loss"])
        columns["ELBO"] = elbo.where(elbo["method"] == "mfvi")
    columns["time s"] = study["wall_time_s"]
    return columns


def _last(curve: xr.DataArray) -> xr.DataArray:
    """Each run's value at its own last step (runs of fewer steps are padded with NaN)."""
    valid = curve.notnull()
    last = (valid * np.arange(curve.sizes["step"])).argmax("step")
    return curve.isel(step=last).where(valid.any("step"))


def summary_table(study: xr.Dataset) -> str:
    """A Markdown table, a row per method and image: mean +- std over seeds of the smoothed
    PSNR at the last step and its best (with the step), SSIM, the predictive mean's PSNR,
    calibration (UCE, coverage, AUSE), the ELBO (mfvi) and the wall time."""
    columns = _columns(study)
    rows = ["| method | image | " + " | ".join(columns) + " |"]
    rows.append("|" + " --- |" * (len(columns) + 2))
    for image in study["image"].values:
        for method in study["method"].values:
            at = {"method": method, "image": image}
            cells = [_cell(values.sel(at), integer=header == "best step")
                     for header, values in columns.items()]
            rows.append(f"| {method} | {image} | " + " | ".join(cells) + " |")
    seeds = study.sizes["seed"]
    rows.append("")
    rows.append(f"mean +- std over {seeds} seed{'s' if seeds > 1 else ''}; PSNR last/best: "
                "the smoothed image (EMA) against the truth; PSNR mean: the predictive mean")
    if "status" in study.data_vars:
        failed = study["status"].to_series().loc[lambda status: status == "failed"]
        if len(failed):
            rows.append(f"failed, left out of the table ({len(failed)} of "
                        f"{study['status'].size} runs):")
        for method, image, seed in failed.index:
            error = study["error"].sel({"method": method, "image": image, "seed": seed}).item()
            rows.append(f"- {method} on {image}, seed {seed}: {error}")
    return "\n".join(rows)


def _cell(values: xr.DataArray, integer: bool = False) -> str:
    array = np.asarray(values.values, dtype=float)
    array = array[np.isfinite(array)]
    if array.size == 0:
        return "-"
    number = (lambda value: f"{value:.0f}") if integer else _number
    mean = float(array.mean())
    if array.size == 1:
        return number(mean)
    return f"{number(mean)} +- {number(float(array.std(ddof=1)))}"


def _number(value: float) -> str:
    if value != 0 and (abs(value) >= 1e5 or abs(value) < 1e-3):
        return f"{value:.2e}"
    return f"{value:.{max(0, 3 - int(math.floor(math.log10(abs(value) or 1))) - 1)}f}"


def load_results(paths: list[str | Path]) -> xr.Dataset:
    """A study dataset from saved results: ``comparison.nc`` files, single ``result.nc`` files or
    folders holding either, for :func:`summary_table` (``pyrodip report``)."""
    from ..io.files import finish_result_set
    from ..run.results import read_dataset

    runs, studies = {}, []
    for given in map(Path, paths):
        if given.is_dir():
            finish_result_set(given)
        candidates = [given / "comparison.nc", given / "result.nc"] if given.is_dir() else [given]
        path = next((c for c in candidates if c.is_file()), None)
        if path is None:
            raise MissingFileError(
                f"no result at {given}: give a comparison.nc or result.nc file, or their folder"
            )
        dataset = read_dataset(path)
        if "method" in dataset.dims:
            studies.append(dataset)
        else:
            attrs = dataset.attrs
            runs[attrs["method"], image_label(attrs["image"]), int(attrs["seed"])] = dataset
    if runs:
        studies.append(stack(runs))
    return xr.combine_by_coords(
        studies, join="outer", combine_attrs="drop_conflicts", data_vars="all", coords="minimal"
    )
