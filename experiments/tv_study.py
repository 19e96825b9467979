"""Whether a total-variation prior on the image (``image_prior=tv``) beside the weight prior
brings MFVI's denoising closer to BM3D.

    python -m experiments.tv_study run --stage tune --out runs/tv --workers 2
    python -m experiments.tv_study run --stage report --out runs/tv --workers 2
    python -m experiments.tv_study report --out runs/tv

Gaussian denoising (std 0.1, the observation clipped to [0, 1] with ``clip``, as the paper
did) at 128 px and the default steps, MFVI's defaults otherwise. ``tune`` fits each TV weight
of :data:`WEIGHTS` on the second X-ray and OCT images, seed 0; ``report`` fits no image prior
and the weight with the best mean PSNR over the tuning fits on the first images, seeds 0, 1,
2, with the classical baselines on the same observations. Scored: the returned image (PSNR,
SSIM) and the coverage of its calibrated 68 % and 95 % intervals against the truth.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from experiments.common import (
    PLUS_MINUS,
    SEEDS,
    classical_scores,
    finished,
    image_path,
    interval,
    run_fits,
    study_main,
    table,
)
from pyrodip.run.config import RunConfig
from pyrodip.studies.grid import GridRun, Hooks

#: domain -> (the reported image, the tuning image)
IMAGES = {"xray": ("denoising/xray.jpg", "denoising/xray2.png"),
          "oct": ("denoising/oct.png", "denoising/oct2.png")}
SIZE = 128
#: The TV weights tuned (lam in -lam TV(x); ``denoise_tv_chambolle``'s weight 0.1 at std 0.1
#: is lam = 10, see :mod:`pyrodip.bayes.image_priors`).
WEIGHTS = (0.3, 1.0, 3.0, 10.0)
TUNE_SEEDS = (0,)
STAGES = ("tune", "report")
#: result attribute -> column
SCORES = {"mean_psnr": "PSNR", "mean_ssim": "SSIM", "coverage_68": "coverage 68 %",
          "coverage_95": "coverage 95 %"}


def _run(stage: str, domain: str, weight: float | None, seed: int, smoke: bool) -> GridRun:
    image = IMAGES[domain][0 if stage == "report" else 1]
    prior = {} if weight is None else {"image_prior": "tv", "tv_weight": weight}
    label = "none" if weight is None else f"tv{weight:g}"
    return GridRun(f"{stage}_{domain}_{label}_seed{seed}",
                   RunConfig(image=image_path(image), task="denoise", size=SIZE, seed=seed,
                             clip=True, **prior, **({"steps": 30} if smoke else {})))


def tune_runs(smoke: bool = False) -> list[GridRun]:
    """Every TV weight on the tuning images."""
    return [_run("tune", domain, weight, seed, smoke)
            for seed in TUNE_SEEDS for domain in IMAGES for weight in WEIGHTS]


def best_weight(out: Path) -> float | None:
    """The TV weight whose returned images have the best mean PSNR over the tuning fits
    (None until they have all finished)."""
    runs = tune_runs()
    found = finished(out, [run.name for run in runs])
    if len(found) < len(runs):
        return None
    means = {weight: np.mean([float(found[_run("tune", d, weight, s, False).name]
                                    .attrs["mean_psnr"]) for s in TUNE_SEEDS for d in IMAGES])
             for weight in WEIGHTS}
    return max(means, key=means.get)


def report_runs(out: Path, smoke: bool = False) -> list[GridRun]:
    """No image prior and the tuned TV weight on the reported images."""
    weight = best_weight(out)
    if weight is None:
        return []
    return [_run("report", domain, chosen, seed, smoke)
            for seed in SEEDS for domain in IMAGES for chosen in (None, weight)]


def run_stage(stage: str, out: Path, workers: int, smoke: bool = False,
              match: list[str] | None = None) -> None:
    """Run the fits of ``stage`` that ``out`` lacks (``report`` after ``tune``)."""
    runs = tune_runs(smoke) if stage == "tune" else report_runs(out, smoke)
    if not runs:
        print(f"{stage}: the tuning fits have not all finished", file=sys.stderr)
    run_fits(runs, out, Hooks(baselines=stage == "report"), workers, match, desc=stage)


def report(out: Path) -> str:
    """``OUT/report.md``: per stage, domain and image prior, the scores (mean over seeds),
    and BM3D's on the same observations in the report stage."""
    lines = ["# A total-variation prior on the image beside the weight prior", "", PLUS_MINUS,
             ""]
    weight = best_weight(out)
    stages = {"tune": [(w, TUNE_SEEDS) for w in WEIGHTS],
              "report": [(None, SEEDS), (weight, SEEDS)] if weight is not None else []}
    for stage, labels in stages.items():
        rows = []
        for domain in IMAGES:
            for chosen, seeds in labels:
                names = [_run(stage, domain, chosen, seed, False).name for seed in seeds]
                found = list(finished(out, names).values())
                if found:
                    rows.append([domain, "none" if chosen is None else f"tv {chosen:g}",
                                 str(len(found)),
                                 *(interval([ds.attrs[key] for ds in found]) for key in SCORES),
                                 *classical_scores(found)])
        if rows:
            lines += [f"## {stage}", "", *table(
                ["domain", "image prior", "seeds", *SCORES.values(), "BM3D PSNR", "BM3D SSIM"],
                rows)]
    text = "\n".join(lines)
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.md").write_text(text)
    return text


def main(argv: list[str] | None = None) -> int:
    return study_main(argv, "experiments.tv_study", __doc__, STAGES, "30 steps per fit",
                      run_stage, report)


if __name__ == "__main__":
    sys.exit(main())
