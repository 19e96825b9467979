"""Reproduce the paper's experiments declared in ``experiments/reproduce.toml``.

    python -m experiments.reproduce --scale cpu --out runs/reproduce-cpu

For every domain (X-ray, OCT, ultrasound denoising; MRI, CT super-resolution; skin inpainting):

1. ``OUT/DOMAIN/bo``: BO of MFVI (``pyrodip bo``'s default search unless the file names
   ``params``) on the domain's tuning image;
2. ``OUT/DOMAIN/compare``: every method over the seeds on the domain's first image (``pyrodip
   compare``), ``mfvi-paper`` with the paper's prior scale, and a row ``mfvi-tuned``: MFVI with
   the setting tuned on the other image (the transfer claim): ``comparison.nc``, ``table.md``,
   ``psnr_curves.png``, ``uncertainty_IMAGE.png`` and ``calibration_METHOD.png``.

``OUT/results.md`` gathers the tables, the transfer (``mfvi-tuned`` minus ``mfvi``, paired by
seed), the paper's numbers beside ours, and where and how long it ran. An interrupted
reproduction continues where it stopped when run again with the same ``--out``. ``--scale
smoke`` runs every stage with a few steps on 64 px images.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import os
import platform
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

import pyrodip
from experiments.common import finish_study
from pyrodip.errors import InvalidInputError, PyrodipError
from pyrodip.evaluate.statistics import format_interval
from pyrodip.io.files import atomic_path
from pyrodip.plots import plot_calibration
from pyrodip.run.config import RunConfig, read_toml
from pyrodip.run.results import read_dataset
from pyrodip.studies.bo import Param, Study, best_parameters
from pyrodip.studies.compare import Comparison, run_comparison
from pyrodip.studies.execution import SyncExecutor, dask_executor
from pyrodip.studies.table import summary_table

DEFAULT_FILE = Path(__file__).with_name("reproduce.toml")
#: The comparison's row of MFVI with the setting BO tuned on the domain's other image.
TUNED = "mfvi-tuned"


@dataclass
class Domain:
    """One task on one modality: the image the methods are compared on, and the tuning image
    BO runs on."""

    name: str
    image: str
    tuning: str
    settings: dict
    paper_prior_scale: float
    mask: str | None = None
    tuning_mask: str | None = None

    def run_settings(self, scale_settings: dict, tuning: bool = False) -> dict:
        """The RunConfig settings of a fit on the first image (with ``tuning``: the tuning
        image), but the image itself."""
        mask = self.tuning_mask if tuning else self.mask
        return {**self.settings, **scale_settings, **({"mask": mask} if mask else {})}

    def config(self, scale_settings: dict, tuning: bool = False, **changes) -> RunConfig:
        """The RunConfig of a fit on the first image (with ``tuning``: the tuning image)."""
        image = self.tuning if tuning else self.image
        return RunConfig(image=image, **self.run_settings(scale_settings, tuning), **changes)


@dataclass
class Plan:
    """Everything a reproduction at one scale runs, read from the TOML file."""

    scale: str
    methods: list[str]
    seeds: list[int]
    settings: dict
    bo: dict
    workers: int
    params: tuple[Param, ...] | None  # None: pyrodip bo's default search
    objective: str
    domains: list[Domain]
    paper: dict[str, dict[str, list[float]]] = field(default_factory=dict)

    @classmethod
    def from_toml(cls, path: str | Path, scale: str, domains: list[str] | None = None) -> Plan:
        """The plan of ``scale`` in the file at ``path``, for ``domains`` (default: all)."""
        try:
            return cls._from_toml(Path(path), scale, domains)
        except PyrodipError:
            raise
        except (KeyError, TypeError, ValueError) as error:
            raise InvalidInputError(
                f"reproduction file {path} is malformed ({type(error).__name__}: {error}): "
                f"compare it with {DEFAULT_FILE.name}"
            ) from None

    @classmethod
    def _from_toml(cls, path: Path, scale: str, domains: list[str] | None) -> Plan:
        spec = read_toml(path, "reproduction file")
        scales = spec.get("scale", {})
        if scale not in scales:
            raise InvalidInputError(
                f"unknown scale {scale!r} in {path}: choose one of {', '.join(scales)}"
            )
        chosen, folder = scales[scale], path.parent
        every = [Domain(name, **table) for name, table in spec.get("domain", {}).items()]
        for domain in every:
            for key in ("image", "tuning", "mask", "tuning_mask"):
                if getattr(domain, key) is not None:
                    setattr(domain, key, str(folder / getattr(domain, key)))
        if domains:
            unknown = sorted(set(domains) - {d.name for d in every})
            if unknown:
                raise InvalidInputError(
                    f"unknown domain {unknown[0]!r}: choose from {', '.join(d.name for d in every)}"
                )
            every = [d for d in every if d.name in domains]
        return cls(
            scale=scale,
            methods=list(spec["methods"]),
            seeds=list(chosen["seeds"]),
            settings=dict(chosen["settings"]),
            bo=dict(chosen["bo"]),
            workers=int(chosen["workers"]),
            params=(tuple(Param.parse(text) for text in spec["bo"]["params"])
                    if "params" in spec["bo"] else None),
            objective=spec["bo"]["objective"],
            domains=every,
            paper=dict(spec.get("paper", {})),
        )

    def study(self, domain: Domain) -> Study:
        """The BO study of ``domain``: MFVI on its tuning image."""
        config = domain.config(self.settings, tuning=True, method="mfvi", seed=self.seeds[0])
        return Study(params=self.params, objective=self.objective, config=config, **self.bo)

    def comparison(self, domain: Domain, tuned: dict[str, float]) -> Comparison:
        """Every method over the seeds on ``domain``'s first image (``mfvi-paper`` with the
        paper's prior scale), and MFVI with ``tuned`` as the row :data:`TUNED`."""
        return Comparison(
            methods=self.methods, images=[domain.image], seeds=self.seeds,
            settings=domain.run_settings(self.settings),
            method_settings={"mfvi-paper": {"prior_scale": domain.paper_prior_scale}},
            variants={TUNED: {"method": "mfvi", **tuned}},
        )


