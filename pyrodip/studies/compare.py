"""Comparison studies (``pyrodip compare``): rows (methods, and variants of the settings) x
images x seeds from one TOML file, fitted on the run grid and stacked into one dataset.

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

    [variant.mfvi-cold] # a row of its own: RunConfig keys over [settings] (method included)
    method = "mfvi"
    temperature = 0.01

:func:`run_comparison` fits every run on :func:`pyrodip.studies.grid.run_grid` (runs already on
disk are kept, so an interrupted study continues where it stopped; a fit that was cut short
resumes from its checkpoint; a run that fails twice is recorded as failed and the study goes
on), and stacks them (:func:`pyrodip.studies.stacking.stack`) into one dataset with dims
``method`` (the method's or the variant's name), ``image``, ``seed``; each run's fitted method
is ``run_method``, and ``status`` is ``failed`` for a failed run, which ``retry_failed`` runs
again. :func:`pyrodip.studies.table.summary_table` makes the table.

>>> comparison = Comparison(methods=["dip"], images=["sample:phantom"], seeds=[0, 1],
...                         variants={"cold": {"method": "mfvi", "temperature": 0.01}})
>>> tuple((row, seed, config.method) for row, _, seed, config in comparison.runs())
(('dip', 0, 'dip'), ('dip', 1, 'dip'), ('cold', 0, 'mfvi'), ('cold', 1, 'mfvi'))
"""

from __future__ import annotations

import dataclasses
import os
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import xarray as xr

from ..errors import InvalidInputError, MissingFileError, PyrodipError
from ..infer.methods import METHODS
from ..physics.masks import names_a_mask_file
from ..plugins import load_plugins
from ..run.config import RunConfig, check_plugins, read_toml
from .execution import Executor
from .grid import GridRun, run_grid
from .stacking import stack, with_status
from .table import summary_table

STUDY_KEYS = ("methods", "images", "seeds", "settings", "method", "variant")
AXES = ("image", "method", "seed")


@dataclass
class Comparison:
    """Which runs a comparison makes: every row (each method, then each variant: named
    settings over ``settings``) on every image with every seed."""

    methods: list[str]
    images: list[str]
    seeds: list[int] = field(default_factory=lambda: [0])
    settings: dict = field(default_factory=dict)
    method_settings: dict[str, dict] = field(default_factory=dict)
    variants: dict[str, dict] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.methods and not self.variants:
            raise InvalidInputError("the study lists no methods: give at least one, or a variant")
        for key in ("images", "seeds"):
            if not getattr(self, key):
                raise InvalidInputError(f"the study lists no {key}: give at least one")
        tables = (self.settings, *self.method_settings.values(), *self.variants.values())
        for table in tables:  # they may add methods
            plugins = table.get("plugins", [])
            load_plugins([plugins] if isinstance(plugins, str)
                         else check_plugins("plugins", plugins))
        for name, table in self.variants.items():
            _check_variant(name, table, self.methods)
        for method in [*self.methods, *self.method_settings,
                       *(table["method"] for table in self.variants.values() if "method" in table)]:
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
        _check_types(spec, path)
        settings = dict(spec.get("settings", {}))
        method_settings, variants = _tables(spec, "method"), _tables(spec, "variant")
        for table in (settings, *method_settings.values(), *variants.values()):
            if isinstance(table.get("mask"), str) and names_a_mask_file(table["mask"]):
                table["mask"] = _relative_to(path.parent, table["mask"])
        return cls(
            methods=list(spec.get("methods", [])),
            images=[_relative_to(path.parent, image) for image in spec.get("images", [])],
            seeds=list(spec.get("seeds", [0])),
            settings=settings,
            method_settings=method_settings,
            variants=variants,
        )

    def with_settings(self, **settings: object) -> Comparison:
        """The same study with ``settings`` applied to every run, over its own.

        >>> study = Comparison(methods=["dip"], images=["sample:ct"], method_settings={"dip":
        ...                    {"steps": 500}}).with_settings(steps=20)
        >>> next(study.runs())[3].steps
        20
        """
        axes = sorted(set(settings) & set(AXES))
        if axes:
            raise InvalidInputError(
                f"{axes[0]} is an axis of the study, not a run setting: list it under "
                f"{axes[0]}s in the study file"
            )
        methods = {name: {**table, **settings} for name, table in self.method_settings.items()}
        variants = {name: {**table, **settings} for name, table in self.variants.items()}
        return dataclasses.replace(
            self, settings={**self.settings, **settings}, method_settings=methods,
            variants=variants,
        )

    def runs(self) -> Iterator[tuple[str, str, int, RunConfig]]:
        """(row, image, seed, config) of every run, rows outermost: a method's runs take
        ``settings`` and its ``method_settings``; a variant's take ``settings``, those of its
        method, then its own."""
        rows = {method: {"method": method} for method in self.methods}
        for name, table in self.variants.items():
            method = table.get("method", self.settings.get("method", RunConfig().method))
            rows[name] = {"method": method, **table}
        for row, own in rows.items():
            settings = {**self.settings, **self.method_settings.get(own["method"], {}), **own}
            for image in self.images:
                for seed in self.seeds:
                    settings.update(image=image, seed=seed)
                    yield row, image, seed, RunConfig().replace(**settings)

    def grid_runs(self) -> list[GridRun]:
        """The runs as the grid's, named ``IMAGE-ROW-seedSEED`` (:func:`image_label`)."""
        return [GridRun(f"{image_label(image)}-{row}-seed{seed}", config)
                for row, image, seed, config in self.runs()]


