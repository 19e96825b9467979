"""The fits of the convergence study (:mod:`experiments.convergence_study`): its domains, the
fits of each stage, and what each fit records beyond its dataset (the ``metrics`` hook: the
curves' peaks and the stopping rules' steps)."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import xarray as xr

from experiments.common import DATA, SEEDS, clipped_observation, finished
from pyrodip.infer.fitting import CHECK_EVERY
from pyrodip.infer.stopping import RULE_CURVES, stop_step
from pyrodip.run.config import RunConfig
from pyrodip.run.results import MEAN_RENAMED
from pyrodip.studies.grid import GridRun, Hooks, run_metrics

STEPS = 3000
#: domain -> (images, first the reported one, then the second; the run settings). ``size`` is
#: the longer side: about 64 x 64 pixels after the crop to the network's multiple of 16.
DOMAINS = {
    "xray": (("denoising/xray.jpg", "denoising/xray2.png"), {"task": "denoise", "size": 64}),
    "oct": (("denoising/oct.png", "denoising/oct2.png"), {"task": "denoise", "size": 64}),
    "us": (("denoising/us.jpg", "denoising/us2.png"),
           {"task": "denoise", "noise": "speckle", "size": 64}),
    "mri": (("super_resolution/mri.png", "super_resolution/mri2.png"),
            {"task": "superres", "factor": 4, "noise_std": 0.01, "size": 64}),
    "ctsr": (("super_resolution/ct.png", "super_resolution/ct2.png"),
             {"task": "superres", "factor": 4, "noise_std": 0.01, "size": 96}),
    "ct": (("super_resolution/ct.png", "super_resolution/ct2.png"), {"task": "ct", "size": 96}),
    "skin": (("inpainting/skin.png", "inpainting/skin2.png"),
             {"task": "inpaint", "noise_std": 0.01, "size": 64}),
    "strokes": (("skin-crop",), {"task": "inpaint", "mask": "strokes", "noise_std": 0.01}),
}
#: skin.png's largest square without hair (rows, columns; 64 x 64 at full resolution), where
#: the truth under a synthetic stroke mask is skin.
SKIN_CROP = (slice(0, 64), slice(191, 255))
#: The method of each stage, with its settings beyond the domain's.
STAGES = {
    "core": {"dip": {"stop_rule": "heldout"}, "map": {"stop_rule": "heldout"}, "mfvi": {}},
    "others": {"sgld": {}, "mcdropout": {}, "mfvi-paper": {}},
    "long": {"mfvi": {"steps": 3 * STEPS}},
}
#: The domains of the ``long`` stage.
LONG_DOMAINS = ("xray", "oct")
PATIENCE = 1000  # ES-WMV's
#: The curves the report draws and reads (where the fit has them).
CURVES = ("loss", "psnr", "psnr_current", *RULE_CURVES.values())
#: The attributes of a fit's dataset that the report reads (the mean's PSNR and SSIM are its
#: mean_psnr and mean_ssim).
SCORES = ("psnr", "ssim", "psnr_known", "psnr_missing", "coverage_68", "coverage_95",
          "coverage_68_raw", "coverage_95_raw", "uce", "uce_raw", "calibration_scale")


@dataclass(frozen=True)
class Job:
    """One fit: a method on one image (0: the first of its domain, 1: the second) and seed."""

    stage: str
    domain: str
    image: int
    method: str
    seed: int
    smoke: bool = False

    @property
    def name(self) -> str:
        return f"{self.stage}_{self.domain}_{self.image}_{self.method}_seed{self.seed}"

    def config(self, out: Path) -> RunConfig:
        images, settings = DOMAINS[self.domain]
        settings = {**settings, "steps": STEPS, **STAGES[self.stage][self.method]}
        if self.domain == "skin":
            mask = images[self.image].replace(".png", "_mask.png")
            settings["mask"] = str(DATA / mask)
        image = images[self.image]
        if image == "skin-crop":
            image = str(skin_crop(out))
        elif not image.startswith("sample:"):
            image = str(DATA / image)
        if self.smoke:
            settings.update(steps=30, samples=4, sample_every=5, burn_in=15)
        # equal conditions: every method fits the 90 % that mfvi's calibration leaves it
        settings["stop_patience"] = settings["steps"]  # record the curves, never stop
        return RunConfig(image=image, method=self.method, seed=self.seed, **settings)


def skin_crop(out: Path) -> Path:
    """skin.png's hair-free crop (:data:`SKIN_CROP`), written once to ``OUT/skin_crop.png``."""
    from skimage.io import imread, imsave

    path = out / "skin_crop.png"
    if not path.exists():
        out.mkdir(parents=True, exist_ok=True)
        imsave(path, imread(DATA / "inpainting" / "skin.png")[SKIN_CROP], check_contrast=False)
    return path


