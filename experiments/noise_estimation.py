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
  defaults, started at 0.1) on the noisy image taken as observed, on two held-out images
  (``LEARNED_IMAGES``) at std 0.02, 0.05 and 0.1 (a fit each: about two minutes).

The estimates go to ``OUT/estimates.json``; the fits run on :mod:`pyrodip.studies.grid`
(:mod:`experiments.common`), each to ``OUT/runs/NAME.nc`` (the learned std in its ``metrics``),
and a stage run again fits only what it lacks (the ``OUT/jobs`` records of earlier versions are
not read: run the study again into a new folder). ``report`` prints the ratio estimate / truth
per level (mean, range over images, share of cases within 15 %) and writes ``OUT/report.md``.
``--smoke`` runs a stage's first two cases at 64 px (fits of 20 steps).
"""

from __future__ import annotations

import json
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from experiments.common import DATA, SEEDS, finished, run_fits, study_main, table
from pyrodip.io.files import atomic_path
from pyrodip.physics.observation import Observation
from pyrodip.run.config import RunConfig
from pyrodip.studies.grid import GridRun, Hooks, run_metrics

SIZE = 128
STAGES = ("estimators", "learned")
LEVELS = (0.01, 0.02, 0.05, 0.1, 0.2)
LEARNED_LEVELS = (0.02, 0.05, 0.1)
LEARNED_IMAGES = ("denoising/xray2.png", "denoising/oct2.png")
TUNING = ("denoising/xray.jpg", "denoising/oct.png", "denoising/us.jpg",
          "super_resolution/mri.png", "super_resolution/ct.png")
HELD_OUT = ("denoising/xray2.png", "denoising/oct2.png", "denoising/us2.png",
            "super_resolution/mri2.png", "super_resolution/ct2.png", "inpainting/skin2.png")
TOLERANCE = 0.15
#: The fits' steps and the images' size of ``--smoke``.
SMOKE_STEPS, SMOKE_SIZE = 20, 64


@dataclass(frozen=True)
class Job:
    """One case: an image (relative to :data:`~experiments.common.DATA`) with noise of std
    ``level`` drawn from ``seed``."""

    stage: str
    image: str
    level: float
    seed: int

    @property
    def name(self) -> str:
        return f"{self.stage}-{Path(self.image).stem}-{self.level:g}-seed{self.seed}"

    def record(self) -> dict:
        """What the report knows of the case before its estimate."""
        return {"name": self.name, "stage": self.stage, "image": Path(self.image).stem,
                "held_out": self.image in HELD_OUT, "level": self.level, "seed": self.seed}

    def config(self, steps: int = 1000, size: int = SIZE) -> RunConfig:
        """The ``learned`` fit of the case: MFVI's defaults, the noise std learned."""
        return RunConfig(image=str(DATA / self.image), size=size, noise_std=self.level,
                         noise_level="learned", steps=steps, seed=self.seed, calibration="none")


def jobs(stage: str, smoke: bool = False) -> list[Job]:
    """The cases of ``stage`` (the first two with ``smoke``)."""
    if stage == "estimators":
        found = [Job(stage, image, level, seed) for image in (*TUNING, *HELD_OUT)
                 for level in LEVELS for seed in SEEDS]
    else:
        found = [Job(stage, image, level, seed) for image in LEARNED_IMAGES
                 for level in LEARNED_LEVELS for seed in SEEDS]
    return found[:2] if smoke else found


def noisy_image(path: str | Path, level: float, seed: int, size: int = SIZE):
    """The gray image at ``size`` px with Gaussian noise of std ``level``, clipped to [0, 1]."""
    import torch

    from pyrodip.io.images import center_crop, load_image
    from pyrodip.physics.observation import resize_longer_side
    from pyrodip.seeding import generator

    clean = torch.from_numpy(load_image(path)).mean(0, keepdim=True)
    with warnings.catch_warnings():  # the crop to the network's multiple is expected
        warnings.simplefilter("ignore")
        clean = center_crop(resize_longer_side(clean, size), 32)
    noise = torch.randn(clean.shape, generator=generator(seed, "noise"))
    return (clean + level * noise).clamp(0, 1)


def estimate(job: Job, size: int = SIZE) -> dict:
    """The patch-PCA and the wavelet MAD estimate of the case's noise std."""
    from skimage.restoration import estimate_sigma

    from pyrodip.physics.noise_estimate import estimate_noise_std

    y = noisy_image(DATA / job.image, job.level, job.seed, size)
    return {**job.record(), "pca": estimate_noise_std(y),
            "mad": float(estimate_sigma(y[0].numpy()))}


def noisy_observation(config: RunConfig) -> Observation:
    """The ``observe`` hook: the case's noisy image (:func:`noisy_image`) taken as observed,
    its noise std to be learned from 0.1."""
    y = noisy_image(config.image, config.noise_std, config.seed, config.size)
    return Observation.observed(y, noise=0.1)


def learned_std(result, observation) -> dict:
    """The ``metrics`` hook: the noise std MFVI learned."""
    return {"learned": float(result.model.likelihood.noise_std.detach())}


HOOKS = Hooks(observe=noisy_observation, metrics=learned_std, baselines=False)


def run_stage(stage: str, out: Path, workers: int, smoke: bool = False,
              match: list[str] | None = None) -> None:
    """Estimate (``estimators``, in this process: seconds) or fit (``learned``) the cases of
    ``stage`` that ``out`` lacks (only those whose name contains one of ``match``)."""
    steps, size = (SMOKE_STEPS, SMOKE_SIZE) if smoke else (1000, SIZE)
    todo = jobs(stage, smoke)
    if stage == "learned":
        run_fits([GridRun(job.name, job.config(steps, size)) for job in todo], out, HOOKS,
                 workers, match, desc=stage)
        return
    path = out / "estimates.json"
    found = json.loads(path.read_text()) if path.exists() else {}
    for job in todo:
        if job.name not in found and (not match or any(text in job.name for text in match)):
            found[job.name] = estimate(job, size)
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(found, indent=1))


def records(out: Path) -> list[dict]:
    """The estimates and the learned stds in ``out``."""
    path = out / "estimates.json"
    found = list(json.loads(path.read_text()).values()) if path.exists() else []
    learned = {job.name: job for job in jobs("learned")}
    return found + [{**learned[name].record(), **run_metrics(dataset)}
                    for name, dataset in finished(out, learned).items()]


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
    """The report of the estimates and learned stds in ``out`` (also ``OUT/report.md``)."""
    found = records(out)
    lines = [f"# Noise level estimates / truth ({SIZE} px, Gaussian noise clipped to [0, 1], "
             f"seeds {', '.join(map(str, SEEDS))})", ""]
    for held_out, title in ((False, "tuning images"), (True, "held-out images")):
        rows = []
        for key, name in (("pca", "patch PCA (pyrodip)"), ("mad", "wavelet MAD"),
                          ("learned", "learned by MFVI")):
            for level in LEVELS:
                per_image = ratios(found, key, held_out, level)
                if not per_image:
                    continue
                inside, total = within(found, key, held_out, level)
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
    return study_main(argv, "experiments.noise_estimation", __doc__, STAGES,
                      "two cases at 64 px, fits of 20 steps (for the tests)", run_stage, report)


if __name__ == "__main__":
    sys.exit(main())