#: The study file's lists and tables: the type each must have, and that of a list's items.
STUDY_TYPES = {"methods": (list, str), "images": (list, str), "seeds": (list, object),
               "settings": (dict, object)}


def _check_types(spec: dict, path: Path) -> None:
    """Refuse a study file whose methods, images, seeds or settings have the wrong type."""
    for key, (kind, item) in STUDY_TYPES.items():
        value = spec.get(key, kind())
        if not isinstance(value, kind) or not all(isinstance(entry, item) for entry in value):
            shape = "a table: write [settings]" if kind is dict else (
                f"a list{' of strings' if item is str else ''}, e.g. {key} = [...]")
            raise InvalidInputError(f"{key} in study file {path} must be {shape}, got {value!r}")


def _tables(spec: dict, key: str) -> dict[str, dict]:
    """The ``[KEY.NAME]`` tables of a study file, by name."""
    tables = spec.get(key, {})
    if not isinstance(tables, dict) or not all(isinstance(t, dict) for t in tables.values()):
        raise InvalidInputError(f"{key} in a study file holds tables: write [{key}.NAME]")
    return {name: dict(table) for name, table in tables.items()}


def _check_variant(name: str, table: dict, methods: list[str]) -> None:
    """A variant's name (a row, and part of its runs' file names) and settings."""
    if not re.fullmatch(r"[\w.-]+", name) or name in methods:
        raise InvalidInputError(
            f"variant name {name!r} is {'a method of the study' if name in methods else 'not'}"
            " a plain name: use letters, digits, '-', '_' or '.', unlike the study's methods"
        )
    axes = sorted(set(table) & {"image", "seed"})
    if axes:
        raise InvalidInputError(
            f"{axes[0]} is an axis of the study, not a setting of variant {name!r}: list it "
            f"under {axes[0]}s in the study file"
        )


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
    figures: bool = True,
) -> xr.Dataset:
    """Fit every run of ``comparison`` on :func:`pyrodip.studies.grid.run_grid` (its runs in
    ``out/runs``; ``executor``, ``batch``, ``retry_failed``, ``checkpoint_every`` and ``stop``
    as there), stack them into one dataset, write it with its table and (``figures``) figures
    as one set (:func:`write_comparison`) and return it. Refuses a study whose every run
    failed."""
    keys = {
        f"{image_label(image)}-{row}-seed{seed}": ((row, image_label(image), seed), config)
        for row, image, seed, config in comparison.runs()
    }
    outcome = run_grid(
        comparison.grid_runs(), out, executor=executor, batch=batch, retry_failed=retry_failed,
        checkpoint_every=checkpoint_every, progress=progress, stop=stop, desc="comparison",
    )
    if not outcome.datasets:
        raise PyrodipError(f"every run of the study failed (first error: "
                           f"{next(iter(outcome.failures.values()))}): see {Path(out) / 'runs'}")
    datasets = {keys[name][0]: dataset for name, dataset in outcome.datasets.items()}
    errors = {keys[name][0]: error for name, error in outcome.failures.items()}
    methods = {key: config.method for key, config in keys.values()}
    stacked = with_status(stack(datasets), methods, errors)
    write_comparison(stacked, out, figures)
    return stacked


def write_comparison(comparison: xr.Dataset, out: str | Path, figures: bool = True) -> list[str]:
    """Write ``comparison.nc``, ``table.md`` (:func:`~pyrodip.studies.table.summary_table`) and
    (``figures``) the figures of :func:`pyrodip.plots.comparison_figures` into ``out`` together
    or not at all (:func:`pyrodip.io.files.result_set`: a kill leaves the previous set or this
    one, never a table of one study beside the dataset of another); the files' names."""
    from ..io.files import result_set
    from ..plots import comparison_figures
    from ..run.results import write_dataset

    Path(out).mkdir(parents=True, exist_ok=True)
    with result_set(out) as staging:
        write_dataset(comparison, staging / "comparison.nc")
        (staging / "table.md").write_text(summary_table(comparison) + "\n")
        if figures:
            comparison_figures(comparison, staging)
        written = sorted(path.name for path in staging.iterdir())
    return written


def load_results(paths: list[str | Path]) -> xr.Dataset:
    """A study dataset from saved results: ``comparison.nc`` files, single ``result.nc`` files or
    folders holding either, for :func:`~pyrodip.studies.table.summary_table`
    (``pyrodip report``). A result set's folder is checked first
    (:func:`~pyrodip.io.files.check_result_set`: a move a kill cut short is finished, and a
    file changed since the set was written is refused)."""
    from ..io.files import COMMITTED, MANIFEST, check_result_set
    from ..run.results import read_dataset

    runs, studies = {}, []
    for given in map(Path, paths):
        folder = given if given.is_dir() else given.parent
        if (folder / MANIFEST).is_file() or (folder / COMMITTED).is_dir():
            check_result_set(folder)
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
