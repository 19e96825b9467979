"""How close each idea brings MFVI's denoising to BM3D, alone and combined: the censored
likelihood (the default on clipped observations), total variation beside the weight prior
(``image_prior=tv``), the unbiased risk estimate as the data term (``data_term=sure``, which
needs ``censoring=off``), and both, against BM3D, TV, NLM and DIP stopped by ES-WMV
(``dip-es``) on the same observations.

    python -m experiments.denoising_study run --stage tune --out runs/denoising --workers 2
    python -m experiments.denoising_study run --stage report --out runs/denoising --workers 2
    python -m experiments.denoising_study run --stage scan --out runs/denoising --workers 2
    python -m experiments.denoising_study report --out runs/denoising

X-ray and OCT: Gaussian noise of std 0.1, the observation clipped to [0, 1] (``clip``, as the
paper did); ultrasound: speckle of std 0.1 in the log domain; X-ray photon counts: Poisson
noise of 100 photons at intensity 1. The classical baselines denoise speckle and counts in
their variance-stabilised domain (log, Anscombe), so there the PSNR is also given between the
stabilised images. 128 px, the default steps (on ultrasound also 3000), seeds 0, 1, 2, one
observation per seed for every variant. ``tune``: MFVI's variants on the second X-ray and OCT
images, where the default is chosen; ``report``: every variant on the first image of each
domain; ``scan``: the report stage's Gaussian observations written as 8-bit files (as a
scanner stores them) and reconstructed as observed scans, the noise level estimated, MFVI's
default. Scored: the returned image (PSNR, SSIM), the coverage of its calibrated 68 % and 95 %
intervals against the truth, and the variant minus BM3D (and MFVI's variants minus MFVI) on
the same observation, paired by seed.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import xarray as xr

from experiments.common import (
    DENOISING_IMAGES,
    DENOISING_SCORES,
    PLUS_MINUS,
    SEEDS,
    agreement_cells,
    finished,
    image_path,
    interval,
    paired_differences,
    run_fits,
    study_main,
    table,
)
from pyrodip.physics.baselines import stabilize
from pyrodip.run.config import RunConfig
from pyrodip.run.observe import prepare_observation
from pyrodip.studies.grid import GridRun, Hooks

#: domain -> (the reported image, the tuning image, its noise model, the noise's level)
IMAGES = {**{domain: (*paths, "gaussian", 0.1) for domain, paths in DENOISING_IMAGES.items()},
          "us": ("denoising/us.jpg", "denoising/us2.png", "speckle", 0.1),
          "xray-photons": ("denoising/xray.jpg", "denoising/xray2.png", "poisson", 100.0)}
SIZE = 128
#: variant -> (its settings, the noise models it applies to)
VARIANTS: dict[str, tuple[dict, tuple[str, ...]]] = {
    "mfvi": ({}, ("gaussian", "speckle", "poisson")),
    "mfvi+tv": ({"image_prior": "tv"}, ("gaussian", "speckle")),
    "mfvi+sure": ({"data_term": "sure", "censoring": "off"}, ("gaussian",)),
    "mfvi+sure+tv": ({"data_term": "sure", "censoring": "off", "image_prior": "tv"},
                     ("gaussian",)),
    "dip-es": ({"method": "dip-es"}, ("gaussian", "speckle", "poisson")),
    "mfvi-3000": ({"steps": 3000}, ("speckle",)),  # 3x the default steps
}
#: The classical baselines tabled beside the fits (from the fits' results).
CLASSICAL = ("bm3d", "tv", "nlm")
#: stage -> the image's index in :data:`IMAGES` (``scan``: the first image, its noisy
#: observation written as an 8-bit file and reconstructed with ``observed``, the level estimated)
STAGES = {"tune": 1, "report": 0, "scan": 0}
SCORES = DENOISING_SCORES


def _config(stage: str, domain: str, variant: str, seed: int, smoke: bool) -> RunConfig:
    image, noise, level = IMAGES[domain][STAGES[stage]], *IMAGES[domain][2:]
    level_setting = {"photons" if noise == "poisson" else "noise_std": level}
    return RunConfig(image=image_path(image), task="denoise", size=SIZE, seed=seed,
                     noise=noise, **level_setting, clip=noise == "gaussian",
                     **{**VARIANTS[variant][0], **({"steps": 30} if smoke else {})})


def variants(domain: str, stage: str = "report") -> list[str]:
    """The variants that apply to ``domain``'s noise model; in ``tune``, MFVI's variants on
    Gaussian noise, where the default is chosen."""
    noise = IMAGES[domain][2]
    if stage == "tune" and noise != "gaussian":
        return []
    return [name for name, (_, noises) in VARIANTS.items()
            if noise in noises and (stage == "report" or name.startswith("mfvi"))]


def scan_path(out: Path, domain: str, seed: int) -> Path:
    """The 8-bit file of ``domain``'s noisy observation of ``seed`` for the ``scan`` stage."""
    return out / "scans" / f"{domain}_seed{seed}.png"


