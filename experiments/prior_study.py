"""What the weight prior and the temperature do, network by network (issue 14).

    python -m experiments.prior_study run --stage sweep --out runs/prior --workers 2
    python -m experiments.prior_study run --stage networks --out runs/prior --workers 2
    python -m experiments.prior_study run --stage flat --out runs/prior --workers 2
    python -m experiments.prior_study report --out runs/prior

Stages (Gaussian noise 0.1 clipped to [0, 1], the same observation for every setting of a seed;
seeds 0, 1, 2):

- ``sweep``: the BatchNorm network on the tuning images (``oct2.png``, ``xray2.png``) at 64 px,
  3200 steps (10x the step where DIP peaks there): MFVI at prior scales 0.01 ... 1 with the
  temperature fixed, and at temperatures 0.03 ... 3 with the prior scale fixed; DIP beside.
- ``networks``: the same images and steps for the networks without BatchNorm (``none``,
  ``scaled``): DIP and MFVI at three prior scales each.
- ``flat``: the defaults (``RunConfig()``'s MFVI) on the report images (``oct.png``,
  ``xray.jpg``) at 128 px for 6000 steps, and DIP for 3000 steps (its best, oracle-stopped).

The fits run on :mod:`pyrodip.studies.grid` (:mod:`experiments.common`): each writes
``OUT/runs/NAME.nc`` when it ends; a stage run again skips the fits it has, so an interrupted
study continues where it stopped (the ``OUT/jobs/*.json`` records of earlier versions are not
read: run the study again into a new folder). ``report`` writes ``OUT/report.md`` (tables with
the mean and the 95 % t-interval half-width over seeds) and ``OUT/curves_STAGE.png``.
``--smoke`` runs every stage with 40 steps on 32 px images (for the tests).
"""

from __future__ import annotations

import dataclasses
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import xarray as xr

from experiments.common import DATA as SHARED_DATA
from experiments.common import (
    PLUS_MINUS,
    SEEDS,
    clipped_observation,
    finished,
    run_fits,
    study_main,
    table,
)
from pyrodip.evaluate.statistics import format_interval
from pyrodip.run.config import RunConfig
from pyrodip.studies.grid import GridRun, Hooks, run_metrics

DATA = SHARED_DATA / "denoising"
STAGES = ("sweep", "networks", "flat")
TUNING_IMAGES = {"oct": "oct2.png", "xray": "xray2.png"}
REPORT_IMAGES = {"oct": "oct.png", "xray": "xray.jpg"}
#: The fixed temperature of the prior-scale sweep and the fixed scale of the temperature sweep.
SWEEP_TEMPERATURE, SWEEP_SCALE = 0.3, 0.1
PRIOR_SCALES = {"batch": (0.01, 0.03, 0.1, 0.3, 1.0), "scaled": (0.3, 1.0, 3.0), "none": (0.1,)}
#: Adam's lr 0.01 moves He-initialised weights (std ~0.08) by ~12 % per step: the ``none``
#: network collapses to a constant image within 100 steps at it (measured), so it runs at 1e-3.
NETWORK_SETTINGS = {"batch": (), "scaled": (("normalization", "scaled"),),
                    "none": (("normalization", "none"), ("lr", 0.001))}
TEMPERATURES = (0.03, 0.1, 0.3, 1.0, 3.0)
#: The guide's initial std in the sweep and networks stages (``flat`` runs the defaults).
SWEEP_INIT_SCALE = 0.01
CURVE_EVERY = 10  # steps between the stored curve points


@dataclass(frozen=True)
class Job:
    """One fit: a run config's changes on one image and seed."""

    stage: str
    domain: str
    image: str
    size: int
    steps: int
    seed: int
    settings: tuple[tuple[str, object], ...]

    @property
    def name(self) -> str:
        tags = "_".join(f"{key}-{value}" for key, value in self.settings) or "defaults"
        return f"{self.stage}_{self.domain}_{self.size}px_{tags}_seed{self.seed}"

    def config(self) -> RunConfig:
        settings = dict(self.settings)
        if self.stage != "flat":  # the sweeps ran before mfvi's guide started at std 0.1
            settings.setdefault("init_scale", SWEEP_INIT_SCALE)
        return RunConfig(image=str(DATA / self.image), size=self.size, steps=self.steps,
                         seed=self.seed, samples=16, **settings)


