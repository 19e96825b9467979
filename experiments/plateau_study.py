"""MFVI's result at the default steps on every domain against the same fit run for longer: is
the image ``pyrodip run`` returns the fit's plateau, and does it stay there?

    python -m experiments.plateau_study run --stage default --out runs/plateau --workers 2
    python -m experiments.plateau_study run --stage long --out runs/plateau --workers 2
    python -m experiments.plateau_study run --stage tuning --out runs/plateau --workers 2
    python -m experiments.plateau_study run --stage five --out runs/plateau --workers 2
    python -m experiments.plateau_study report --out runs/plateau

The code's defaults (no setting changed but the domain's task and the steps) on each domain of
:data:`experiments.calibration_fits.DOMAINS`, 128 px, Gaussian noise clipped to [0, 1] as the
paper did, the same observation for every stage of a seed, seeds 0, 1, 2 (:data:`STAGES`):
``default`` fits :data:`~pyrodip.run.steps.DEFAULT_STEPS` steps, ``long`` ten times as many
and ``five`` five times as many on the report images, ``tuning`` five times as many on the
tuning images (the learning rate annealed over the last 30 % of each fit, as the defaults do at
any length). Every fit records the PSNR of its EMA image every 25 steps and of each readout
(:func:`experiments.readout_study.readout_metrics`). A ``long`` fit takes about 20 minutes on
one thread at 128 px; ``--match seed0`` runs one seed, ``--match _us_`` one domain. ``report``
writes ``OUT/report.md`` and ``OUT/plateau.png`` (the EMA image's PSNR along the long fits,
relative to the default steps).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from experiments.calibration_fits import DOMAINS
from experiments.common import (
    PLUS_MINUS,
    SEEDS,
    clipped_observation,
    finished,
    image_path,
    interval,
    run_fits,
    study_main,
    table,
)
from experiments.readout_study import readout_metrics
from pyrodip.run.config import RunConfig
from pyrodip.run.steps import DEFAULT_STEPS
from pyrodip.studies.grid import GridRun, Hooks, run_metrics

SIZE = 128
#: stage -> the steps of its fits
STAGES = {"default": DEFAULT_STEPS, "long": 10 * DEFAULT_STEPS, "tuning": 5 * DEFAULT_STEPS,
          "five": 5 * DEFAULT_STEPS}
#: The steps at which the report reads the long fits' EMA curve.
READ_AT = (1, 3, 5, 10)  # multiples of the default steps
CURVE_EVERY = 25  # readout_metrics records the curves every 25 steps
HOOKS = Hooks(observe=clipped_observation, metrics=readout_metrics, baselines=False)


def run_name(stage: str, domain: str, seed: int) -> str:
    return f"{stage}_{domain}_seed{seed}"


def runs(stage: str, smoke: bool = False) -> list[GridRun]:
    """The fits of ``stage``: every domain's report image (its tuning image for ``tuning``),
    seed by seed, at the stage's steps."""
    steps = STAGES[stage] // (DEFAULT_STEPS // (3 * CURVE_EVERY)) if smoke else STAGES[stage]
    return [GridRun(run_name(stage, domain, seed),
                    RunConfig(image=image_path(images[stage == "tuning"]), seed=seed, size=SIZE,
                              steps=steps, **settings))
            for seed in SEEDS for domain, (*images, settings) in DOMAINS.items()]


def stage_fits(out: Path, stage: str, domain: str) -> list:
    """The finished fits of ``stage`` on ``domain``, seed by seed."""
    return list(finished(out, [run_name(stage, domain, seed) for seed in SEEDS]).values())


def ema_curve(dataset) -> np.ndarray:
    """A fit's EMA image PSNR, every :data:`CURVE_EVERY` steps."""
    return np.asarray(run_metrics(dataset)["curve_ema"])


def run_stage(stage: str, out: Path, workers: int, smoke: bool = False,
              match: list[str] | None = None) -> None:
    """Run the fits of ``stage`` that ``out`` lacks."""
    run_fits(runs(stage, smoke), out, HOOKS, workers, match, desc=stage)