def write_scans(out: Path) -> None:
    """Each Gaussian domain's clipped noisy observation (the ``report`` stage's, per seed) as an
    8-bit PNG, as a scanner would store it, and its truth beside it (``.npy``)."""
    from skimage.io import imsave

    for seed in SEEDS:
        for domain in (d for d in IMAGES if IMAGES[d][2] == "gaussian"):
            obs = prepare_observation(_config("report", domain, "mfvi", seed, False))
            path = scan_path(out, domain, seed)
            path.parent.mkdir(parents=True, exist_ok=True)
            pixels = (obs.observation[0].numpy() * 255).round().astype(np.uint8)
            imsave(path, pixels, check_contrast=False)
            np.save(path.with_suffix(".npy"), obs.truth.numpy())  # (C, H, W)


def runs(stage: str, smoke: bool = False, out: Path | None = None) -> list[GridRun]:
    """The fits of ``stage``, seed by seed (``scan``: MFVI's default on the files that
    :func:`write_scans` wrote in ``out``)."""
    if stage == "scan":
        return [GridRun(f"scan_{domain}_mfvi_seed{seed}",
                        RunConfig(image=str(scan_path(out, domain, seed)), task="denoise",
                                  observed=True, seed=seed, **({"steps": 30} if smoke else {})))
                for seed in SEEDS for domain in IMAGES if IMAGES[domain][2] == "gaussian"]
    return [GridRun(f"{stage}_{domain}_{variant}_seed{seed}",
                    _config(stage, domain, variant, seed, smoke))
            for seed in SEEDS for domain in IMAGES for variant in variants(domain, stage)]


def run_stage(stage: str, out: Path, workers: int, smoke: bool = False,
              match: list[str] | None = None) -> None:
    """Run the fits of ``stage`` that ``out`` lacks, with the classical baselines."""
    if stage == "scan":
        write_scans(out)
    run_fits(runs(stage, smoke, out), out, Hooks(baselines=True), workers, match, desc=stage)


def stabilized_psnr(estimate: np.ndarray, truth: np.ndarray, noise: str,
                    level: float) -> float:
    """PSNR between ``estimate`` and ``truth`` after the variance-stabilising transform of
    ``noise`` (log for speckle), with the transformed truth's range as the peak.

    >>> truth = np.linspace(0.1, 1, 100)
    >>> round(stabilized_psnr(truth * 1.01, truth, "speckle", 0.1), 1)
    47.3
    """
    a, b = stabilize(estimate, noise, level)[0], stabilize(truth, noise, level)[0]
    return float(10 * math.log10(float(np.ptp(b)) ** 2 / float(np.mean((a - b) ** 2))))


def _classical(ds: xr.Dataset, method: str, key: str, domain: str) -> float:
    index = ds["classical"].values.tolist().index(method)
    if key == "stabilized_psnr":
        return stabilized_psnr(ds["baselines"].values[index], ds["truth"].values,
                               *IMAGES[domain][2:])
    return float(ds[f"classical_{key[5:]}"].values[index])  # mean_psnr -> classical_psnr


def _score(ds: xr.Dataset, key: str, domain: str) -> float:
    if key == "stabilized_psnr":
        return stabilized_psnr(ds["mean"].values, ds["truth"].values, *IMAGES[domain][2:])
    return float(ds.attrs.get(key, math.nan))


