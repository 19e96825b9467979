"""Whether the fit should score a clipped observation's values at 0 and 1 as censored (the
Tobit likelihood, ``censoring=auto``) or as plain Gaussian values (``censoring=off``).

    python -m experiments.censoring_study run --stage tune --out runs/censoring --workers 2
    python -m experiments.censoring_study run --stage report --out runs/censoring --workers 2
    python -m experiments.censoring_study report --out runs/censoring

Gaussian denoising (std 0.1, the observation clipped to [0, 1] with ``clip``, as the paper
did) at 128 px and the default steps, MFVI's defaults otherwise, seeds 0, 1, 2: the same
observation for both settings of a seed. ``tune``: the second X-ray and OCT images; ``report``:
the first ones, with the classical baselines. Scored: the returned image (PSNR, SSIM) and the
coverage of its calibrated 68 % and 95 % intervals against the truth.
"""

from __future__ import annotations

import sys
from pathlib import Path

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
SETTINGS = ("auto", "off")
#: stage -> (image index, with the classical baselines)
STAGES = {"tune": (1, False), "report": (0, True)}
SCORES = DENOISING_SCORES


def runs(stage: str, smoke: bool = False) -> list[GridRun]:
    """The fits of ``stage``, seed by seed."""
    image = STAGES[stage][0]
    return [GridRun(f"{stage}_{domain}_{setting}_seed{seed}",
                    RunConfig(image=image_path(paths[image]), task="denoise", size=SIZE,
                              seed=seed, clip=True, censoring=setting,
                              **({"steps": 30} if smoke else {})))
            for seed in SEEDS for domain, paths in IMAGES.items() for setting in SETTINGS]


def run_stage(stage: str, out: Path, workers: int, smoke: bool = False,
              match: list[str] | None = None) -> None:
    """Run the fits of ``stage`` that ``out`` lacks."""
    run_fits(runs(stage, smoke), out, Hooks(baselines=STAGES[stage][1]), workers, match,
             desc=stage)


def report(out: Path) -> str:
    """``OUT/report.md``: per stage, domain and setting, the scores (mean over seeds), and
    BM3D's on the same observations where the stage has them."""
    lines = ["# Censored or plain Gaussian likelihood on clipped observations", "", PLUS_MINUS,
             ""]
    for stage in STAGES:
        datasets = finished(out, [run.name for run in runs(stage)])
        rows = []
        for domain in IMAGES:
            for setting in SETTINGS:
                found = [ds for name, ds in datasets.items()
                         if name.startswith(f"{stage}_{domain}_{setting}_seed")]
                if found:
                    rows.append([domain, setting, str(len(found)),
                                 *(interval([ds.attrs[key] for ds in found]) for key in SCORES),
                                 *classical_scores(found)])
        if rows:
            lines += [f"## {stage}", "", *table(
                ["domain", "censoring", "seeds", *SCORES.values(), "BM3D PSNR", "BM3D SSIM"],
                rows)]
        paired = []
        for domain in IMAGES:
            pairs = [(datasets[f"{stage}_{domain}_auto_seed{seed}"],
                      datasets[f"{stage}_{domain}_off_seed{seed}"]) for seed in SEEDS
                     if all(f"{stage}_{domain}_{s}_seed{seed}" in datasets for s in SETTINGS)]
            if pairs:
                paired.append([domain, str(len(pairs)), *paired_differences(pairs, SCORES)])
        if paired:
            lines += [f"{stage}, auto minus off on the same observation (paired by seed):", "",
                      *table(["domain", "seeds", *SCORES.values()], paired)]
    text = "\n".join(lines)
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.md").write_text(text)
    return text


def main(argv: list[str] | None = None) -> int:
    return study_main(argv, "experiments.censoring_study", __doc__, tuple(STAGES),
                      "30 steps per fit", run_stage, report)


if __name__ == "__main__":
    sys.exit(main())