def jobs(stage: str, smoke: bool = False) -> list[Job]:
    """The fits of ``stage`` (see the module's docstring)."""
    if stage == "flat":
        images, size = REPORT_IMAGES, 128
        grid = [(("method", "mfvi"),), (("method", "dip"), ("normalization", "batch"))]
        steps = {"mfvi": 6000, "dip": 3000}
    else:
        images, size = TUNING_IMAGES, 64
        steps = {"mfvi": 3200, "dip": 3200}
        grid = []
        for norm in ("batch",) if stage == "sweep" else ("scaled", "none"):
            net = NETWORK_SETTINGS[norm]
            grid.append((("method", "dip"), *net))
            grid += [(("method", "mfvi"), *net, ("prior_scale", scale),
                      ("temperature", SWEEP_TEMPERATURE)) for scale in PRIOR_SCALES[norm]]
        if stage == "sweep":
            grid += [(("method", "mfvi"), ("prior_scale", SWEEP_SCALE), ("temperature", t))
                     for t in TEMPERATURES if t != SWEEP_TEMPERATURE]
    if smoke:
        size, steps = 32, {name: 40 for name in steps}
    return [Job(stage, domain, image, size, steps[dict(settings)["method"]], seed, settings)
            for settings in grid for domain, image in images.items() for seed in SEEDS]


def guide_metrics(result, observation) -> dict:
    """The ``metrics`` hook: mean std and median relative std (std / abs(mean)) of a mean-field
    guide's weights (empty for a guide without scales, e.g. DIP's)."""
    import torch

    guide = result.guide
    if not hasattr(guide, "scales"):
        return {}
    with torch.no_grad():
        scales = guide.scales().flatten()
        locs = guide.locs.flatten()[: scales.numel()]
        return {"mean_std": float(scales.mean()),
                "median_relative_std": float((scales / locs.abs().clamp_min(1e-12)).median())}


HOOKS = Hooks(observe=clipped_observation, metrics=guide_metrics, baselines=False)


def run_stage(stage: str, out: Path, workers: int, smoke: bool = False,
              match: list[str] | None = None) -> None:
    """Run the fits of ``stage`` that ``out`` lacks (only those whose name contains one of
    ``match``, when given)."""
    runs = [GridRun(job.name, job.config()) for job in jobs(stage, smoke)]
    run_fits(runs, out, HOOKS, workers, match, desc=stage)


def record(job: Job, dataset: xr.Dataset) -> dict:
    """What the report reads of one fit."""
    psnr_curve, loss = dataset["psnr"].values, dataset["loss"].values
    return {
        "job": dataclasses.asdict(job),
        "config": json.loads(dataset.attrs["config"]),
        "psnr_best": float(psnr_curve.max()),
        "step_best": int(psnr_curve.argmax()) + 1,
        "psnr_last": float(psnr_curve[-1]),
        "psnr_mean": float(dataset.attrs["mean_psnr"]),
        "std_epistemic": float(dataset.attrs["mean_std_epistemic"]),
        "plateau_step": plateau_step(loss),
        "psnr_curve": psnr_curve[CURVE_EVERY - 1::CURVE_EVERY].round(3).tolist(),
        "guide": run_metrics(dataset),
    }


def records(out: Path) -> list[dict]:
    """The records of every finished fit of every stage (at full and at smoke scale)."""
    known = {job.name: job for stage in STAGES for smoke in (False, True)
             for job in jobs(stage, smoke)}
    return [record(known[name], dataset) for name, dataset in finished(out, known).items()]


def plateau_step(loss: np.ndarray, window: int = 100, tolerance: float = 0.01) -> int:
    """The first step from which the loss's running mean (over ``window`` steps) stays within
    ``tolerance`` of its total fall from its final value.

    >>> plateau_step(np.r_[np.linspace(10, 0, 500), np.zeros(500)], window=10)
    500
    """
    if len(loss) < 2 * window:
        return len(loss)
    smooth = np.convolve(loss, np.ones(window) / window, mode="valid")
    band = tolerance * max(smooth[0] - smooth[-1], 1e-12)
    outside = np.nonzero(np.abs(smooth - smooth[-1]) > band)[0]
    return int(outside[-1] + 1 + window if len(outside) else window)