#: noise model -> the label of the PSNR in its stabilised domain
STABILIZED_PSNR = {"speckle": "PSNR of the log images", "poisson": "PSNR after Anscombe"}


def _keys(domain: str) -> dict[str, str]:
    label = STABILIZED_PSNR.get(IMAGES[domain][2])
    return {**SCORES, **({"stabilized_psnr": label} if label else {})}


def scan_scores(ds: xr.Dataset, truth: np.ndarray) -> dict[str, float]:
    """A ``scan`` fit's scores against ``truth``: PSNR and SSIM of the returned image and of
    each classical baseline (``bm3d_psnr``, ...), the coverage of its calibrated 68 % and 95 %
    intervals, and the noise level it estimated."""
    import torch
    from scipy.stats import norm

    from pyrodip.evaluate.metrics import psnr, ssim

    ref = torch.from_numpy(truth)[None]

    def both(image: np.ndarray, prefix: str) -> dict[str, float]:
        x = torch.from_numpy(np.asarray(image, dtype=np.float32))[None]
        return {f"{prefix}psnr": float(psnr(x, ref)), f"{prefix}ssim": float(ssim(x, ref))}

    error = np.abs(ds["mean"].values - truth)
    scores = {**both(ds["mean"].values, "mean_"),
              **{f"coverage_{round(level * 100)}": float(np.mean(
                  error <= norm.ppf(0.5 + level / 2) * ds["std_total"].values))
                 for level in (0.6827, 0.95)},
              "noise_estimate": float(ds.attrs["noise_estimate"])}
    for index, method in enumerate(ds["classical"].values.tolist()):
        scores.update(both(ds["baselines"].values[index], f"{method}_"))
    return scores


def _scan_section(out: Path) -> list[str]:
    rows, paired = [], []
    for domain in (d for d in IMAGES if IMAGES[d][2] == "gaussian"):
        names = {seed: f"scan_{domain}_mfvi_seed{seed}" for seed in SEEDS}
        found = finished(out, names.values())
        scores = [scan_scores(found[name], np.load(scan_path(out, domain, seed)
                                                  .with_suffix(".npy")))
                  for seed, name in names.items() if name in found]
        if not scores:
            continue
        cells = {key: interval([score[key] for score in scores], digits=3 if "ssim" in key
                               or "coverage" in key or "noise" in key else 2)
                 for key in scores[0]}
        rows.append([domain, "mfvi", str(len(scores)), cells["mean_psnr"], cells["mean_ssim"],
                     cells["coverage_68"], cells["coverage_95"], cells["noise_estimate"]])
        rows += [[domain, method, str(len(scores)), cells[f"{method}_psnr"],
                  cells[f"{method}_ssim"], "", "", ""] for method in CLASSICAL]
        paired.append([domain, str(len(scores)), interval(
            [score["mean_psnr"] - score["bm3d_psnr"] for score in scores], digits=3)])
    if not rows:
        return []
    return ["## scan: the first images' noisy observations as 8-bit files, the level estimated",
            "", *table(["domain", "method", "seeds", "PSNR", "SSIM", "coverage 68 %",
                        "coverage 95 %", "noise level estimated"], rows),
            "MFVI minus BM3D on the same file (paired by seed):", "",
            *table(["domain", "seeds", "PSNR"], paired)]


def heldout_agreement(out: Path) -> list[str]:
    """Per stage and domain, how the ranking of MFVI's variants by their held-out scores (LPD,
    CRPS: no truth) agrees with their ranking by the truth's PSNR, over the seed means
    (:func:`pyrodip.studies.table.ranking_agreement`), as table lines."""
    rows = []
    for stage in ("tune", "report"):
        datasets = finished(out, [run.name for run in runs(stage)])
        for domain in IMAGES:
            scored = [v for v in variants(domain, stage) if v.startswith("mfvi") and all(
                f"{stage}_{domain}_{v}_seed{seed}" in datasets
                and "heldout_lpd" in datasets[f"{stage}_{domain}_{v}_seed{seed}"].attrs
                for seed in SEEDS)]
            if len(scored) < 2:
                continue
            scores = {v: {key: [float(datasets[f"{stage}_{domain}_{v}_seed{seed}"].attrs[key])
                                for seed in SEEDS]
                          for key in ("mean_psnr", "heldout_lpd", "heldout_crps")}
                      for v in scored}
            rows.append([stage, domain, ", ".join(scored), *agreement_cells(scores)])
    if not rows:
        return []
    return ["## Held-out scores against the truth", "",
            "Kendall's tau between the variants' ranking by PSNR (truth) and by the held-out "
            "LPD and CRPS (no truth), over the seed means; whether the best variant agrees:", "",
            *table(["stage", "domain", "variants", "tau LPD", "tau CRPS", "best by LPD",
                    "best by CRPS"], rows)]


