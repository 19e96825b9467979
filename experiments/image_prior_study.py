"""Whether a prior on the image beside the weight prior brings MFVI's denoising closer to
BM3D: total variation (``image_prior=tv``) or regularisation by denoising with BM3D
(``image_prior=red``), each at its weight tuned on the tuning images.

    python -m experiments.image_prior_study run --stage tune --out runs/image_prior --workers 2
    python -m experiments.image_prior_study run --stage report --out runs/image_prior --workers 2
    python -m experiments.image_prior_study report --out runs/image_prior

Gaussian denoising (std 0.1, the observation clipped to [0, 1] with ``clip``, as the paper
did) at 128 px and the default steps, MFVI's defaults otherwise. ``tune`` fits each setting of
:data:`GRID` on the second X-ray and OCT images, seed 0; ``report`` fits no image prior and,
per prior, the setting with the best mean PSNR over the tuning fits, on the first images,
seeds 0, 1, 2, with the classical baselines on the same observations. Scored: the returned
image (PSNR, SSIM) and the coverage of its calibrated 68 % and 95 % intervals against the
truth.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from experiments.common import (
    DENOISING_IMAGES,
    DENOISING_SCORES,
    PLUS_MINUS,
    SEEDS,
    classical_scores,
    finished,
    image_path,
    interval,
    paired_differences,
    run_fits,
    study_main,
    table,
)
from pyrodip.run.config import RunConfig
from pyrodip.studies.grid import GridRun, Hooks

#: domain -> (the reported image, the tuning image)
IMAGES = DENOISING_IMAGES
SIZE = 128
#: image prior -> label -> its settings. TV: lam in -lam TV(x) (``denoise_tv_chambolle``'s
#: weight 0.1 at std 0.1 is lam = 10, see :mod:`pyrodip.bayes.image_priors`); RED: its weight
#: (the likelihood's is 1 / 0.1^2 = 100) and the std BM3D is run for.
GRID = {
    "tv": {f"tv{w:g}": {"tv_weight": w} for w in (0.3, 1.0, 3.0, 10.0)},
    "red": {f"red{w:g}_s{s:g}": {"red_weight": w, "red_sigma": s}
            for w, s in ((10.0, 0.1), (30.0, 0.1), (100.0, 0.1), (100.0, 0.05))},
}
TUNE_SEEDS = (0,)
STAGES = ("tune", "report")
SCORES = DENOISING_SCORES


def _run(stage: str, domain: str, label: str, seed: int, smoke: bool) -> GridRun:
    image = IMAGES[domain][0 if stage == "report" else 1]
    prior = {} if label == "none" else {"image_prior": _family(label), **_settings(label)}
    return GridRun(f"{stage}_{domain}_{label}_seed{seed}",
                   RunConfig(image=image_path(image), task="denoise", size=SIZE, seed=seed,
                             clip=True, **prior, **({"steps": 30} if smoke else {})))


def _family(label: str) -> str:
    return next(family for family, labels in GRID.items() if label in labels)


def _settings(label: str) -> dict:
    return GRID[_family(label)][label]


def tune_runs(smoke: bool = False) -> list[GridRun]:
    """Every setting of every image prior on the tuning images."""
    return [_run("tune", domain, label, seed, smoke)
            for seed in TUNE_SEEDS for domain in IMAGES
            for labels in GRID.values() for label in labels]


def best_labels(out: Path) -> list[str]:
    """Per image prior whose tuning fits have all finished, the setting whose returned images
    have the best mean PSNR over them."""
    chosen = []
    for labels in GRID.values():
        names = {label: [_run("tune", d, label, s, False).name for s in TUNE_SEEDS
                         for d in IMAGES] for label in labels}
        found = finished(out, [name for group in names.values() for name in group])
        if len(found) == sum(map(len, names.values())):
            means = {label: np.mean([float(found[n].attrs["mean_psnr"]) for n in group])
                     for label, group in names.items()}
            chosen.append(max(means, key=means.get))
    return chosen


def report_runs(out: Path, smoke: bool = False) -> list[GridRun]:
    """No image prior and each prior's tuned setting on the reported images (the priors
    whose tuning has finished)."""
    chosen = best_labels(out)
    if not chosen:
        return []
    return [_run("report", domain, label, seed, smoke)
            for seed in SEEDS for domain in IMAGES for label in ("none", *chosen)]


def run_stage(stage: str, out: Path, workers: int, smoke: bool = False,
              match: list[str] | None = None) -> None:
    """Run the fits of ``stage`` that ``out`` lacks (``report`` after ``tune``)."""
    runs = tune_runs(smoke) if stage == "tune" else report_runs(out, smoke)
    if not runs:
        print(f"{stage}: the tuning fits have not all finished", file=sys.stderr)
    run_fits(runs, out, Hooks(baselines=stage == "report"), workers, match, desc=stage)


def report(out: Path) -> str:
    """``OUT/report.md``: per stage, domain and setting, the scores (mean over seeds), and
    BM3D's on the same observations in the report stage."""
    lines = ["# A prior on the image beside the weight prior", "", PLUS_MINUS, ""]
    stages = {"tune": ([label for labels in GRID.values() for label in labels], TUNE_SEEDS),
              "report": (["none", *best_labels(out)], SEEDS)}
    for stage, (labels, seeds) in stages.items():
        rows = []
        for domain in IMAGES:
            for label in labels:
                names = [_run(stage, domain, label, seed, False).name for seed in seeds]
                found = list(finished(out, names).values())
                if found:
                    rows.append([domain, label, str(len(found)),
                                 *(interval([ds.attrs[key] for ds in found]) for key in SCORES),
                                 *classical_scores(found)])
        if rows:
            lines += [f"## {stage}", "", *table(
                ["domain", "image prior", "seeds", *SCORES.values(), "BM3D PSNR", "BM3D SSIM"],
                rows)]
    paired = []
    for domain in IMAGES:
        for label in best_labels(out):
            names = {seed: [_run("report", domain, each, seed, False).name
                            for each in (label, "none")] for seed in SEEDS}
            found = finished(out, [name for pair in names.values() for name in pair])
            pairs = [(found[a], found[b]) for a, b in names.values() if a in found and b in found]
            if pairs:
                paired.append([domain, label, str(len(pairs)),
                               *paired_differences(pairs, SCORES)])
    if paired:
        lines += ["report, minus no image prior on the same observation (paired by seed):", "",
                  *table(["domain", "image prior", "seeds", *SCORES.values()], paired)]
    text = "\n".join(lines)
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.md").write_text(text)
    return text


def main(argv: list[str] | None = None) -> int:
    return study_main(argv, "experiments.image_prior_study", __doc__, STAGES, "30 steps per fit",
                      run_stage, report)


if __name__ == "__main__":
    sys.exit(main())
