"""The paper's claims tested to convergence, against the classical baselines (issue 16).

    python -m experiments.convergence_study run --stage core --out runs/convergence --workers 2
    python -m experiments.convergence_study run --stage others --out runs/convergence --workers 2
    python -m experiments.convergence_study report --out runs/convergence

Every fit runs 3000 steps of the small network on about 64 x 64 pixels (:data:`DOMAINS`), at
least 8x the step where DIP's smoothed PSNR peaks there and 17x where its current image does
(measured on the second X-ray and OCT images: steps 349 / 339 and 177 / 149), seeds 0, 1, 2;
every method of a seed sees the same observation (Gaussian noise clipped to [0, 1] as the paper
did) and fits the same 90 % of the observed values: the other 10 % calibrate MFVI's std and
give DIP and MAP their held-out stopping curve.

Stages (``--match TEXT`` runs one domain, e.g. ``--match _oct_``):

- ``core``: DIP, MAP (DIP with MFVI's prior and temperature) and MFVI on both images of every
  domain. DIP and MAP record ES-WMV's window variance and the held-out residual, so their
  last, oracle-best and self-stopped PSNR come from one fit.
- ``others``: SGLD (burn-in 1500 steps, after DIP's peak; 30 samples), MC dropout and the
  paper's MFVI objective (``mfvi-paper``) on the first images.

Every fit's dataset holds the classical baselines of its observation (BM3D, NLM, TV, wavelet;
bicubic; biharmonic; FBP and SART). The fits are declared in :mod:`experiments.convergence_fits`
and run on :mod:`pyrodip.studies.grid` (:mod:`experiments.common`): each writes
``OUT/runs/NAME.nc``, and a stage run again fits only what it lacks (the ``OUT/jobs`` records
of earlier versions are not read: run the study again into a new folder). ``report`` writes
``OUT/report.md`` and ``OUT/convergence.png`` (:mod:`experiments.convergence_report`; every ±
the half-width of the 95 % t-interval over seeds); ``--smoke`` runs a stage with 30 steps (for
the tests).
"""

from __future__ import annotations

import sys
from pathlib import Path

from experiments import convergence_fits as fits
from experiments.common import run_fits, study_main
from experiments.convergence_report import report


def run_stage(stage: str, out: Path, workers: int, smoke: bool = False,
              match: list[str] | None = None) -> None:
    """Run the fits of ``stage`` that ``out`` lacks (only those whose name contains one of
    ``match``, when given)."""
    run_fits(fits.runs(stage, out, smoke), out, fits.HOOKS, workers, match, desc=stage)


def main(argv: list[str] | None = None) -> int:
    return study_main(argv, "experiments.convergence_study", __doc__, tuple(fits.STAGES),
                      "30 steps per fit", run_stage, report)


if __name__ == "__main__":
    sys.exit(main())