def tuned_choice(out: Path) -> str | None:
    """The variant of the ``tune`` stage with the best PSNR, averaged over its domains and
    seeds, once every tuning fit has finished (else None)."""
    names = [run.name for run in runs("tune")]
    found = finished(out, names)
    if not names or len(found) < len(names):
        return None
    means = {variant: np.mean([float(ds.attrs["mean_psnr"]) for name, ds in found.items()
                               if name.split("_")[2] == variant])
             for variant in {name.split("_")[2] for name in names}}
    return max(means, key=means.get)


def report(out: Path) -> str:
    """``OUT/report.md``: per stage and domain, each variant's and each classical baseline's
    scores (mean over seeds), then each variant minus BM3D, paired by seed."""
    lines = ["# Denoising: each idea alone and combined, against BM3D", "", PLUS_MINUS, ""]
    for stage, index in STAGES.items():
        if stage == "scan":
            lines += _scan_section(out)
            continue
        datasets = finished(out, [run.name for run in runs(stage)])
        for domain in IMAGES:
            noise, level, keys = *IMAGES[domain][2:], _keys(domain)
            rows, paired, reference, versus = [], [], [], []
            for variant in variants(domain, stage):
                pairs = [(datasets[f"{stage}_{domain}_{variant}_seed{seed}"],
                          datasets[f"{stage}_{domain}_mfvi_seed{seed}"]) for seed in SEEDS
                         if all(f"{stage}_{domain}_{v}_seed{seed}" in datasets
                                for v in (variant, "mfvi"))]
                if variant.startswith("mfvi") and variant != "mfvi" and pairs:
                    versus.append([variant, str(len(pairs)), *paired_differences(pairs, SCORES)])
                found = [datasets[name] for seed in SEEDS
                         if (name := f"{stage}_{domain}_{variant}_seed{seed}") in datasets]
                if not found:
                    continue
                reference = reference or found
                rows.append([variant, str(len(found)),
                             *(interval([_score(ds, key, domain) for ds in found])
                               for key in keys)])
                paired.append([variant, str(len(found)), *(
                    interval([_score(ds, key, domain) - _classical(ds, "bm3d", key, domain)
                              for ds in found], digits=3) for key in keys if "psnr" in key)])
            if not rows:
                continue
            for method in CLASSICAL:
                rows.append([method, str(len(reference)), *(
                    interval([_classical(ds, method, key, domain) for ds in reference])
                    if "psnr" in key or "ssim" in key else "" for key in keys)])
            image = IMAGES[domain][index]
            lines += [f"## {stage}: {domain} (`{image}`, {noise} noise, level {level:g})", "",
                      *table(["method", "seeds", *keys.values()], rows),
                      "minus BM3D on the same observation (paired by seed):", "",
                      *table(["method", "seeds", *(label for key, label in keys.items()
                                                   if "psnr" in key)], paired)]
            if versus:
                lines += ["minus mfvi on the same observation (paired by seed):", "",
                          *table(["method", "seeds", *SCORES.values()], versus)]
    lines += heldout_agreement(out)
    choice = tuned_choice(out)
    if choice:
        lines += [f"Best mean PSNR on the tuning images (all domains and seeds): {choice}", ""]
    text = "\n".join(lines)
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.md").write_text(text)
    return text


def main(argv: list[str] | None = None) -> int:
    return study_main(argv, "experiments.denoising_study", __doc__, tuple(STAGES),
                      "30 steps per fit", run_stage, report)


if __name__ == "__main__":
    sys.exit(main())
