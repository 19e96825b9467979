"""The fits of the calibration study (:mod:`experiments.calibration_study`): its domains, the
fits of each stage, and what each fit records beyond its dataset (the ``metrics`` hook)."""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import xarray as xr

from experiments.common import DATA, SEEDS, clipped_observation, finished
from pyrodip.run.config import RunConfig
from pyrodip.studies.grid import GridRun, Hooks, run_metrics

SIZE = 128
STAGES = ("tune", "diagnose", "goal", "ensemble")
#: domain -> (report image, tuning image, the run settings of the domain).
DOMAINS = {
    "xray": ("denoising/xray.jpg", "denoising/xray2.png", {"task": "denoise"}),
    "oct": ("denoising/oct.png", "denoising/oct2.png", {"task": "denoise"}),
    "us": ("denoising/us.jpg", "denoising/us2.png", {"task": "denoise", "noise": "speckle"}),
    "mri": ("super_resolution/mri.png", "super_resolution/mri2.png",
            {"task": "superres", "factor": 4, "noise_std": 0.01}),
    "ct-sr": ("super_resolution/ct.png", "super_resolution/ct2.png",
              {"task": "superres", "factor": 4, "noise_std": 0.01}),
    "ct": ("sample:ct", "super_resolution/ct2.png", {"task": "ct"}),
    "skin": ("inpainting/skin.png", "inpainting/skin2.png",
             {"task": "inpaint", "mask": "strokes", "noise_std": 0.01}),
}
#: The diagnosis's variants of the defaults: label -> settings.
VARIANTS = {
    "T=1": (("temperature", 1.0),),
    "low-rank guide": (("guide", "lowrank:8"), ("engine", "pyro")),
    "2000 steps": (("steps", 2000),),
}
#: The ensemble stage's domains (where the error lies in the operator's null space) and its
#: fits: ensembles of K MFVI and of K DIP-ES fits (DIP-ES's spread rescaled on the held-out
#: values as MFVI's std is: its calibration is ``none`` by default), beside the goal stage's
#: single MFVI fit of the same observation.
ENSEMBLE_DOMAINS = ("mri", "ct")
ENSEMBLE_SIZE = 4
ENSEMBLE_GRID = (("mfvi", (("ensemble", ENSEMBLE_SIZE),)),
                 ("dip-es", (("ensemble", ENSEMBLE_SIZE), ("calibration", "scale"))))
#: The levels whose conformal scale each fit records (the default target among them).
CONFORMAL_LEVELS = (0.6827, 0.9, 0.95)
BINS = 10  # error against std: pixels in BINS bins of equal count by raw std


@dataclass(frozen=True)
class Job:
    """One fit: a method (and settings) on one image and seed."""

    stage: str
    domain: str
    image: str
    method: str
    seed: int
    settings: tuple[tuple[str, object], ...] = ()
    smoke: bool = False

    @property
    def name(self) -> str:
        tags = "_".join(f"{key}-{value}" for key, value in self.settings).replace(":", "")
        return "_".join(filter(None, (self.stage, self.domain, self.method, tags,
                                      f"seed{self.seed}")))

    def config(self) -> RunConfig:
        image = self.image if self.image.startswith("sample:") else str(DATA / self.image)
        settings = {**DOMAINS[self.domain][2], **dict(self.settings)}
        if self.smoke:
            settings.update(steps=30, samples=4)
        return RunConfig(image=image, size=64 if self.smoke else SIZE, method=self.method,
                         seed=self.seed, **settings)


def jobs(stage: str, smoke: bool = False) -> list[Job]:
    """The fits of ``stage`` (see :mod:`experiments.calibration_study`)."""
    if stage == "diagnose":  # the quick variants first
        return [Job(stage, domain, DOMAINS[domain][1], "mfvi", seed, settings, smoke)
                for settings in VARIANTS.values() for domain in ("xray", "oct")
                for seed in SEEDS]
    if stage == "ensemble":
        return [Job(stage, domain, DOMAINS[domain][0], method, seed, settings, smoke)
                for domain in ENSEMBLE_DOMAINS for method, settings in ENSEMBLE_GRID
                for seed in SEEDS]
    found = []
    for domain, (report_image, tuning_image, _) in DOMAINS.items():
        if stage == "tune":
            grid = [("mfvi", ())]
        else:
            grid = [("mfvi", ()), ("mfvi", (("calibration", "none"),)), ("mcdropout", ()),
                    ("sgld", ())]
        image = report_image if stage == "goal" else tuning_image
        found += [Job(stage, domain, image, method, seed, settings, smoke)
                  for method, settings in grid for seed in SEEDS]
    return found