def setting_label(settings: dict) -> str:
    method = settings.get("method")
    norm = settings.get("normalization", "batch")
    if "lr" in settings:
        norm += f", lr {settings['lr']}"
    if method == "dip":
        return f"dip ({norm})"
    if "prior_scale" not in settings and "temperature" not in settings:
        return f"mfvi ({norm}) defaults"
    return f"mfvi ({norm}) sigma_p={settings['prior_scale']} T={settings['temperature']}"


def summary_rows(records: list[dict]) -> list[list[str]]:
    """One row per (stage, domain, setting): the means over seeds."""
    groups: dict[tuple, list[dict]] = {}
    for record in records:
        job = record["job"]
        settings = dict(job["settings"])
        groups.setdefault((job["stage"], job["domain"], setting_label(settings)), []).append(
            record)
    rows = []
    for (stage, domain, label), group in groups.items():
        drop = [r["psnr_best"] - r["psnr_last"] for r in group]
        rows.append([
            stage, domain, label, str(len(group)),
            format_interval([r["psnr_last"] for r in group]),
            format_interval([r["psnr_best"] for r in group]),
            format_interval(drop),
            format_interval([r["psnr_mean"] for r in group]),
            f"{np.mean([r['std_epistemic'] for r in group]):.4f}",
            f"{np.mean([r['step_best'] for r in group]):.0f}",
            f"{np.mean([r['plateau_step'] for r in group]):.0f}",
            f"{np.mean([r['guide'].get('median_relative_std', np.nan) for r in group]):.1f}",
            f"{np.mean([weight_std_ratio(r) for r in group]):.2f}",
        ])
    return rows


HEADER = ["stage", "image", "setting", "seeds", "PSNR last", "PSNR best", "best - last",
          "PSNR pred. mean", "mean std", "best step", "plateau step", "median std / abs(mu)",
          "weight std / sigma_p"]


def weight_std_ratio(record: dict) -> float:
    """The guide's mean weight std over the prior's scale (1: the posterior's spread is the
    prior's)."""
    std = record["guide"].get("mean_std")
    return np.nan if std is None else std / record["config"]["prior_scale"]


def report(out: Path) -> Path:
    """Write ``OUT/report.md`` and ``OUT/curves_STAGE.png`` from the finished fits."""
    found = records(out)
    if not found:
        raise SystemExit(f"no fits in {out / 'runs'}: run a stage first")
    lines = [f"{PLUS_MINUS}; PSNR in dB.", "",
             *table(HEADER, summary_rows(found))]
    path = out / "report.md"
    path.write_text("\n".join(lines))
    plot_curves(found, out)
    return path


def plot_curves(records: list[dict], out: Path) -> None:
    """Mean PSNR curve over seeds of every setting, one panel per stage and image."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    for stage in sorted({r["job"]["stage"] for r in records}):
        chosen = [r for r in records if r["job"]["stage"] == stage]
        domains = sorted({r["job"]["domain"] for r in chosen})
        fig, axes = plt.subplots(1, len(domains), figsize=(6 * len(domains), 4), squeeze=False)
        for ax, domain in zip(axes[0], domains, strict=True):
            curves: dict[str, list] = {}
            for r in chosen:
                if r["job"]["domain"] == domain:
                    label = setting_label(dict(r["job"]["settings"]))
                    curves.setdefault(label, []).append(r["psnr_curve"])
            for label, group in sorted(curves.items()):
                mean = np.mean(group, axis=0)
                ax.plot(np.arange(1, len(mean) + 1) * CURVE_EVERY, mean, label=label, lw=1)
            ax.set(title=f"{stage}: {domain}", xlabel="step", ylabel="PSNR (dB), smoothed")
            ax.set_ylim(bottom=max(ax.get_ylim()[0], 18))
            ax.legend(fontsize=6)
        fig.tight_layout()
        fig.savefig(out / f"curves_{stage}.png", dpi=110)
        plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    return study_main(argv, "experiments.prior_study", __doc__, STAGES,
                      "40 steps on 32 px images", run_stage, report)


if __name__ == "__main__":
    sys.exit(main())
