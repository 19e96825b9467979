"""BO of the default search (the temperature) on one image of a domain, and the tuned setting on
the domain's other image, with seeds: does a setting tuned on one image serve the next?

    python -m experiments.bo_transfer_study run --stage bo --out runs/bo-transfer --workers 2
    python -m experiments.bo_transfer_study run --stage apply --out runs/bo-transfer --workers 2
    python -m experiments.bo_transfer_study run --stage agreement --out runs/bo-transfer --workers 2
    python -m experiments.bo_transfer_study report --out runs/bo-transfer

For X-ray denoising and MRI 4x super-resolution (:data:`DOMAINS`), 128 px, the code's defaults
(Gaussian noise clipped to [0, 1] as the paper did, scored as plain values):

- ``bo``: a BO study (``pyrodip bo``'s default search and objective, :data:`BUDGET`) on each
  image of the domain, fits at seed :data:`BO_SEED`, in ``OUT/bo/DOMAIN_IMAGE``;
- ``apply``: on the report image, seeds :data:`APPLY_SEEDS` (observations BO never saw), three
  settings on the same observation: the default, the one tuned on the tuning image
  (``transferred``) and the one tuned on the report image itself (``own``);
- ``agreement``: the ``heldout`` objective (10 % of the pixels hidden from the fit, no ground
  truth needed) against ``psnr`` at :data:`TEMPERATURES` on each report image, seed
  :data:`BO_SEED`: does the objective for real scans rank the temperatures as PSNR does?

Every BO study and every fit resumes where it stopped; ``--match TEXT`` runs only the studies or
fits whose name contains TEXT. ``report`` writes ``OUT/report.md`` and ``OUT/bo_transfer.png``.
"""

from __future__ import annotations

import sys
from pathlib import Path

from experiments.calibration_fits import DOMAINS as ALL_DOMAINS
from experiments.common import (
    PLUS_MINUS,
    finish_study,
    finished,
    image_path,
    interval,
    local_executor,
    paired_differences,
    run_fits,
    study_main,
    table,
)
from pyrodip.run.config import RunConfig
from pyrodip.studies.bo import Study, best_parameters
from pyrodip.studies.bo_study import RESULT_FILE, read_trials
from pyrodip.studies.grid import GridRun, Hooks

STAGES = ("bo", "apply", "agreement")
DOMAINS = {name: ALL_DOMAINS[name] for name in ("xray", "mri")}
IMAGES = ("report", "tuning")  # the order of a domain's images in ALL_DOMAINS
SIZE = 128
BO_SEED = 0
APPLY_SEEDS = (1, 2, 3)
#: Each BO study: a Sobol design of 4, then 3 rounds of 2 candidates (2 fits at a time).
BUDGET = {"init_points": 4, "rounds": 3, "batch": 2}
#: The temperatures of the ``agreement`` stage.
TEMPERATURES = (0.03, 0.1, 0.3, 1.0, 3.0)
AGREEMENT_OBJECTIVES = ("heldout", "psnr")
SETTINGS = ("default", "transferred", "own")
SMOKE_STEPS = 6
HOOKS = Hooks(baselines=False)


def config(domain: str, image: str, seed: int, smoke: bool = False) -> RunConfig:
    """The default fit on ``domain``'s ``image`` (report or tuning) at ``seed``."""
    settings = DOMAINS[domain][2]
    return RunConfig(image=image_path(DOMAINS[domain][IMAGES.index(image)]), seed=seed,
                     size=SIZE, clip=True, censoring="off", **settings,
                     **({"steps": SMOKE_STEPS, "samples": 2} if smoke else {}))


def bo_folder(out: Path, domain: str, image: str) -> Path:
    return out / "bo" / f"{domain}_{image}"


def agreement_folder(out: Path, domain: str, objective: str) -> Path:
    return out / "agreement" / f"{domain}_{objective}"


