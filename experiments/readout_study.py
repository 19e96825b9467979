"""Which image an MFVI fit should return, and how fast it gets there: every readout of the same
fits scored against the truth.

    python -m experiments.readout_study run --stage tune --out runs/readout --workers 2
    python -m experiments.readout_study run --stage report --out runs/readout --workers 2
    python -m experiments.readout_study run --stage long --out runs/readout --workers 2
    python -m experiments.readout_study report --out runs/readout

Gaussian denoising (std 0.1, clipped to [0, 1] as the paper did) at 128 px, seeds 0, 1, 2, the
same observation for every setting of a seed. Every MFVI fit averages its last 20 % of steps
(``average``), which only watches the fit, so one fit is scored by each readout:

- ``final_25`` / ``final_200``: the predictive mean of 25 / 200 weight samples at the final
  parameters, without input jitter (``final_25`` is what ``readout=final`` returns);
- ``final_jitter``: 25 weight samples at the final parameters, each with the input jitter the
  training renders have;
- ``means``: the image at the guide's means (no sampling);
- ``ema``: the exponential moving average (0.99) of the training renders (``smoothed``);
- ``renders``: the uniform mean of the training renders of the last 20 % of steps;
- ``params``: 25 weight samples at the guide's parameters averaged over those steps.

Stages (:data:`STAGES`): ``tune`` (the settings of :data:`SETTINGS` and DIP on the second
X-ray and OCT images, 1000 steps), ``long`` (the chosen setting on the second X-ray image at
10 000 steps: the drift after the default steps) and ``report`` (the first images and the CT
sample: the earlier default, the defaults the code has now and DIP, whose best step is the
oracle, with the classical baselines). ``report`` writes ``OUT/report.md`` and
``OUT/time_to_quality.png``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

from experiments.common import (
    DATA,
    PLUS_MINUS,
    SEEDS,
    clipped_observation,
    finished,
    interval,
    run_fits,
    study_main,
    table,
)
from pyrodip.evaluate.metrics import psnr
from pyrodip.infer.elbo import FastELBO
from pyrodip.infer.predictive import RunningMoments, predict
from pyrodip.run.config import RunConfig
from pyrodip.studies.grid import GridRun, Hooks, run_metrics

#: domain -> (the reported image, the tuning image)
IMAGES = {"xray": ("denoising/xray.jpg", "denoising/xray2.png"),
          "oct": ("denoising/oct.png", "denoising/oct2.png"),
          "ct": ("sample:ct",)}
SIZE = 128
BASE = {"task": "denoise", "average": 0.2}
#: The MFVI settings compared; ``before`` is the default before this study.
SETTINGS = {
    "before": {"temperature": 0.1, "init_scale": 0.1, "lr_decay": 0.0},
    "before_anneal": {"temperature": 0.1, "init_scale": 0.1, "lr_decay": 0.3},
    "fast": {"temperature": 0.3, "init_scale": 0.01, "lr_decay": 0.0},
    "fast_anneal": {"temperature": 0.3, "init_scale": 0.01, "lr_decay": 0.3},
    "fast_anneal_half": {"temperature": 0.3, "init_scale": 0.01, "lr_decay": 0.5},
    "fast_cold": {"temperature": 0.1, "init_scale": 0.01, "lr_decay": 0.0},
    "fast_cold_anneal": {"temperature": 0.1, "init_scale": 0.01, "lr_decay": 0.3},
}
READOUT_NAMES = ("final_25", "final_200", "final_jitter", "means", "ema", "renders", "params")
#: stage -> (image index, settings names, steps, domains); ``shipped``: the code's defaults;
#: ``dip``: plain DIP.
STAGES = {
    "tune": (1, (*SETTINGS, "dip"), 1000, ("xray", "oct")),
    "long": (1, ("fast_cold_anneal",), 10000, ("xray",)),
    "report": (0, ("before", "shipped", "dip"), 1000, ("xray", "oct", "ct")),
}


def runs(stage: str, smoke: bool = False) -> list[GridRun]:
    """The fits of ``stage``, seed by seed."""
    image, names, steps, domains = STAGES[stage]
    found = []
    for seed in SEEDS:
        for domain in domains:
            paths = IMAGES[domain]
            for name in names:
                settings = {**BASE, "size": SIZE, "steps": 30 if smoke else steps}
                if name in ("dip", "shipped"):  # the code's defaults
                    settings = {"task": "denoise", "size": SIZE, "steps": settings["steps"],
                                **({"method": "dip"} if name == "dip" else {})}
                else:
                    settings.update(SETTINGS[name], readout="final")
                path = paths[image]
                path = path if path.startswith("sample:") else str(DATA / path)
                config = RunConfig(image=path, seed=seed, **settings)
                found.append(GridRun(f"{stage}_{domain}_{name}_seed{seed}", config))
    return found


@torch.no_grad()
def readout_metrics(result, observation) -> dict:
    """The ``metrics`` hook: the PSNR of every readout (:data:`READOUT_NAMES`) against the
    truth, the best step of the EMA's and the current image's PSNR curves, and those curves
    every 25 steps."""
    truth = observation.truth.unsqueeze(0)
    curves = result.history.curves
    found = {"curve_ema": curves["psnr"][24::25].tolist(),
             "curve_current": curves["psnr_current"][24::25].tolist(),
             "best_current": float(curves["psnr_current"].max()),
             "best_ema": float(curves["psnr"].max())}
    model, guide = result.model, result.guide
    if "renders" not in result.readouts:  # DIP: nothing averaged
        return found
    images = {"final_25": result.readouts["final"], "ema": result.smoothed,
              "renders": result.readouts["renders"], "params": result.readouts["params"]}
    images["final_200"] = predict(model, guide, num_samples=200).mean
    images["means"] = model.render({site: guide.loc(site) for site in guide.sites})[0][0]
    elbo = FastELBO(model, guide, checked=True)
    variational = elbo.variational()
    jittered = RunningMoments()
    for _ in range(25):
        jittered.add(model.render(elbo.draw(variational), jitter=True)[0][0])
    images["final_jitter"] = jittered.prediction().mean
    found["readouts"] = {name: float(psnr(images[name][None], truth)[0])
                         for name in READOUT_NAMES}
    return found


HOOKS = Hooks(observe=clipped_observation, metrics=readout_metrics, baselines=False)
REPORT_HOOKS = Hooks(observe=clipped_observation, metrics=readout_metrics)


def run_stage(stage: str, out: Path, workers: int, smoke: bool = False,
              match: list[str] | None = None) -> None:
    """Run the fits of ``stage`` that ``out`` lacks."""
    hooks = REPORT_HOOKS if stage == "report" else HOOKS
    run_fits(runs(stage, smoke), out, hooks, workers, match, desc=stage)


def report(out: Path) -> str:
    """``OUT/report.md``: per stage and domain, each setting's readouts (mean over seeds)."""
    lines = ["# Readouts of MFVI fits", "", PLUS_MINUS, ""]
    for stage in STAGES:
        datasets = finished(out, [run.name for run in runs(stage)])
        if not datasets:
            continue
        lines += [f"## {stage} ({STAGES[stage][2]} steps)", ""]
        rows = []
        for domain in STAGES[stage][3]:
            for name in STAGES[stage][1]:
                found = [run_metrics(ds) | {"psnr": float(ds.attrs["mean_psnr"]),
                                            "seconds": float(ds.attrs["wall_time_s"]),
                                            "bm3d": _bm3d(ds)}
                         for key, ds in datasets.items() if f"_{domain}_{name}_seed" in key]
                if not found:
                    continue
                row = [domain, name, str(len(found)), interval([f["psnr"] for f in found])]
                row.append(interval([f["best_current"] for f in found]))
                row.append(interval([f["best_ema"] for f in found]))
                row += [interval([f["readouts"][r] for f in found]) if "readouts" in found[0]
                        else "" for r in READOUT_NAMES]
                row += [interval([f["bm3d"] for f in found]),
                        interval([f["seconds"] for f in found])]
                rows.append(row)
        lines += table(["domain", "setting", "seeds", "returned", "best current step",
                        "best EMA step",
                        *READOUT_NAMES, "BM3D", "seconds"], rows)
    lines += drift_table(out)
    text = "\n".join(lines)
    (out / "report.md").write_text(text)
    plot_curves(out)
    return text