def runs(stage: str, smoke: bool = False) -> list[GridRun]:
    """The fits of ``stage`` as runs of the grid."""
    return [GridRun(job.name, job.config()) for job in jobs(stage, smoke)]


def calibration_metrics(result, obs) -> dict:
    """The ``metrics`` hook: both calibrations of one recalibrated fit, scored against the
    truth (nothing for a fit without calibration)."""
    from pyrodip.bayes.censored import censored_range
    from pyrodip.evaluate.calibration import calibrate
    from pyrodip.infer.recalibration import recalibrate
    from pyrodip.physics.observation import hold_out
    from pyrodip.run.results import observation_uce

    if result.calibration is None:
        return {}
    config, pred = result.config, result.prediction
    mean, raw, truth = (t.double().numpy() for t in (pred.mean, pred.std_total_raw, obs.truth))
    _, held = hold_out(obs, config.heldout_fraction, config.seed)
    scales = {"raw": 1.0, "scale": result.calibration.scale}
    heldout = {"scale": dataclasses.asdict(result.calibration)}
    for level in CONFORMAL_LEVELS:
        conformal = recalibrate(pred, result.model.likelihood, obs.observation, held,
                                "conformal", level, censored_range(obs))
        scales[f"conformal{level:g}"] = conformal.scale
        heldout[f"conformal{level:g}"] = dataclasses.asdict(conformal)
    scored = {}
    for name, scale in scales.items():
        if not math.isfinite(scale):
            continue
        cal = calibrate(mean, scale * raw, truth)
        scored[name] = {"scale": scale, "uce": cal.uce, "ause": cal.ause, **{
            f"coverage_{level}": value for level, value in cal.coverage.items()}}
    error = np.abs(mean - truth).ravel()
    ratio = error / np.maximum(raw.ravel(), 1e-12)
    order = np.argsort(raw.ravel(), kind="stable")
    bins = np.array_split(order, BINS)
    return {
        "calibrations": scored,
        "heldout": heldout,
        "oracle_scale": float(np.quantile(ratio, 0.6827)),
        "oracle_scale_95": float(np.quantile(ratio, 0.95) / 1.96),
        "rms_ratio": float(np.sqrt(np.mean(error**2) / np.mean(raw**2))),
        "binned_std": [float(np.sqrt(np.mean(raw.ravel()[b] ** 2))) for b in bins],
        "binned_error": [float(np.sqrt(np.mean(error[b] ** 2))) for b in bins],
        "uce_observation": observation_uce(result),
    }


HOOKS = Hooks(observe=clipped_observation, metrics=calibration_metrics, baselines=False)


def record(job: Job, dataset: xr.Dataset) -> dict:
    """What the report reads of one fit: its job, settings, PSNR, the hook's values and its
    images (the mean, the raw std and the truth: the bias and the refit are measured on
    them)."""
    raw = dataset["std_total_raw"] if "std_total_raw" in dataset else dataset["std_total"]
    return {
        "job": dataclasses.asdict(job),
        "config": json.loads(dataset.attrs["config"]),
        "psnr": float(dataset.attrs["mean_psnr"]),
        "psnr_smoothed": float(dataset["psnr"].values[-1]),
        "wall_time_s": float(dataset.attrs["wall_time_s"]),
        "status": dataset.attrs["status"],
        "heldout_lpd": float(dataset.attrs.get("heldout_lpd", math.nan)),
        "heldout_crps": float(dataset.attrs.get("heldout_crps", math.nan)),
        "member_psnr": ([float(v) for v in dataset["ensemble_member_psnr"].values]
                        if "ensemble_member_psnr" in dataset else None),
        **run_metrics(dataset),
        "images": {"mean": dataset["mean"].values, "std": raw.values,
                   "truth": dataset["truth"].values},
    }


def records(out: Path) -> list[dict]:
    """The records of every finished fit of every stage in ``out``."""
    known = {job.name: job for stage in STAGES for job in jobs(stage)}
    return [record(known[name], dataset) for name, dataset in finished(out, known).items()]
