"""How close is the noise level pyrodip estimates from an observed image (issue 18)?

    python -m experiments.noise_estimation run --stage estimators --out runs/noise
    python -m experiments.noise_estimation run --stage learned --out runs/noise --workers 2
    python -m experiments.noise_estimation report --out runs/noise

Images: the shared test images in gray at 128 px (``SIZE``), Gaussian noise of known std
(``LEVELS``) added and clipped to [0, 1] as the paper did, seeds 0, 1, 2. The estimator's
choices (7x7 patches, means two noise levels inside [0, 1]) were made on the ``TUNING``
images; the report keeps them apart from the ``HELD_OUT`` ones (each domain's other image).

Stages:

- ``estimators``: the patch-PCA estimate (:func:`pyrodip.physics.noise_estimate.
  estimate_noise_std`, pyrodip's) against the wavelet MAD estimate (scikit-image's
  ``estimate_sigma``), on every image, level and seed (seconds).
- ``learned``: the noise std MFVI learns with ``noise_level=learned`` (1000 steps, the
  defaults), on two held-out images (``LEARNED_IMAGES``) at std 0.02, 0.05 and 0.1 (a fit
  each: about two minutes).

``report`` prints the ratio estimate / truth per level (mean, range over images, share of
cases within 15 %) and writes ``OUT/report.md``.
"""

from __future__ import annotations

import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from experiments.study_jobs import (
    DATA,
    SEEDS,
    load_records,
    pending,
    run_jobs,
    study_main,
    table,
    write_record,
)

SIZE = 128
LEVELS = (0.01, 0.02, 0.05, 0.1, 0.2)
LEARNED_LEVELS = (0.02, 0.05, 0.1)
LEARNED_IMAGES = ("denoising/xray2.png", "denoising/oct2.png")
TUNING = ("denoising/xray.jpg", "denoising/oct.png", "denoising/us.jpg",
          "super_resolution/mri.png", "super_resolution/ct.png")
HELD_OUT = ("denoising/xray2.png", "denoising/oct2.png", "denoising/us2.png",
            "super_resolution/mri2.png", "super_resolution/ct2.png", "inpainting/skin2.png")
TOLERANCE = 0.15


@dataclass(frozen=True)
class Job:
    stage: str
    image: str
    level: float
    seed: int

    @property
    def name(self) -> str:
        return f"{self.stage}-{Path(self.image).stem}-{self.level:g}-seed{self.seed}"


def jobs(stage: str) -> list[Job]:
    if stage == "estimators":
        return [Job(stage, image, level, seed) for image in (*TUNING, *HELD_OUT)
                for level in LEVELS for seed in SEEDS]
    return [Job(stage, image, level, seed) for image in LEARNED_IMAGES
            for level in LEARNED_LEVELS for seed in SEEDS]


def noisy_image(image: str, level: float, seed: int, size: int = SIZE):
    """The gray image at ``size`` px with Gaussian noise of std ``level``, clipped to [0, 1]."""
    import torch

    from pyrodip.io.images import center_crop, load_image
    from pyrodip.physics.observation import resize_longer_side
    from pyrodip.seeding import generator

    clean = torch.from_numpy(load_image(DATA / image)).mean(0, keepdim=True)
    with warnings.catch_warnings():  # the crop to the network's multiple is expected
        warnings.simplefilter("ignore")
        clean = center_crop(resize_longer_side(clean, size), 32)
    noise = torch.randn(clean.shape, generator=generator(seed, "noise"))
    return (clean + level * noise).clamp(0, 1)


def run_job(job: Job, out: Path, steps: int = 1000, size: int = SIZE) -> str:
    from skimage.restoration import estimate_sigma

    from pyrodip.physics.noise_estimate import estimate_noise_std

    y = noisy_image(job.image, job.level, job.seed, size)
    record = {"name": job.name, "stage": job.stage, "image": Path(job.image).stem,
              "held_out": job.image in HELD_OUT, "level": job.level, "seed": job.seed}
    if job.stage == "estimators":
        record["pca"] = estimate_noise_std(y)
        record["mad"] = float(estimate_sigma(y[0].numpy()))
    else:
        record["learned"] = learned_std(y, job.level, job.seed, steps)
    write_record(out, job.name, record)
    return job.name


def learned_std(y, level: float, seed: int, steps: int) -> float:
    """The noise std MFVI learns (``noise_level=learned``, started at 0.1) on ``y``."""
    from pyrodip import Observation, RunConfig, fit

    observation = Observation.observed(y, noise=0.1)
    config = RunConfig(noise_level="learned", observed=True, steps=steps, seed=seed,
                       calibration="none")
    result = fit(observation, config, progress=False)
    return float(result.model.likelihood.noise_std.detach())


def run_stage(stage: str, out: Path, workers: int, smoke: bool, match) -> None:
    todo = pending(jobs(stage), out, match)
    if smoke:
        todo = todo[:2]
        (out / "jobs").mkdir(parents=True, exist_ok=True)
        for job in todo:
            print(run_job(job, out, steps=20, size=64))
        return
    run_jobs(stage, todo, run_job, out, workers)


def ratios(records: list[dict], key: str, held_out: bool, level: float) -> dict[str, float]:
    """The mean ratio estimate / truth over seeds, per image."""
    by_image: dict[str, list[float]] = {}
    for record in records:
        if key in record and record["held_out"] == held_out and record["level"] == level:
            by_image.setdefault(record["image"], []).append(record[key] / level)
    return {image: float(np.mean(values)) for image, values in by_image.items()}


def within(records: list[dict], key: str, held_out: bool, level: float) -> tuple[int, int]:
    cases = [r[key] / level for r in records
             if key in r and r["held_out"] == held_out and r["level"] == level]
    return sum(abs(c - 1) <= TOLERANCE for c in cases), len(cases)


def report(out: Path) -> str:
    records = load_records(out)
    lines = [f"# Noise level estimates / truth ({SIZE} px, Gaussian noise clipped to [0, 1], "
             f"seeds {', '.join(map(str, SEEDS))})", ""]
    for held_out, title in ((False, "tuning images"), (True, "held-out images")):
        rows = []
        for key, name in (("pca", "patch PCA (pyrodip)"), ("mad", "wavelet MAD"),
                          ("learned", "learned by MFVI")):
            for level in LEVELS:
                per_image = ratios(records, key, held_out, level)
                if not per_image:
                    continue
                inside, total = within(records, key, held_out, level)
                values = list(per_image.values())
                worst = max(per_image, key=lambda image: abs(per_image[image] - 1))
                rows.append([name, f"{level:g}", f"{np.mean(values):.2f}",
                             f"{min(values):.2f}-{max(values):.2f}", f"{worst}",
                             f"{inside}/{total}"])
        if rows:
            lines.append(f"## {title}")
            lines.append("")
            lines += table(["estimator", "true std", "mean ratio", "range over images",
                            "farthest image", f"within {TOLERANCE:.0%}"], rows)
    text = "\n".join(lines)
    if out.is_dir():
        (out / "report.md").write_text(text + "\n")
    return text


def main(argv: list[str] | None = None) -> int:
    return study_main(argv, "experiments.noise_estimation", __doc__,
                      ("estimators", "learned"), "two jobs at 64 px, 20 steps (for the tests)",
                      DATA, run_stage, report)


if __name__ == "__main__":
    sys.exit(main())