def plateau_row(domain: str, short: list, long: list) -> list[str]:
    """One domain's cells: the returned image at the default steps (every seed), then over the
    seeds that have a long fit: the long fit's EMA image at :data:`READ_AT`, its returned image,
    its best EMA image and that step, the default result minus that best (paired by seed) and
    the drift (the EMA image's lowest PSNR after the default steps minus its PSNR there)."""
    by_seed = {int(ds.attrs["seed"]): ds for ds in short}
    curves = {int(ds.attrs["seed"]): ema_curve(ds) for ds in long}
    per = len(next(iter(curves.values()))) // READ_AT[-1] if curves else 0
    cells = [domain, Path(DOMAINS[domain][0]).name, str(len(short)),
             interval([float(ds.attrs["mean_psnr"]) for ds in short]), str(len(long))]
    if not long:
        return cells + [""] * (len(READ_AT) + 5)
    cells += [interval([c[k * per - 1] for c in curves.values()]) for k in READ_AT]
    cells.append(interval([float(ds.attrs["mean_psnr"]) for ds in long]))
    cells.append(interval([c.max() for c in curves.values()]))
    cells.append(", ".join(str(CURVE_EVERY * (int(c.argmax()) + 1)) for c in curves.values()))
    cells.append(interval([float(by_seed[s].attrs["mean_psnr"]) - c.max()
                           for s, c in curves.items() if s in by_seed], digits=2))
    cells.append(interval([c[per:].min() - c[per - 1] for c in curves.values()], digits=2))
    return cells


def report(out: Path) -> str:
    """``OUT/report.md`` (one row per domain) and ``OUT/plateau.png``."""
    rows = []
    for domain in DOMAINS:
        short, long = stage_fits(out, "default", domain), stage_fits(out, "long", domain)
        if short or long:
            rows.append(plateau_row(domain, short, long))
    steps = STAGES["default"]
    lines = ["# MFVI's default result against ten times the steps", "", PLUS_MINUS,
             f"(one value alone where one seed has a long fit). Drift: the EMA image's lowest "
             f"PSNR after step {steps} minus its PSNR at step {steps}.", "",
             *table(["domain", "image", "seeds", f"returned at {steps}", "long seeds",
                     *(f"EMA at {k * steps}" for k in READ_AT), f"returned at {10 * steps}",
                     "best EMA", "its step", "returned at default minus best", "drift"],
                    rows)]
    lines += five_times_table(out, "tuning") + five_times_table(out, "five")
    text = "\n".join(lines)
    (out / "report.md").write_text(text)
    plot_plateau(out)
    return text


#: The steps at which :func:`five_times_table` reads the EMA curve.
FIVE_READ_AT = (1, 2, 3, 5)  # multiples of the default steps


def five_times_table(out: Path, stage: str) -> list[str]:
    """The fits of five times the default steps of ``stage`` (``tuning``: on the tuning
    images; ``five``: on the report images): per domain the EMA image along the fit, the
    returned image and the best EMA image after the default steps minus the EMA there."""
    rows = []
    for domain in DOMAINS:
        found = stage_fits(out, stage, domain)
        curves = [ema_curve(ds) for ds in found]
        if not curves:
            continue
        per = len(curves[0]) // FIVE_READ_AT[-1]
        image = DOMAINS[domain][stage == "tuning"]
        rows.append([domain, Path(image).name, str(len(curves)),
                     *(interval([c[k * per - 1] for c in curves]) for k in FIVE_READ_AT),
                     interval([float(ds.attrs["mean_psnr"]) for ds in found]),
                     interval([c[per:].max() - c[per - 1] for c in curves])])
    if not rows:
        return []
    steps = STAGES["default"]
    return [f"## {stage}: {STAGES[stage]} steps", "", *table(
        ["domain", "image", "seeds", *(f"EMA at {k * steps}" for k in FIVE_READ_AT),
         f"returned at {STAGES[stage]}", f"best EMA after {steps} minus at {steps}"], rows)]


def plot_plateau(out: Path) -> None:
    """``OUT/plateau.png``: per domain, the long fits' EMA image PSNR minus its value at the
    default steps, against steps (mean over the seeds that have a long fit)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    drawn, top = False, 1.0
    for domain in DOMAINS:
        curves = [ema_curve(ds) for ds in stage_fits(out, "long", domain)]
        if not curves:
            continue
        per = len(curves[0]) // READ_AT[-1]
        mean = np.mean([c - c[per - 1] for c in curves], 0)
        ax.plot(CURVE_EVERY * np.arange(1, len(mean) + 1), mean, lw=1.2,
                label=f"{domain} ({len(curves)} seed{'s' * (len(curves) > 1)})")
        drawn, top = True, max(top, float(mean.max()) + 0.5)
    if drawn:
        ax.axvline(STAGES["default"], color="k", lw=0.6, ls=":")
        ax.axhspan(-0.3, 0.3, color="0.9", zorder=0)
        ax.set_xscale("log")
        ax.set_xlim(100, None)
        ax.set_ylim(-3, top)
        ax.set_xlabel("step")
        ax.set_ylabel(f"EMA PSNR minus its value at step {STAGES['default']} (dB)")
        ax.legend(fontsize=8, ncol=2)
        fig.tight_layout()
        fig.savefig(out / "plateau.png", dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    return study_main(argv, "experiments.plateau_study", __doc__, tuple(STAGES),
                      "a few steps per fit", run_stage, report)


if __name__ == "__main__":
    sys.exit(main())
