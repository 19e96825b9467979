"""What the studies in ``experiments/`` share: the shared images, the seeds, their command line,
their fits on the library's grid runner (:mod:`pyrodip.studies.grid`) and Markdown tables.

A study declares its fits as :class:`~pyrodip.studies.grid.GridRun` s; each fit's dataset goes
to ``OUT/runs/NAME.nc`` with the study's own values in its ``metrics`` attribute, so that a
stage run again fits only what it lacks (an interrupted study continues, a fit cut short
resumes from its checkpoint) and a failed fit is recorded while the others go on.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import math
import sys
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import xarray as xr

from pyrodip.evaluate.statistics import CONFIDENCE, format_interval
from pyrodip.run.config import RunConfig
from pyrodip.run.observe import prepare_observation
from pyrodip.run.results import read_dataset
from pyrodip.studies.execution import Executor, dask_executor
from pyrodip.studies.grid import GridOutcome, GridRun, Hooks, run_grid

if TYPE_CHECKING:  # BO's imports (BoTorch) only where a study runs
    from pyrodip.studies.bo import Study

#: The shared test images (see their README), beside the checkout.
DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
#: The seeds of every study: a claim needs at least three.
SEEDS = (0, 1, 2)
#: What a table's ``a ± b`` is (:func:`pyrodip.evaluate.statistics.format_interval`).
PLUS_MINUS = (f"a ± b: the mean over seeds and the half-width of its {CONFIDENCE * 100:g} % "
              "t-interval")


#: Gaussian denoising's domains: domain -> (the reported image, the tuning image).
DENOISING_IMAGES = {"xray": ("denoising/xray.jpg", "denoising/xray2.png"),
                    "oct": ("denoising/oct.png", "denoising/oct2.png")}
#: A fit's result attribute -> its column in the denoising studies' tables.
DENOISING_SCORES = {"mean_psnr": "PSNR", "mean_ssim": "SSIM", "coverage_68": "coverage 68 %",
                    "coverage_95": "coverage 95 %"}


def image_path(name: str) -> str:
    """A shared image by its path under :data:`DATA`, or an embedded sample (``sample:ct``).

    >>> image_path("sample:ct"), image_path("denoising/oct.png").endswith("data/denoising/oct.png")
    ('sample:ct', True)
    """
    return name if name.startswith("sample:") else str(DATA / name)


def clipped_observation(config: RunConfig):
    """The observation of ``config``, Gaussian noise clipped to [0, 1] as the paper did (not a
    CT sinogram, which is no image): the ``observe`` hook of the studies."""
    obs = prepare_observation(config)
    if config.noise == "gaussian" and config.task != "ct":
        obs = dataclasses.replace(obs, observation=obs.observation.clamp(0, 1))
    return obs


@contextlib.contextmanager
def local_executor(workers: int) -> Iterator[Executor | None]:
    """``workers`` local Dask workers of one thread each, or (``workers`` <= 1) None: this
    process, on one thread."""
    if workers > 1:
        with dask_executor(workers=workers) as executor:
            yield executor
        return
    import torch

    torch.set_num_threads(1)
    yield None


def run_fits(runs: list[GridRun], out: Path, hooks: Hooks, workers: int,
             match: list[str] | None = None, desc: str = "study") -> GridOutcome:
    """Fit the ``runs`` (only those whose name contains one of ``match``, when given) that
    ``out`` lacks, on :func:`local_executor` ``(workers)``; prints the fits that failed."""
    chosen = [run for run in runs if not match or any(text in run.name for text in match)]
    print(f"{desc}: {len(chosen)} fits", flush=True)
    with local_executor(workers) as executor:
        outcome = run_grid(chosen, out, hooks=hooks, executor=executor, desc=desc)
    for name, error in outcome.failures.items():
        print(f"failed: {name}: {error}", file=sys.stderr)
    return outcome


def finish_study(study: Study, folder: Path, executor: Executor | None = None,
                 progress: bool = True) -> None:
    """Run the BO ``study`` in ``folder``, continue it where an earlier run stopped, or leave
    it when it has ended."""
    from pyrodip.studies.bo import optimize, resume
    from pyrodip.studies.bo_study import RESULT_FILE, STUDY_FILE

    if (folder / RESULT_FILE).exists():
        return
    if (folder / STUDY_FILE).exists():
        resume(folder, executor=executor, progress=progress)
    else:
        optimize(study, folder, executor=executor, progress=progress)


def finished(out: Path, names: Iterable[str]) -> dict[str, xr.Dataset]:
    """The datasets of the fits ``names`` that ``OUT/runs`` holds, by name."""
    paths = {name: out / "runs" / f"{name}.nc" for name in names}
    return {name: read_dataset(path) for name, path in paths.items() if path.exists()}


def interval(values, digits: int | None = None) -> str:
    """The finite ``values`` as ``mean ± half-width`` with ``digits`` decimals (by default 3
    for values within [0, 1], such as SSIM or coverage; else 2), or an empty cell when there
    is none.

    >>> interval([0.5, 0.6, 0.7]), interval([float("nan")])
    ('0.600 ± 0.248', '')
    """
    values = [float(v) for v in values if math.isfinite(float(v))]
    if digits is None:
        digits = 3 if values and max(values) <= 1 else 2
    return format_interval(values, digits) if values else ""


def paired_differences(pairs: list[tuple[xr.Dataset, xr.Dataset]],
                       keys: Iterable[str]) -> list[str]:
    """Per result attribute in ``keys``, the first fit's value minus the second's over the
    ``pairs`` (two fits on the same observation), as :func:`interval` cells of 3 decimals."""
    return [interval([float(a.attrs[key]) - float(b.attrs[key]) for a, b in pairs], digits=3)
            for key in keys]


def classical_scores(datasets: list[xr.Dataset], method: str = "bm3d") -> list[str]:
    """The classical baseline ``method``'s PSNR and SSIM on the fits' observations (mean over
    the ``datasets``), or two empty cells where the fits ran without baselines."""
    if not datasets or "classical" not in datasets[0]:
        return ["", ""]
    index = datasets[0]["classical"].values.tolist().index(method)
    return [interval([float(ds[f"classical_{metric}"].values[index]) for ds in datasets])
            for metric in ("psnr", "ssim")]


def agreement_cells(scores: dict[str, dict[str, list[float]]]) -> list[str]:
    """Kendall's tau of the methods' ranking by held-out LPD and by CRPS against their ranking
    by PSNR, and whether each picks the best method
    (:func:`pyrodip.studies.table.ranking_agreement`), as four cells; ``scores``: per method
    its ``mean_psnr``, ``heldout_lpd`` and ``heldout_crps``, one value per seed.

    >>> agreement_cells({"a": {"mean_psnr": [20.0], "heldout_lpd": [1.0], "heldout_crps": [0.2]},
    ...                  "b": {"mean_psnr": [22.0], "heldout_lpd": [2.0], "heldout_crps": [0.3]}})
    ['1.00', '-1.00', 'yes', 'no']
    """
    from pyrodip.studies.table import ranking_agreement

    methods = list(scores)
    study = xr.Dataset(
        {key: (("method", "image", "seed"), [[scores[m][key]] for m in methods])
         for key in ("mean_psnr", "heldout_lpd", "heldout_crps")},
        coords={"method": methods, "image": ["image"]})
    agreement = ranking_agreement(study).isel(image=0)
    picks = [float(agreement[f"best_{key}"]) for key in ("lpd", "crps")]
    return [f"{float(agreement['tau_lpd']):.2f}", f"{float(agreement['tau_crps']):.2f}",
            *("-" if math.isnan(pick) else ("yes" if pick else "no") for pick in picks)]


def table(header: list[str], rows: list[list[str]]) -> list[str]:
    """A Markdown table's lines (and an empty line after it).

    >>> table(["a", "b"], [["1", "2"]])
    ['| a | b |', '| --- | --- |', '| 1 | 2 |', '']
    """
    return ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header),
            *("| " + " | ".join(row) + " |" for row in rows), ""]


def study_main(argv: list[str] | None, module: str, doc: str, stages: tuple[str, ...],
               smoke: str, run_stage: Callable, report: Callable) -> int:
    """The command line of a study: ``run --stage STAGE`` (then the report) or ``report``.

    ``run_stage(stage, out, workers, smoke, match)`` runs a stage's fits; ``report(out)``
    writes the report and returns what to print."""
    parser = argparse.ArgumentParser(prog=f"python -m {module}", description=doc.split("\n")[0])
    parser.add_argument("action", choices=("run", "report"))
    parser.add_argument("--stage", choices=stages)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--workers", type=int, default=2,
                        help="local Dask workers of one thread each (1: in this process)")
    parser.add_argument("--smoke", action="store_true", help=smoke)
    parser.add_argument("--match", action="append", metavar="TEXT",
                        help="run only the fits whose name contains TEXT (repeatable)")
    args = parser.parse_args(argv)
    if args.action == "run":
        if args.stage is None:
            parser.error(f"run needs --stage {', '.join(stages)}")
        if not DATA.is_dir():
            print(f"error: the shared images are not at {DATA}", file=sys.stderr)
            return 2
        run_stage(args.stage, args.out, args.workers, args.smoke, args.match)
    print(report(args.out))
    return 0