#: The steps at which :func:`drift_table` reads the long fits' EMA curve.
DRIFT_STEPS = (1000, 3000, 5000, 7000, 10000)


def drift_table(out: Path) -> list[str]:
    """The long stage's EMA image along the fit (mean over seeds), beside the same setting's
    returned image at the default steps (the tune stage, the same seeds)."""
    if "long" not in STAGES:
        return []
    rows = []
    _, names, steps, domains = STAGES["long"]
    for domain in domains:
        for name in names:
            long = finished(out, [f"long_{domain}_{name}_seed{seed}" for seed in SEEDS])
            short = finished(out, [f"tune_{domain}_{name}_seed{seed}" for seed in SEEDS])
            if not long:
                continue
            curves = [run_metrics(ds)["curve_ema"] for ds in long.values()]
            row = [domain, name, str(len(long)),
                   interval([float(ds.attrs["mean_psnr"]) for ds in short.values()])]
            row += [interval([c[step // 25 - 1] for c in curves if len(c) >= step // 25])
                    for step in DRIFT_STEPS]
            row += [interval([run_metrics(ds)["readouts"]["renders"] for ds in long.values()]),
                    interval([max(c) for c in curves])]
            rows.append(row)
    if not rows:
        return []
    return [f"## drift ({steps} steps)", "", *table(
        ["domain", "setting", "seeds", "returned at 1000 (tune)",
         *(f"EMA at {step}" for step in DRIFT_STEPS), "renders at the end", "best EMA"],
        rows)]


#: The curves drawn by :func:`plot_curves`: (stage, setting, curve, colour).
DRAWN = (("tune", "before", "curve_ema", "tab:gray"),
         ("tune", "fast_cold_anneal", "curve_ema", "tab:blue"),
         ("long", "fast_cold_anneal", "curve_ema", "tab:cyan"),
         ("tune", "dip", "curve_current", "tab:red"))


def plot_curves(out: Path) -> None:
    """``OUT/time_to_quality.png``: on each tuning image, the mean PSNR over seeds of the
    EMA image of MFVI's fits (the earlier default and the shipped one, at the default steps
    and 10x) and of DIP's current image, against steps and against seconds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    domains = STAGES["tune"][3] if "tune" in STAGES else ()
    if not domains:
        return
    fig, axes = plt.subplots(2, len(domains), figsize=(5 * len(domains), 6.5), squeeze=False)
    drawn = False
    for column, domain in enumerate(domains):
        for stage, setting, curve, color in DRAWN:
            names = [f"{stage}_{domain}_{setting}_seed{seed}" for seed in SEEDS]
            found = list(finished(out, names).values())
            if not found:
                continue
            drawn = True
            values = np.mean([run_metrics(ds)[curve] for ds in found], 0)
            steps = 25 * np.arange(1, len(values) + 1)
            per_step = np.mean([float(ds.attrs["wall_time_s"]) / int(ds.attrs["steps"])
                                for ds in found])
            label = f"{setting}, {len(values) * 25} steps ({curve.removeprefix('curve_')})"
            for row, x in enumerate((steps, steps * per_step)):
                axes[row, column].plot(x, values, color=color, lw=1, label=label)
        axes[0, column].set_title(f"{domain}: {IMAGES[domain][1]}", fontsize=9)
        for row, unit in enumerate(("step", "seconds (one thread)")):
            axes[row, column].set_xscale("log")
            axes[row, column].set_xlabel(unit)
            axes[row, column].set_ylabel("PSNR (dB)")
    if drawn:
        axes[0, 0].legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(out / "time_to_quality.png", dpi=110)
    plt.close(fig)


def _bm3d(dataset) -> float:
    if "classical" not in dataset:
        return float("nan")
    names = dataset["classical"].values.tolist()
    return float(dataset["classical_psnr"].values[names.index("bm3d")])


def main(argv: list[str] | None = None) -> int:
    return study_main(argv, "experiments.readout_study", __doc__, tuple(STAGES),
                      "30 steps per fit", run_stage, report)


if __name__ == "__main__":
    sys.exit(main())