def studies(stage: str, out: Path, smoke: bool = False) -> dict[Path, Study]:
    """The BO studies of ``stage`` (``bo`` or ``agreement``) by folder."""
    if stage == "bo":
        return {bo_folder(out, d, image): Study(config=config(d, image, BO_SEED, smoke), **BUDGET)
                for d in DOMAINS for image in IMAGES}
    return {agreement_folder(out, d, objective):
            Study(config=config(d, "report", BO_SEED, smoke), objective=objective,
                  init=tuple((t,) for t in TEMPERATURES), rounds=0, batch=2)
            for d in DOMAINS for objective in AGREEMENT_OBJECTIVES}


def run_studies(chosen: dict[Path, Study], workers: int) -> None:
    """Run (or continue) each study in ``chosen`` on ``workers`` local workers of one thread."""
    with local_executor(workers) as executor:
        for folder, study in chosen.items():
            print(f"study {folder.name}", flush=True)
            finish_study(study, folder, executor)


def tuned(out: Path, domain: str, image: str) -> dict[str, float] | None:
    """The setting BO tuned on ``domain``'s ``image``, or None before its study has ended."""
    folder = bo_folder(out, domain, image)
    return best_parameters(folder) if (folder / RESULT_FILE).exists() else None


def apply_name(domain: str, setting: str, seed: int) -> str:
    return f"apply_{domain}_{setting}_seed{seed}"


def apply_runs(out: Path, smoke: bool = False) -> list[GridRun]:
    """The ``apply`` fits whose setting is known (the default always; a tuned one once its
    study has ended)."""
    runs = []
    for domain in DOMAINS:
        chosen = {"default": {}, "transferred": tuned(out, domain, "tuning"),
                  "own": tuned(out, domain, "report")}
        for setting, params in chosen.items():
            if params is None:
                print(f"{domain}: no `{setting}` setting yet (run --stage bo)", flush=True)
                continue
            runs += [GridRun(apply_name(domain, setting, seed),
                             config(domain, "report", seed, smoke).replace(**params))
                     for seed in APPLY_SEEDS]
    return runs


def run_stage(stage: str, out: Path, workers: int, smoke: bool = False,
              match: list[str] | None = None) -> None:
    """Run what ``out`` lacks of ``stage``."""
    if stage == "apply":
        run_fits(apply_runs(out, smoke), out, HOOKS, workers, match, desc=stage)
        return
    chosen = {folder: study for folder, study in studies(stage, out, smoke).items()
              if not match or any(text in folder.name for text in match)}
    run_studies(chosen, workers)


def bo_rows(out: Path) -> list[list[str]]:
    """Per finished BO study: its trials, the tuned temperature and the best trial."""
    rows = []
    for domain in DOMAINS:
        for image in IMAGES:
            folder = bo_folder(out, domain, image)
            if not (folder / RESULT_FILE).exists():
                continue
            trials = [t for t in read_trials(folder).values() if t.status == "ok"]
            best = max(trials, key=lambda t: t.objective)
            rows.append([domain, Path(DOMAINS[domain][IMAGES.index(image)]).name, image,
                         str(len(trials)), _values(best_parameters(folder)),
                         _values(best.params), f"{best.objective:.2f}"])
    return rows


def _values(params: dict[str, float]) -> str:
    return ", ".join(f"{name} {value:.3g}" for name, value in params.items())


def apply_rows(out: Path) -> list[list[str]]:
    """Per domain: the returned image's PSNR of each setting over the seeds, and the
    transferred setting against the default and against the image's own, paired by seed."""
    rows = []
    for domain in DOMAINS:
        fits = {s: finished(out, [apply_name(domain, s, seed) for seed in APPLY_SEEDS])
                for s in SETTINGS}
        by_seed = {s: {int(ds.attrs["seed"]): ds for ds in found.values()}
                   for s, found in fits.items()}
        if not any(by_seed.values()):
            continue
        cells = [domain, Path(DOMAINS[domain][0]).name]
        cells += [interval([float(ds.attrs["mean_psnr"]) for ds in by_seed[s].values()])
                  for s in SETTINGS]
        for other in ("default", "own"):
            pairs = [(by_seed["transferred"][k], by_seed[other][k])
                     for k in by_seed["transferred"] if k in by_seed[other]]
            cells += paired_differences(pairs, ["mean_psnr"]) if pairs else [""]
        rows.append(cells)
    return rows


