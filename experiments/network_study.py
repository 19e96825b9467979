"""Which network MFVI should fit: BatchNorm (``batch``), no normalisation (``none``) or
weight-scaled convs (``scaled``), each at its best temperature and prior scale.

    python -m experiments.network_study run --stage tune --out runs/network --workers 2
    python -m experiments.network_study run --stage report --out runs/network --workers 2
    python -m experiments.network_study report --out runs/network

Gaussian denoising (std 0.1, clipped to [0, 1] as the paper did) at 128 px and the default
steps; every other setting is MFVI's default. ``tune`` fits each network's grid of
(temperature, prior scale) (:data:`GRID`) on the second X-ray and OCT images, seed 0;
``report`` fits each network at the grid point with the best mean PSNR over the tuning images,
on the first images, seeds 0, 1, 2. The score is the image the fit returns; the table also
gives the best step of the EMA curve of the training renders.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from experiments.common import (
    DENOISING_IMAGES,
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
from pyrodip.run.config import RunConfig
from pyrodip.studies.grid import GridRun, Hooks, run_metrics

#: domain -> (the reported image, the tuning image)
IMAGES = DENOISING_IMAGES
SIZE = 128
#: label -> (the network's normalisation, other settings, its (temperature, prior scale)
#: grid); under BatchNorm the prior's scale is inert (``docs/bo.md``), so only the temperature
#: varies. ``none`` also runs at lr 1e-3, at which DIP on it does not collapse
#: (``docs/prior.md``).
GRID = {
    "batch": ("batch", {}, [(t, 0.1) for t in (0.03, 0.1, 0.3)]),
    "none": ("none", {}, [(t, s) for s in (0.03, 0.1) for t in (0.1, 0.3)]),
    "none_lr0.001": ("none", {"lr": 0.001}, [(t, s) for s in (0.03, 0.1) for t in (0.1, 0.3)]),
    "scaled": ("scaled", {}, [(t, s) for s in (0.3, 1.0) for t in (0.1, 0.3)]),
}
TUNE_SEEDS = (0,)
STAGES = ("tune", "report")


def _config(domain: str, image: int, network: str, point: tuple[float, float], seed: int,
            smoke: bool) -> RunConfig:
    normalization, settings, _ = GRID[network]
    temperature, prior_scale = point
    return RunConfig(image=image_path(IMAGES[domain][image]), task="denoise", size=SIZE,
                     seed=seed, normalization=normalization, temperature=temperature,
                     prior_scale=prior_scale, **settings, **({"steps": 30} if smoke else {}))


def _name(stage: str, domain: str, network: str, point: tuple[float, float], seed: int) -> str:
    return f"{stage}_{domain}_{network}_t{point[0]:g}_s{point[1]:g}_seed{seed}"


def tune_runs(smoke: bool = False) -> list[GridRun]:
    """Every network's grid on the tuning images."""
    return [GridRun(_name("tune", domain, network, point, seed),
                    _config(domain, 1, network, point, seed, smoke))
            for seed in TUNE_SEEDS for domain in IMAGES
            for network, (_, _, points) in GRID.items() for point in points]


def best_points(out: Path) -> dict[str, tuple[float, float]]:
    """Per network, the grid point whose returned image has the best mean PSNR over the
    tuning fits (only networks whose tuning fits have all finished)."""
    chosen = {}
    for network, (_, _, points) in GRID.items():
        scores = {}
        for point in points:
            names = [_name("tune", domain, network, point, seed)
                     for seed in TUNE_SEEDS for domain in IMAGES]
            found = finished(out, names)
            if len(found) == len(names):
                scores[point] = np.mean([float(ds.attrs["mean_psnr"]) for ds in found.values()])
        if len(scores) == len(points):
            chosen[network] = max(scores, key=scores.get)
    return chosen


def report_runs(out: Path, smoke: bool = False) -> list[GridRun]:
    """Each network at its best grid point on the reported images."""
    return [GridRun(_name("report", domain, network, point, seed),
                    _config(domain, 0, network, point, seed, smoke))
            for seed in SEEDS for domain in IMAGES
            for network, point in best_points(out).items()]


def ema_metrics(result, observation) -> dict:
    """The ``metrics`` hook: the best step of the EMA curve of the training renders."""
    return {"best_ema": float(result.history.curves["psnr"].max())}


HOOKS = Hooks(observe=clipped_observation, metrics=ema_metrics, baselines=False)


def run_stage(stage: str, out: Path, workers: int, smoke: bool = False,
              match: list[str] | None = None) -> None:
    """Run the fits of ``stage`` that ``out`` lacks (``report`` after ``tune``)."""
    runs = tune_runs(smoke) if stage == "tune" else report_runs(out, smoke)
    if not runs:
        print(f"{stage}: no network has finished its tuning fits", file=sys.stderr)
    run_fits(runs, out, HOOKS, workers, match, desc=stage)


def report(out: Path) -> str:
    """``OUT/report.md``: the tuning grid (seed 0) and the reported fits (mean over seeds)."""
    lines = ["# The network of MFVI", "", PLUS_MINUS, ""]
    rows = []
    for network, (_, _, points) in GRID.items():
        for point in points:
            row = [network, f"{point[0]:g}", f"{point[1]:g}"]
            for domain in IMAGES:
                found = finished(out, [_name("tune", domain, network, point, seed)
                                       for seed in TUNE_SEEDS])
                row.append(interval([float(ds.attrs["mean_psnr"]) for ds in found.values()]))
            rows.append(row)
    lines += ["## tune: returned image, seed 0 (tuning images)", "",
              *table(["network", "temperature", "prior scale",
                      *(IMAGES[d][1] for d in IMAGES)], rows)]
    rows = []
    for network, point in best_points(out).items():
        for domain in IMAGES:
            found = finished(out, [_name("report", domain, network, point, seed)
                                   for seed in SEEDS]).values()
            if not found:
                continue
            rows.append([domain, network, f"{point[0]:g}", f"{point[1]:g}", str(len(found)),
                         interval([float(ds.attrs["mean_psnr"]) for ds in found]),
                         interval([run_metrics(ds)["best_ema"] for ds in found]),
                         interval([float(ds.attrs["wall_time_s"]) for ds in found])])
    if rows:
        lines += ["## report: each network at its tuned point (reported images)", "",
                  *table(["domain", "network", "temperature", "prior scale", "seeds",
                          "returned", "best EMA step", "seconds"], rows)]
    text = "\n".join(lines)
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.md").write_text(text)
    return text


def main(argv: list[str] | None = None) -> int:
    return study_main(argv, "experiments.network_study", __doc__, STAGES,
                      "30 steps per fit", run_stage, report)


if __name__ == "__main__":
    sys.exit(main())
