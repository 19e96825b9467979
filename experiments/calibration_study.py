"""Is the std a user sees one they can trust? The recalibration measured (issue 15).

    python -m experiments.calibration_study run --stage tune --out runs/calibration --workers 2
    python -m experiments.calibration_study run --stage diagnose --out runs/calibration --workers 2
    python -m experiments.calibration_study run --stage goal --out runs/calibration --workers 2
    python -m experiments.calibration_study run --stage ensemble --out runs/calibration --workers 2
    python -m experiments.calibration_study report --out runs/calibration

Every fit runs the defaults (``RunConfig()``: the small network, 1000 steps) at 128 px on
the shared images, seeds 0, 1, 2; every method of a seed sees the same observation (Gaussian
noise clipped to [0, 1] as the paper did; speckle and CT sinograms as drawn). Domains:
denoising of X-ray, OCT (Gaussian 0.1) and ultrasound (speckle 0.1), 4x super-resolution of
MRI and CT (Gaussian 0.01 on the low-resolution image), sparse-view CT (45 angles, Gaussian
0.1 of the largest projection) and inpainting of a skin image under a synthetic stroke mask
(Gaussian 0.01; the truth under the mask is known).

Stages:

- ``tune``: MFVI on each domain's second image, where the calibration's choices (``scale``
  against ``conformal``, the target) are made.
- ``diagnose``: what makes the raw std too small, on the second X-ray and OCT images: the
  temperature (T = 1 against 0.1), steps (2000 against 1000) and the guide (low-rank against
  mean-field); the fit's bias comes from the ``tune`` fits (the error of the mean over seeds).
- ``goal``: each domain's first image: MFVI, MC dropout and SGLD, each recalibrated the
  same way, and MFVI without calibration (the PSNR the held-out values cost).
- ``ensemble``: the first images of MRI super-resolution and sparse-view CT (where the error
  lies in the operator's null space): an ensemble of 4 MFVI fits and one of 4 DIP-ES fits
  (``ensemble=4``), each calibrated on the held-out values of the goal stage's single fit.

Every recalibrated fit records both calibrations from its one fit (the held-out values are
the same), their coverage against the truth at 50/68/90/95 %, UCE (against the truth and the
observation), AUSE, the oracle scale (what the truth says the std lacks) and the error
against the std, binned (:mod:`experiments.calibration_fits`). ``report`` writes
``OUT/report.md`` and ``OUT/*.png`` (:mod:`experiments.calibration_report`; every ± the
half-width of the 95 % t-interval over seeds); ``--smoke`` runs a stage with 30 steps on 64 px
images (for the tests).

The fits run on :mod:`pyrodip.studies.grid` (:mod:`experiments.common`): each writes
``OUT/runs/NAME.nc``, and a stage run again fits only what it lacks (the ``OUT/jobs``
records of earlier versions are not read: run the study again into a new folder).
"""

from __future__ import annotations

import sys
from pathlib import Path

from experiments.calibration_fits import HOOKS, STAGES, runs
from experiments.calibration_report import report
from experiments.common import run_fits, study_main


def run_stage(stage: str, out: Path, workers: int, smoke: bool = False,
              match: list[str] | None = None) -> None:
    """Run the fits of ``stage`` that ``out`` lacks (only those whose name contains one of
    ``match``, when given)."""
    run_fits(runs(stage, smoke), out, HOOKS, workers, match, desc=stage)


def main(argv: list[str] | None = None) -> int:
    return study_main(argv, "experiments.calibration_study", __doc__, STAGES,
                      "30 steps on 64 px images", run_stage, report)


if __name__ == "__main__":
    sys.exit(main())
