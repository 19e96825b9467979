"""Is the std a user sees one they can trust? The recalibration measured (issue 15).

    python -m experiments.calibration_study run --stage tune --out runs/calibration --workers 2
    python -m experiments.calibration_study run --stage diagnose --out runs/calibration --workers 2
    python -m experiments.calibration_study run --stage goal --out runs/calibration --workers 2
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

Every recalibrated fit records both calibrations from its one fit (the held-out values are
the same), their coverage against the truth at 50/68/90/95 %, UCE (against the truth and the
observation), AUSE, the oracle scale (what the truth says the std lacks) and the error
against the std, binned. ``report`` writes ``OUT/report.md`` and ``OUT/*.png``; ``--smoke``
runs a stage with 30 steps on 64 px images (for the tests).
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from experiments.study_jobs import (
    DATA,
    SEEDS,
    clipped_observation,
    interval,
    load_records,
    pending,
    run_jobs,
    study_main,
    table,
    write_record,
)

SIZE = 128
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

    def config(self):
        from pyrodip import RunConfig

        image = self.image if self.image.startswith("sample:") else str(DATA / self.image)
        settings = {**DOMAINS[self.domain][2], **dict(self.settings)}
        if self.smoke:
            settings.update(steps=30, samples=4)
        return RunConfig(image=image, size=64 if self.smoke else SIZE, method=self.method,
                         seed=self.seed, **settings)


def jobs(stage: str, smoke: bool = False) -> list[Job]:
    """The fits of ``stage`` (see the module's docstring)."""
    if stage == "diagnose":  # the quick variants first
        return [Job(stage, domain, DOMAINS[domain][1], "mfvi", seed, settings, smoke)
                for settings in VARIANTS.values() for domain in ("xray", "oct")
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


def run_job(job: Job, out: Path) -> str:
    """Fit ``job`` and write its record; returns its name."""
    import torch

    from pyrodip import fit
    from pyrodip.evaluate.metrics import psnr

    torch.set_num_threads(1)
    config = job.config()
    obs = clipped_observation(config)
    result = fit(obs, config, progress=False)
    pred = result.prediction
    record = {
        "job": dataclasses.asdict(job),
        "config": json.loads(config.to_json()),
        "psnr": float(psnr(pred.mean, obs.truth)),
        "psnr_smoothed": float(result.history.curves["psnr"][-1]),
        "wall_time_s": result.wall_time_s,
        "status": result.status,
    }
    if result.calibration is not None:
        record.update(calibration_record(result, config, obs))
    # the images: the bias (tune) and the refit (goal: the uncalibrated fit's raw std times the
    # scale of its seed's held-out fit) are measured from them
    raw = pred.std_total if pred.std_total_raw is None else pred.std_total_raw
    np.savez_compressed(out / "jobs" / f"{job.name}.npz", mean=pred.mean.numpy(),
                        std=raw.numpy(), truth=obs.truth.numpy())
    write_record(out, job.name, record)
    return job.name


def calibration_record(result, config, obs) -> dict:
    """Both calibrations of one fit, scored against the truth."""
    from pyrodip.evaluate.calibration import calibrate
    from pyrodip.infer.recalibration import censored_range, recalibrate
    from pyrodip.physics.observation import hold_out
    from pyrodip.run.results import observation_uce

    pred = result.prediction
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


def run_stage(stage: str, out: Path, workers: int, smoke: bool = False,
              match: list[str] | None = None) -> None:
    """Run the fits of ``stage`` that ``out`` lacks (only those whose name contains one of
    ``match``, when given)."""
    run_jobs(stage, pending(jobs(stage, smoke), out, match), run_job, out, workers)


def groups(records: list[dict], stage: str) -> dict[tuple, list[dict]]:
    """The records of ``stage`` by (domain, method label), in the order of :data:`DOMAINS`."""
    found: dict[tuple, list[dict]] = {}
    for record in records:
        job = record["job"]
        if job["stage"] == stage:
            found.setdefault((job["domain"], label(job)), []).append(record)
    order = list(DOMAINS)
    return dict(sorted(found.items(), key=lambda item: (order.index(item[0][0]), item[0][1])))


def label(job: dict) -> str:
    settings = dict(map(tuple, job["settings"]))
    if settings.get("calibration") == "none":
        return f"{job['method']} (no calibration)"
    variant = next((name for name, values in VARIANTS.items() if dict(values) == settings), "")
    return f"{job['method']} {variant}".strip()


def calibration_values(group: list[dict], calibration: str, key: str) -> list[float]:
    return [r["calibrations"][calibration][key] for r in group
            if calibration in r.get("calibrations", {})]


def coverage_cells(group: list[dict], calibration: str) -> list[str]:
    """The 68 % and 95 % coverage over the seeds; seeds whose scale is 0 or not finite (no
    interval) are counted apart."""
    cells = []
    for level in ("68", "95"):
        values = [v for v in calibration_values(group, calibration, f"coverage_{level}")
                  if math.isfinite(v)]
        missing = len(group) - len(values)
        note = f"{missing} of {len(group)} without a scale"
        cells.append((interval(values) + (f" ({note})" if missing else "")) if values else note)
    return cells


def tune_rows(records: list[dict]) -> list[list[str]]:
    rows = []
    for (domain, _), group in groups(records, "tune").items():
        row = [domain, group[0]["job"]["image"], interval([r["psnr"] for r in group]),
               interval([r["oracle_scale"] for r in group]),
               interval(calibration_values(group, "scale", "scale"))]
        for calibration in ("raw", "scale", "conformal0.6827", "conformal0.9", "conformal0.95"):
            row += coverage_cells(group, calibration)
        rows.append(row)
    return rows


TUNE_HEADER = ["domain", "image", "PSNR", "oracle scale", "fitted scale",
               *(f"{name} {level}" for name in ("raw", "scale", "conf. 68", "conf. 90",
                                                "conf. 95") for level in ("68 %", "95 %"))]


def diagnose_rows(records: list[dict]) -> list[list[str]]:
    """The oracle scale (what the truth says the raw std lacks) per cause, X-ray and OCT."""
    rows = []
    for domain in ("xray", "oct"):
        tuned = [r for r in records if r["job"]["stage"] == "tune" and r["job"]["domain"] == domain]
        variants = [("defaults (T 0.1, 1000 steps, mean-field)", tuned)]
        variants += [(name, [r for r in records if r["job"]["stage"] == "diagnose"
                             and r["job"]["domain"] == domain and label(r["job"]).endswith(name)])
                     for name in VARIANTS]
        for name, group in variants:
            if not group:
                continue
            rows.append([domain, name, interval([r["psnr"] for r in group]),
                         interval([r["oracle_scale"] for r in group]),
                         interval([r["oracle_scale_95"] for r in group]),
                         interval([r["rms_ratio"] for r in group]),
                         *coverage_cells(group, "raw")])
    return rows


def bias_rows(records: list[dict], out: Path) -> list[list[str]]:
    """The bias split of the tuning fits, every domain."""
    rows = []
    for domain in DOMAINS:
        tuned = [r["job"] for r in records if r["job"]["stage"] == "tune"
                 and r["job"]["domain"] == domain]
        bias = bias_split(out, tuned)
        if bias:
            rows.append([domain, f"{bias['bias_share']:.0%}", f"{bias['spread_ratio']:.2f}"])
    return rows


BIAS_HEADER = ["domain", "bias: share of the squared error",
               "RMS spread of the mean over seeds / RMS posterior std"]


DIAGNOSE_HEADER = ["domain", "variant", "PSNR", "oracle scale 68 %", "oracle scale 95 %",
                   "RMS error / RMS std", "raw cover 68 %", "raw cover 95 %"]


def bias_split(out: Path, jobs_: list[dict]) -> dict | None:
    """Split the squared error of the seeds' means into the bias (the error of their average)
    and the spread around it; and the spread against the posterior's variance."""
    names = [Job(**job).name for job in jobs_]
    paths = [out / "jobs" / f"{name}.npz" for name in names]
    if len(paths) < 2 or not all(path.exists() for path in paths):
        return None
    arrays = [np.load(path) for path in paths]
    means = np.stack([a["mean"] for a in arrays])
    truth = arrays[0]["truth"]
    n = len(arrays)
    spread = means.var(axis=0, ddof=1).mean()  # unbiased, per pixel, averaged
    error = ((means - truth) ** 2).mean()
    bias = max(((means.mean(axis=0) - truth) ** 2).mean() - spread / n, 0.0)
    variance = np.mean([(a["std"] ** 2).mean() for a in arrays])
    return {"bias_share": bias / error, "spread_ratio": math.sqrt(spread / variance)}


def goal_rows(records: list[dict]) -> list[list[str]]:
    rows = []
    for (domain, method), group in groups(records, "goal").items():
        if "calibrations" not in group[0]:
            continue
        row = [domain, method, interval([r["psnr"] for r in group]),
               interval(calibration_values(group, "scale", "scale"))]
        for calibration in ("raw", "scale", "conformal0.9"):
            row += coverage_cells(group, calibration)
        row += [interval([1e3 * v for v in calibration_values(group, name, "uce")])
                for name in ("raw", "scale")]
        observed = [r["uce_observation"] for r in group if r.get("uce_observation") is not None
                    and r["config"]["noise"] != "speckle"]  # y's noise is not additive there
        row += [interval([1e3 * v for v in observed]) if observed else "",
                interval(calibration_values(group, "scale", "ause"), 3)]
        rows.append(row)
    return rows


GOAL_HEADER = ["domain", "method", "PSNR", "scale",
               *(f"{name} {level}" for name in ("raw", "scale", "conf. 90")
                 for level in ("68 %", "95 %")),
               "UCE raw (1e-3)", "UCE scale (1e-3)", "UCE vs y (1e-3)", "AUSE"]


def psnr_cost_rows(records: list[dict]) -> list[list[str]]:
    """MFVI with its held-out values against MFVI fitted on all of them, paired by seed."""
    by_name = {Job(**r["job"]).name: r for r in records}
    rows = []
    for domain in DOMAINS:
        pairs = []
        for seed in SEEDS:
            kept = by_name.get(Job("goal", domain, DOMAINS[domain][0], "mfvi", seed).name)
            whole = by_name.get(Job("goal", domain, DOMAINS[domain][0], "mfvi", seed,
                                    (("calibration", "none"),)).name)
            if kept and whole:
                pairs.append((kept["psnr"], whole["psnr"]))
        if pairs:
            rows.append([domain, interval([b for _, b in pairs]), interval([a for a, _ in pairs]),
                         interval([a - b for a, b in pairs])])
    return rows


PSNR_HEADER = ["domain", "PSNR, all values fitted", "PSNR, 10 % held out", "difference"]


def refit_rows(records: list[dict], out: Path) -> list[list[str]]:
    """MFVI refitted on all values with the scale of its seed's held-out fit: the uncalibrated
    fit's raw std times that scale, scored against the truth."""
    from pyrodip.evaluate.calibration import calibrate

    by_name = {Job(**r["job"]).name: r for r in records}
    rows = []
    for domain in DOMAINS:
        scored = []
        for seed in SEEDS:
            image = DOMAINS[domain][0]
            kept = by_name.get(Job("goal", domain, image, "mfvi", seed).name)
            whole = Job("goal", domain, image, "mfvi", seed, (("calibration", "none"),)).name
            path = out / "jobs" / f"{whole}.npz"
            if kept is None or "calibrations" not in kept or not path.exists():
                continue
            arrays = np.load(path)
            cal = calibrate(arrays["mean"], kept["calibrations"]["scale"]["scale"] * arrays["std"],
                            arrays["truth"])
            scored.append((cal.coverage["68"], cal.coverage["95"], 1e3 * cal.uce))
        if scored:
            rows.append([domain, *(interval([s[i] for s in scored]) for i in range(3))])
    return rows


REFIT_HEADER = ["domain", "refit 68 %", "refit 95 %", "UCE refit (1e-3)"]


def plot_goal(records: list[dict], out: Path) -> None:
    """Error against std (binned by std, averaged over seeds) per domain and method, raw
    (dashed) and recalibrated (solid); and the coverages before and after."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    chosen = {key: group for key, group in groups(records, "goal").items()
              if "calibrations" in group[0]}
    domains = list(dict.fromkeys(domain for domain, _ in chosen))
    if not domains:
        return
    fig, axes = plt.subplots(2, len(domains), figsize=(3.4 * len(domains), 6.6), squeeze=False)
    for column, domain in enumerate(domains):
        ax, bars = axes[0, column], axes[1, column]
        methods = [method for d, method in chosen if d == domain]
        for index, method in enumerate(methods):
            group = chosen[domain, method]
            std = np.mean([r["binned_std"] for r in group], axis=0)
            error = np.mean([r["binned_error"] for r in group], axis=0)
            scale = np.mean(calibration_values(group, "scale", "scale"))
            ax.plot(std, error, "x--", color=f"C{index}", lw=1, ms=3)
            ax.plot(scale * std, error, "o-", color=f"C{index}", lw=1, ms=3, label=method)
            for offset, level in ((-0.2, "68"), (0.2, "95")):
                before = np.mean(calibration_values(group, "raw", f"coverage_{level}"))
                after = np.mean(calibration_values(group, "scale", f"coverage_{level}"))
                x = index + offset
                bars.bar(x, after, 0.35, color=f"C{index}", alpha=0.8 if level == "95" else 0.5)
                bars.plot([x - 0.17, x + 0.17], [before, before], "k-", lw=1.5)
        top = max(ax.get_xlim()[1], ax.get_ylim()[1])
        ax.plot([0, top], [0, top], "k:", lw=1)
        ax.set(xlim=(0, top), ylim=(0, top), title=domain, xlabel="RMS std (binned)",
               ylabel="RMS error")
        ax.legend(fontsize=7)
        for level, low, high in ((0.6827, 0.60, 0.76), (0.95, 0.90, 0.98)):
            bars.axhspan(low, high, color="0.85", zorder=0)
            bars.axhline(level, color="k", ls=":", lw=1)
        bars.set_xticks(range(len(methods)), [m.split()[0] for m in methods], fontsize=7)
        bars.set(ylim=(0, 1), ylabel="coverage (68 %, 95 %)",
                 title="bars: calibrated, lines: raw")
    fig.tight_layout()
    fig.savefig(out / "calibration_goal.png", dpi=100)
    plt.close(fig)


def report(out: Path) -> Path:
    records = [r for r in load_records(out) if r.get("status") == "completed"]
    if not records:
        raise SystemExit(f"no fits in {out / 'jobs'}: run a stage first")
    lines = ["## tune (the second images)", "", *table(TUNE_HEADER, tune_rows(records)),
             "## diagnose", "", *table(DIAGNOSE_HEADER, diagnose_rows(records)),
             "## bias (the tuning fits)", "", *table(BIAS_HEADER, bias_rows(records, out)),
             "## goal (the first images)", "", *table(GOAL_HEADER, goal_rows(records)),
             "## PSNR of MFVI with and without the held-out values", "",
             *table(PSNR_HEADER, psnr_cost_rows(records)),
             "## MFVI refitted on all values, the held-out fit's scale applied", "",
             *table(REFIT_HEADER, refit_rows(records, out))]
    path = out / "report.md"
    path.write_text("\n".join(lines))
    plot_goal(records, out)
    return path


def main(argv: list[str] | None = None) -> int:
    return study_main(argv, "experiments.calibration_study", __doc__, ("tune", "diagnose", "goal"),
                      "30 steps on 64 px images", DATA, run_stage, report)


if __name__ == "__main__":
    sys.exit(main())