def agreement_rows(out: Path) -> list[list[str]]:
    """Per domain and temperature: the ``heldout`` and ``psnr`` objectives."""
    rows = []
    for domain in DOMAINS:
        found = {o: read_trials(agreement_folder(out, domain, o))
                 for o in AGREEMENT_OBJECTIVES
                 if (agreement_folder(out, domain, o) / RESULT_FILE).exists()}
        if len(found) < len(AGREEMENT_OBJECTIVES):
            continue
        for temperature in TEMPERATURES:
            cells = [domain, f"{temperature:g}"]
            for objective in AGREEMENT_OBJECTIVES:
                trial = next(t for t in found[objective].values()
                             if abs(t.params["temperature"] - temperature) < 1e-9 * temperature)
                digits = 3 if objective == "heldout" else 2
                cells.append(f"{trial.objective:.{digits}f}" if trial.status == "ok" else "failed")
            rows.append(cells)
    return rows


def report(out: Path) -> str:
    """``OUT/report.md`` and ``OUT/bo_transfer.png``."""
    lines = ["# BO on one image, the setting on the next", "",
             f"BO: {BUDGET['init_points']} initial trials then {BUDGET['rounds']} rounds of "
             f"{BUDGET['batch']}, seed {BO_SEED}; the tuned setting is the GP's best.", "",
             *table(["domain", "image", "role", "trials", "tuned (GP)", "best trial",
                     "its PSNR"], bo_rows(out)),
             f"Applied on the report image, seeds {', '.join(map(str, APPLY_SEEDS))}: the "
             f"returned image's PSNR (dB). {PLUS_MINUS}.", "",
             *table(["domain", "image", *SETTINGS, "transferred minus default",
                     "transferred minus own"], apply_rows(out))]
    rows = agreement_rows(out)
    if rows:
        lines += [f"Agreement (seed {BO_SEED}, report image): `heldout` (mean log-density of "
                  "10 % held-out pixels) and `psnr` per temperature.", "",
                  *table(["domain", "temperature", *AGREEMENT_OBJECTIVES], rows)]
    text = "\n".join(lines)
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.md").write_text(text)
    plot_trials(out)
    return text


def plot_trials(out: Path) -> None:
    """``OUT/bo_transfer.png``: per domain, every BO trial's objective against its temperature
    on both images, the default and the tuned temperatures marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    done = [d for d in DOMAINS if all((bo_folder(out, d, i) / RESULT_FILE).exists()
                                      for i in IMAGES)]
    if not done:
        return
    fig, axes = plt.subplots(1, len(done), figsize=(5 * len(done), 3.6), squeeze=False)
    for ax, domain in zip(axes[0], done, strict=True):
        for image, colour in zip(IMAGES, ("C0", "C1"), strict=True):
            trials = [t for t in read_trials(bo_folder(out, domain, image)).values()
                      if t.status == "ok"]
            name = Path(DOMAINS[domain][IMAGES.index(image)]).name
            ax.scatter([t.params["temperature"] for t in trials],
                       [t.objective for t in trials], color=colour, s=18,
                       label=f"{name} ({image})")
            ax.axvline(best_parameters(bo_folder(out, domain, image))["temperature"],
                       color=colour, lw=0.8, ls="--")
        ax.axvline(RunConfig().resolved("temperature"), color="k", lw=0.8, ls=":", label="default")
        ax.set_xscale("log")
        ax.set_xlabel("temperature")
        ax.set_ylabel("PSNR of the smoothed image (dB)")
        ax.set_title(domain)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "bo_transfer.png", dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    return study_main(argv, "experiments.bo_transfer_study", __doc__, STAGES,
                      "a few steps per fit", run_stage, report)


if __name__ == "__main__":
    sys.exit(main())