def jobs(stage: str, smoke: bool = False) -> list[Job]:
    """The fits of ``stage``: the first images before the second, domain by domain."""
    images = (0, 1) if stage == "core" else (0,)
    domains = LONG_DOMAINS if stage == "long" else tuple(DOMAINS)
    return [Job(stage, domain, image, method, seed, smoke)
            for image in images for domain, (paths, settings) in DOMAINS.items()
            if image < len(paths) and domain in domains for seed in SEEDS
            for method in STAGES[stage]
            if method != "mfvi-paper" or settings.get("noise", "gaussian") == "gaussian"]


def runs(stage: str, out: Path, smoke: bool = False) -> list[GridRun]:
    """The fits of ``stage`` as runs of the grid (``out``: where the skin crop goes)."""
    return [GridRun(job.name, job.config(out)) for job in jobs(stage, smoke)]


def curve_metrics(result, observation) -> dict:
    """The ``metrics`` hook: the last and best PSNR of the current and the smoothed image, how
    far from a plateau the loss ended, and where each stopping rule (patience
    :data:`PATIENCE`) stops on its curve: its step (1-based), whether it fired, the current
    image's PSNR there."""
    curves = result.history.curves
    current, smoothed = curves["psnr_current"], curves["psnr"]
    found = {
        "last_current": float(current[-1]),
        "best_current": float(current.max()),
        "best_current_step": int(current.argmax()) + 1,
        "last_smoothed": float(smoothed[-1]),
        "best_smoothed": float(smoothed.max()),
        "best_smoothed_step": int(smoothed.argmax()) + 1,
        "loss_change_last_10pct": loss_change(curves["loss"]),
    }
    for rule, curve in RULE_CURVES.items():
        if curve not in curves or np.isnan(curves[curve]).all():
            continue
        step = stop_step(curves[curve], PATIENCE, CHECK_EVERY)
        chosen = step if step is not None else int(np.nanargmin(curves[curve]))
        found[f"stop_{rule}"] = {"step": chosen + 1, "stopped": step is not None,
                                 "psnr": float(current[chosen])}
    return found


def loss_change(loss: np.ndarray) -> float:
    """The change of the mean loss from the second-last to the last tenth of the steps,
    relative to its spread over the fit (how far from a plateau the fit ended).

    >>> loss_change(np.r_[np.full(90, 2.0), np.zeros(10)])  # fell all the way at the end
    -1.0
    """
    tenth = max(len(loss) // 10, 1)
    change = loss[-tenth:].mean() - loss[-2 * tenth : -tenth].mean()
    return float(change / max(np.ptp(loss), 1e-12))


HOOKS = Hooks(observe=clipped_observation, metrics=curve_metrics)


def record(job: Job, dataset: xr.Dataset) -> dict:
    """What the report reads of one fit: its job and settings, its scores, the classical
    baselines' PSNR, the hook's values and its curves."""
    attrs = dataset.attrs
    return {
        "job": dataclasses.asdict(job),
        "config": json.loads(attrs["config"]),
        **{key: float(attrs[MEAN_RENAMED.get(key, key)]) for key in SCORES
           if MEAN_RENAMED.get(key, key) in attrs},
        "baselines": dict(zip(dataset["classical"].values.tolist(),
                              map(float, dataset["classical_psnr"].values), strict=True)),
        "baseline": attrs["baseline_method"],
        "baseline_psnr_known": attrs.get("baseline_psnr_known"),
        "baseline_psnr_missing": attrs.get("baseline_psnr_missing"),
        "wall_time_s": float(attrs["wall_time_s"]),
        "status": attrs["status"],
        **run_metrics(dataset),
        "curves": {key: dataset[key].values for key in CURVES if key in dataset},
    }


def records(out: Path) -> list[dict]:
    """The records of every finished fit of every stage in ``out``."""
    known = {job.name: job for stage in STAGES for job in jobs(stage)}
    return [record(known[name], dataset) for name, dataset in finished(out, known).items()]
