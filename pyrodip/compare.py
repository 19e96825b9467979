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
study continues where it stopped), writes each run's dataset to ``runs/``, and stacks them with
:func:`stack` into one dataset with dims ``method``, ``image``, ``seed`` (curves over ``step``;
runs of different lengths or sizes padded with NaN); :func:`summary_table` makes the table.

>>> comparison = Comparison(methods=["dip", "mfvi"], images=["sample:phantom"], seeds=[0, 1])
>>> [(method, seed) for method, _, seed, _ in comparison.runs()]
[('dip', 0), ('dip', 1), ('mfvi', 0), ('mfvi', 1)]
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import xarray as xr
from tqdm.auto import tqdm

from .config import RunConfig, read_toml
from .errors import InvalidInputError, MissingFileError
from .methods import METHODS

#: Scalar attributes of a run that become variables over (method, image, seed), by the name
#: they take there (the predictive mean's ``psnr`` and ``ssim`` would clash with the curves).
RUN_SCALARS = {
    "psnr": "mean_psnr", "ssim": "mean_ssim", "uce": "uce", "coverage_68": "coverage_68",
    "coverage_95": "coverage_95", "ause": "ause", "wall_time_s": "wall_time_s",
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
        return cls(
            methods=list(spec.get("methods", [])),
            images=[_relative_to(path.parent, image) for image in spec.get("images", [])],
            seeds=list(spec.get("seeds", [0])),
            settings=dict(spec.get("settings", {})),
            method_settings=dict(spec.get("method", {})),
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
    """Image paths in a study file are relative to the file's folder."""
    if image.startswith("sample:") or Path(image).is_absolute():
        return image
    return str(folder / image)


def run_comparison(comparison: Comparison, out: str | Path, progress: bool = True) -> xr.Dataset:
    """Fit every run of ``comparison`` (skipping runs already written to ``out/runs``), then
    stack them into ``out/comparison.nc`` and return that dataset."""
    from .inference import fit
    from .observation import prepare_observation
    from .results import read_dataset, to_dataset, write_dataset

    runs_dir = Path(out) / "runs"
    runs_dir.mkdir(parents=True, exist_ok=True)
    datasets = {}
    for method, image, seed, config in tqdm(
        list(comparison.runs()), desc="comparison", unit="run", disable=not progress
    ):
        path = runs_dir / f"{image_label(image)}-{method}-seed{seed}.nc"
        if not path.exists():
            result = fit(prepare_observation(config), config, progress=progress)
            write_dataset(to_dataset(result), path)
        run = read_dataset(path)
        if run.attrs.get("config") != config.to_json():
            raise InvalidInputError(
                f"{path} was run with other settings than the study now asks for: use "
                "another --out, or delete it to run it again"
            )
        datasets[method, image_label(image), seed] = run
    stacked = stack(datasets)
    write_dataset(stacked, Path(out) / "comparison.nc")
    return stacked


def stack(datasets: dict[tuple[str, str, int], xr.Dataset]) -> xr.Dataset:
    """One dataset over (method, image, seed) from runs keyed by (method, image, seed): their
    variables, and :data:`RUN_SCALARS` attributes as variables; NaN where a run lacks one."""
    pieces = []
    for (method, image, seed), run in datasets.items():
        run = run.drop_vars([v for v in run.data_vars if "baseline" in v and v != "baseline"])
        scalars = {name: float(run.attrs.get(key, np.nan)) for key, name in RUN_SCALARS.items()}
        piece = run.reset_coords().assign(scalars).drop_attrs()  # per-run coords become vars
        pieces.append(piece.expand_dims(method=[method], image=[image], seed=[seed]))
    stacked = xr.combine_by_coords(
        pieces, join="outer", combine_attrs="drop", data_vars="all", coords="minimal"
    )
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
    for header, name in (("PSNR mean", "mean_psnr"), ("UCE", "uce"), ("cov 68", "coverage_68"),
                         ("cov 95", "coverage_95"), ("AUSE", "ause")):
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
            cells = [_cell(values.sel(at)) for values in columns.values()]
            rows.append(f"| {method} | {image} | " + " | ".join(cells) + " |")
    seeds = study.sizes["seed"]
    rows.append("")
    rows.append(f"mean +- std over {seeds} seed{'s' if seeds > 1 else ''}; PSNR last/best: "
                "the smoothed image (EMA) against the truth; PSNR mean: the predictive mean")
    return "\n".join(rows)


def _cell(values: xr.DataArray) -> str:
    array = np.asarray(values.values, dtype=float)
    array = array[np.isfinite(array)]
    if array.size == 0:
        return "-"
    mean = float(array.mean())
    if array.size == 1:
        return _number(mean)
    return f"{_number(mean)} +- {_number(float(array.std(ddof=1)))}"


def _number(value: float) -> str:
    if value != 0 and (abs(value) >= 1e5 or abs(value) < 1e-3):
        return f"{value:.2e}"
    return f"{value:.{max(0, 3 - int(math.floor(math.log10(abs(value) or 1))) - 1)}f}"


def load_results(paths: list[str | Path]) -> xr.Dataset:
    """A study dataset from saved results: ``comparison.nc`` files, single ``result.nc`` files or
    folders holding either, for :func:`summary_table` (``pyrodip report``)."""
    from .results import read_dataset

    runs, studies = {}, []
    for given in map(Path, paths):
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