def tune(plan: Plan, domain: Domain, folder: Path, executor, progress: bool) -> dict[str, float]:
    """Run (or continue, or read) the BO study of ``domain`` in ``folder``: its best settings."""
    finish_study(plan.study(domain), folder, executor, progress)
    return best_parameters(folder)


def compare(plan: Plan, domain: Domain, tuned: dict, folder: Path, executor,
            progress: bool) -> str:
    """Run the comparison of ``domain`` in ``folder``, write its table and figures, and return
    the table."""
    dataset = run_comparison(plan.comparison(domain, tuned), folder, progress, executor)
    table = summary_table(dataset)  # written with comparison.nc and its figures, as one set
    for method in [*plan.methods, TUNED]:
        run = read_dataset(next((folder / "runs").glob(f"*-{method}-seed{plan.seeds[0]}.nc")))
        plot_calibration(run, folder / f"calibration_{method}.png")
    return table


def transfer_gain(comparison: Path) -> list[float]:
    """Per seed, the returned image's PSNR of :data:`TUNED` minus ``mfvi``'s in the
    ``comparison.nc`` at ``comparison``."""
    psnr = read_dataset(comparison)["mean_psnr"].isel(image=0)
    return (psnr.sel({"method": TUNED}) - psnr.sel({"method": "mfvi"})).values.tolist()


def overview(plan: Plan, out: Path) -> str:
    """One row per domain: the returned image's PSNR of every row of the comparison, and of the
    best classical baseline on the same observations (mean ± 95 % t-interval over the seeds)."""
    rows = [*plan.methods, TUNED]
    lines = ["| domain | " + " | ".join(rows) + " | best classical |",
             "|" + " --- |" * (len(rows) + 2)]
    for domain in plan.domains:
        study = read_dataset(out / domain.name / "compare" / "comparison.nc").isel(image=0)
        # sel({"method": ...}): a keyword `method` is sel's own argument
        cells = [format_interval(study["mean_psnr"].sel({"method": row}).values, 2)
                 for row in rows]
        classical = study["classical_psnr"].isel(method=0)  # the same observations for all
        best = classical.mean("seed").idxmax("classical").item()
        cells.append(f"{best} {format_interval(classical.sel(classical=best).values, 2)}")
        lines.append(f"| {domain.name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def results_markdown(plan: Plan, out: Path, tables: dict, tuned: dict, wall_s: float) -> str:
    """``results.md``: where it ran, then per domain the comparison table, the BO result and
    the transfer, and the paper's numbers beside ours."""
    import torch

    device = plan.settings.get("device", "cpu")
    where = (torch.cuda.get_device_name(0) if device.startswith("cuda")
             else f"CPU ({platform.processor() or platform.machine()}, "
                  f"{len(os.sched_getaffinity(0))} cores)")
    searched = ", ".join(p.spec() for p in plan.params) if plan.params else "the default search"
    lines = [
        f"# Reproduction at scale `{plan.scale}`",
        "",
        f"Measured on {where}, {datetime.date.today()}, pyrodip {pyrodip.__version__}, "
        f"torch {torch.__version__}, {plan.workers or 1} fit(s) at a time; this invocation "
        f"took {wall_s / 60:.1f} min. Settings for every fit: "
        + ", ".join(f"`{k} = {v}`" for k, v in plan.settings.items())
        + f"; seeds {plan.seeds}; BO of {searched} on {plan.objective}, "
        + ", ".join(f"{k} {v}" for k, v in plan.bo.items()) + ".",
        "",
        "Reproduce: `python -m experiments.reproduce --scale "
        f"{plan.scale} --out {out}`",
        "",
        "The image each method returns (`mean`), PSNR in dB, mean ± 95 % t-interval over the "
        "seeds, beside the best classical baseline on the same observations:",
        "",
        overview(plan, out),
    ]
    for domain in plan.domains:
        name = domain.name
        gain = format_interval(transfer_gain(out / name / "compare" / "comparison.nc"), 2)
        lines += [
            "", f"## {name}: {domain.settings['task']} ({Path(domain.image).name})", "",
            tables[name], "",
            f"BO ({name}/bo/gp.png) on {Path(domain.tuning).name}: tuned " + ", ".join(
                f"{k} = {v:.3g}" for k, v in tuned[name].items()) + f". `{TUNED}` (MFVI with "
            f"it) minus `mfvi` (the default) on {Path(domain.image).name}, the returned image "
            f"paired by seed: {gain} dB. `mfvi-paper` uses the paper's sigma_p "
            f"{domain.paper_prior_scale:g}.",
            "",
            f"Figures: `{name}/compare/psnr_curves.png`, "
            f"`{name}/compare/uncertainty_{Path(domain.image).stem}.png`, "
            f"`{name}/compare/calibration_METHOD.png`, `{name}/bo/gp.png`.",
        ]
        if name in plan.paper:
            lines += ["", paper_table(plan.paper[name], out / name / "compare" / "comparison.nc")]
    return "\n".join(lines) + "\n"


def paper_table(paper: dict[str, list[float]], comparison_path: Path) -> str:
    """The paper's PSNR (last, best) per method beside ours (mean over the seeds)."""
    study = read_dataset(comparison_path)
    rows = ["| method | paper last | paper best | pyrodip last | pyrodip best |",
            "| --- | --- | --- | --- | --- |"]
    for method, (last, best) in paper.items():
        curve = study["psnr"].sel({"method": method}).isel(image=0)
        ours_last = float(np.nanmean([c.dropna("step").values[-1] for c in curve]))
        ours_best = float(curve.max("step").mean())
        rows.append(f"| {method} | {last:.2f} | {best:.2f} | {ours_last:.2f} | {ours_best:.2f} |")
    return "\n".join(rows) + (
        "\n\nPaper: 256 px, its network, 50 000 steps, last = mean of the last 100 steps; "
        "pyrodip: this scale's settings, last = the smoothed image at the last step."
    )


def reproduce(plan: Plan, out: str | Path, progress: bool = True) -> Path:
    """Run ``plan`` into ``out`` and return the path of ``results.md``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    device = plan.settings.get("device", "cpu")
    with contextlib.ExitStack() as stack:
        executor = (stack.enter_context(dask_executor(workers=plan.workers, device=device))
                    if plan.workers else SyncExecutor())
        tuned, tables = {}, {}
        for domain in plan.domains:
            _say(progress, f"{domain.name}: BO on {Path(domain.tuning).name}")
            tuned[domain.name] = tune(plan, domain, out / domain.name / "bo", executor, progress)
        for domain in plan.domains:
            _say(progress, f"{domain.name}: comparing {', '.join(plan.methods)}, {TUNED}")
            tables[domain.name] = compare(
                plan, domain, tuned[domain.name], out / domain.name / "compare", executor, progress
            )
    text = results_markdown(plan, out, tables, tuned, time.perf_counter() - start)
    with atomic_path(out / "results.md") as tmp:
        tmp.write_text(text)
    return out / "results.md"


def _say(progress: bool, text: str) -> None:
    if progress:
        print(f"reproduce: {text}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m experiments.reproduce", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--scale", default="cpu", help="a [scale.NAME] of the file [cpu]")
    parser.add_argument("--out", type=Path, help="output folder [runs/reproduce-SCALE]")
    parser.add_argument("--file", type=Path, default=DEFAULT_FILE,
                        help="the reproduction file [experiments/reproduce.toml]")
    parser.add_argument("--domain", action="append", dest="domains", metavar="NAME",
                        help="only this domain (repeatable) [all]")
    parser.add_argument("--quiet", action="store_true", help="no progress output")
    args = parser.parse_args(argv)
    try:
        plan = Plan.from_toml(args.file, args.scale, args.domains)
        path = reproduce(plan, args.out or Path("runs") / f"reproduce-{args.scale}",
                         progress=not args.quiet)
    except PyrodipError as error:
        print(f"reproduce: error: {error}", file=sys.stderr)
        return 2
    print(path.read_text())
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
