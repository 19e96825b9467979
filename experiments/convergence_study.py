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

Every record holds the classical baselines of its observation (BM3D, NLM, TV, wavelet;
bicubic; biharmonic; FBP and SART). ``report`` writes ``OUT/report.md`` and
``OUT/convergence.png``; ``--smoke`` runs a stage with 30 steps (for the tests).
"""

from __future__ import annotations

import dataclasses
import json
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

    def config(self, out: Path):
        from pyrodip import RunConfig

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


def run_job(job: Job, out: Path) -> str:
    """Fit ``job`` and write its record and curves; returns its name."""
    import torch

    from pyrodip import fit
    from pyrodip.infer.loop import CHECK_EVERY
    from pyrodip.infer.stopping import RULE_CURVES, stop_step
    from pyrodip.run.results import to_dataset

    torch.set_num_threads(1)
    config = job.config(out)
    result = fit(clipped_observation(config), config, progress=False)
    dataset = to_dataset(result)
    curves = result.history.curves
    current, smoothed = curves["psnr_current"], curves["psnr"]
    keys = ("psnr", "ssim", "psnr_known", "psnr_missing", "coverage_68", "coverage_95",
            "coverage_68_raw", "coverage_95_raw", "uce", "uce_raw", "calibration_scale")
    record = {
        "job": dataclasses.asdict(job),
        "config": json.loads(config.to_json()),
        **{key: float(dataset.attrs[key]) for key in keys if key in dataset.attrs},
        "baselines": dict(zip(dataset["classical"].values.tolist(),
                              map(float, dataset["classical_psnr"].values), strict=True)),
        "baseline": dataset.attrs["baseline"],
        "baseline_psnr_known": dataset.attrs.get("baseline_psnr_known"),
        "baseline_psnr_missing": dataset.attrs.get("baseline_psnr_missing"),
        "last_current": float(current[-1]),
        "best_current": float(current.max()),
        "best_current_step": int(current.argmax()) + 1,
        "last_smoothed": float(smoothed[-1]),
        "best_smoothed": float(smoothed.max()),
        "best_smoothed_step": int(smoothed.argmax()) + 1,
        "loss_change_last_10pct": _loss_change(curves["loss"]),
        "wall_time_s": result.wall_time_s,
        "status": result.status,
    }
    for rule, curve in RULE_CURVES.items():
        if curve not in curves or np.isnan(curves[curve]).all():
            continue
        step = stop_step(curves[curve], PATIENCE, CHECK_EVERY)
        chosen = step if step is not None else int(np.nanargmin(curves[curve]))
        record[f"stop_{rule}"] = {"step": chosen + 1, "stopped": step is not None,
                                  "psnr": float(current[chosen])}
    np.savez_compressed(out / "jobs" / f"{job.name}.npz",
                        **{key: curves[key] for key in ("loss", "psnr", "psnr_current",
                                                        *RULE_CURVES.values()) if key in curves})
    write_record(out, job.name, record)
    return job.name


def _loss_change(loss: np.ndarray) -> float:
    """The change of the mean loss from the second-last to the last tenth of the steps,
    relative to its spread over the fit (how far from a plateau the fit ended)."""
    tenth = max(len(loss) // 10, 1)
    change = loss[-tenth:].mean() - loss[-2 * tenth : -tenth].mean()
    return float(change / max(np.ptp(loss), 1e-12))


def run_stage(stage: str, out: Path, workers: int, smoke: bool = False,
              match: list[str] | None = None) -> None:
    """Run the fits of ``stage`` that ``out`` lacks."""
    run_jobs(stage, pending(jobs(stage, smoke), out, match), run_job, out, workers)


#: The domains whose baselines are denoisers (the goal is "within 0.5 dB of BM3D" there).
DENOISING = ("xray", "oct", "us")
#: Where the truth under the mask is not known (real hair): only the known pixels are scored.
KNOWN_ONLY = ("skin",)


def grouped(records: list[dict]) -> dict[tuple[str, int, str], list[dict]]:
    """Records by (domain, image, method), in the order of :data:`DOMAINS`, seeds in order."""
    found: dict[tuple, list[dict]] = {}
    for record in sorted(records, key=lambda r: r["job"]["seed"]):
        job = record["job"]
        method = job["method"]
        if job["stage"] == "long":
            method += f" ({record['config']['steps']} steps)"
        found.setdefault((job["domain"], job["image"], method), []).append(record)
    order = list(DOMAINS)
    return dict(sorted(found.items(), key=lambda item: (order.index(item[0][0]), item[0][1:])))


def image_name(domain: str, image: int) -> str:
    return Path(DOMAINS[domain][0][image]).name


def values(group: list[dict], key: str) -> list[float]:
    """``key`` of each record; ``stop_RULE`` keys give the PSNR at the rule's step."""
    if key.startswith("stop_"):
        return [r[key]["psnr"] for r in group if key in r]
    return [r[key] for r in group if r.get(key) is not None]


def cell(group: list[dict] | None, key: str, digits: int = 2) -> str:
    found = values(group, key) if group else []
    return interval(found, digits) if found else "-"


def best_classical(group: list[dict]) -> tuple[str, list[float]]:
    """The classical baseline with the best mean PSNR over the seeds, and its PSNRs."""
    names = group[0]["baselines"]
    best = max(names, key=lambda name: np.mean([r["baselines"][name] for r in group]))
    return best, [r["baselines"][best] for r in group]


def claim_rows(records: list[dict]) -> list[list[str]]:
    """Claim 1 and the goal: MFVI's last step against DIP (last, oracle best, self-stopped),
    MAP and the best classical baseline, per domain and image."""
    groups = grouped(records)
    rows = []
    for (domain, image, method), group in groups.items():
        if method != "mfvi" or group[0]["job"]["stage"] != "core" or domain in KNOWN_ONLY:
            continue
        dip, map_ = groups.get((domain, image, "dip")), groups.get((domain, image, "map"))
        name, classical = best_classical(group)
        mfvi = values(group, "psnr")
        row = [domain, image_name(domain, image), str(len(group)), interval(mfvi),
               cell(group, "last_smoothed"), cell(dip, "last_current"),
               cell(dip, "best_current"), cell(dip, "stop_wmv"), cell(dip, "stop_heldout"),
               paired(group, dip, "stop_wmv"), cell(map_, "last_current"),
               cell(map_, "best_current"), f"{interval(classical)} ({name})",
               interval([r["psnr"] - max(r["baselines"].values()) for r in group])]
        rows.append(row + [goal(domain, group, dip, classical)])
    return rows


CLAIM_HEADER = ["domain", "image", "seeds", "MFVI (result)", "MFVI smoothed", "DIP last",
                "DIP oracle best", "DIP ES-WMV", "DIP held-out stop", "MFVI - DIP ES-WMV",
                "MAP last", "MAP best", "best classical", "MFVI - best classical", "goal"]


def paired(mfvi: list[dict], other: list[dict] | None, key: str) -> str:
    """MFVI's PSNR minus ``key`` of ``other``, seed by seed (the same observation)."""
    by_seed = {r["job"]["seed"]: r["psnr"] for r in mfvi}
    found = [by_seed[r["job"]["seed"]] - value for r in other or [] if r["job"]["seed"] in by_seed
             for value in values([r], key)]
    return interval(found) if found else "-"


def goal(domain: str, mfvi: list[dict], dip: list[dict] | None, classical: list[float]) -> str:
    """The issue's goal on one image, judged on the means over seeds."""
    mean = float(np.mean(values(mfvi, "psnr")))
    checks = []
    if dip:
        stopped = [np.mean(found) for rule in ("stop_wmv", "stop_heldout")
                   if (found := values(dip, rule))]
        if stopped:
            checks.append(("≥ self-stopped DIP", mean >= max(stopped)))
        checks.append(("≥ DIP best - 0.5", mean >= np.mean(values(dip, "best_current")) - 0.5))
    if domain in DENOISING:
        bm3d = np.mean([r["baselines"]["bm3d"] for r in mfvi])
        checks.append(("≥ BM3D - 0.5", mean >= bm3d - 0.5))
    else:
        checks.append(("≥ classical + 1", mean >= np.mean(classical) + 1.0))
    missed = [text for text, ok in checks if not ok]
    return "met" if not missed else "not: " + ", ".join(missed)


def stop_rows(records: list[dict]) -> list[list[str]]:
    """Where DIP and MAP peak and where the rules stop them (steps, 1-based)."""
    rows = []
    for (domain, image, method), group in grouped(records).items():
        if method not in ("dip", "map") or domain in KNOWN_ONLY:
            continue
        row = [domain, image_name(domain, image), method,
               cell(group, "best_current_step", 0), cell(group, "best_smoothed_step", 0)]
        for rule in ("wmv", "heldout"):
            steps = [r[f"stop_{rule}"]["step"] for r in group if f"stop_{rule}" in r]
            fired = sum(r[f"stop_{rule}"]["stopped"] for r in group if f"stop_{rule}" in r)
            row += [interval(steps, 0) if steps else "-", f"{fired}/{len(steps)}"]
        rows.append(row)
    return rows


STOP_HEADER = ["domain", "image", "method", "best step", "best step (smoothed)",
               "ES-WMV step", "fired", "held-out step", "fired"]


def bayesian_rows(records: list[dict]) -> list[list[str]]:
    """Claim 2: the Bayesian DIPs at their last step (the result a user gets), first images,
    and their calibration (coverage of the 68 % and 95 % intervals, raw -> recalibrated)."""
    groups = grouped(records)
    rows = []
    for (domain, image, method), group in groups.items():
        if method in ("dip", "map") or domain in KNOWN_ONLY or image != 0:
            continue
        coverage = [f"{cell(group, f'coverage_{level}_raw')} -> {cell(group, f'coverage_{level}')}"
                    for level in (68, 95)]
        mfvi = {r["job"]["seed"]: r["psnr"] for r in groups.get((domain, image, "mfvi"), [])}
        paired = [mfvi[r["job"]["seed"]] - r["psnr"] for r in group if r["job"]["seed"] in mfvi]
        rows.append([domain, method, str(len(group)), cell(group, "psnr"),
                     interval(paired) if method != "mfvi" and paired else "-",
                     cell(group, "best_smoothed"), *coverage, cell(group, "wall_time_s", 0)])
    return rows


BAYESIAN_HEADER = ["domain", "method", "seeds", "PSNR (result)", "MFVI - it (paired by seed)",
                   "best smoothed", "coverage 68 % raw -> cal.", "coverage 95 % raw -> cal.",
                   "time (s)"]


def baseline_rows(records: list[dict]) -> list[list[str]]:
    """Every classical baseline on every image (the same observation for every method of a
    seed, so each seed counts once)."""
    rows = []
    for (domain, image, method), group in grouped(records).items():
        if method != "mfvi" or group[0]["job"]["stage"] != "core":
            continue
        key = "baseline_psnr_known" if domain in KNOWN_ONLY else None
        cells = [f"{name} {interval([r['baselines'][name] for r in group])}"
                 for name in group[0]["baselines"]]
        if key:
            cells = [f"{group[0]['baseline']} (known pixels) {cell(group, key)}"]
        rows.append([domain, image_name(domain, image), "; ".join(cells)])
    return rows


def inpainting_rows(records: list[dict]) -> list[list[str]]:
    """Inpainting scored on the missing pixels (where the truth under the mask is known, the
    stroke crop) and on the known ones (all that can be scored under real hair, where the
    truth is hair). DIP's and MAP's result here is the image of the held-out residual's minimum
    over the whole fit."""
    rows = []
    for (domain, image, method), group in grouped(records).items():
        if "psnr_missing" in group[0]:
            rows.append([domain, image_name(domain, image), method,
                         *(cell(group, key) for key in ("psnr_missing", "baseline_psnr_missing",
                                                        "psnr_known", "baseline_psnr_known"))])
    return rows


INPAINTING_HEADER = ["domain", "image", "method", "PSNR missing", "baseline missing",
                     "PSNR known", "baseline known"]


def plateau_rows(records: list[dict], out: Path) -> list[list[str]]:
    """Has MFVI settled? Its loss's change over the last tenth of the steps, relative to its
    range over the fit; where its smoothed PSNR peaks; what the last third of the steps added."""
    rows = []
    for (domain, image, method), group in grouped(records).items():
        if method.startswith("mfvi"):
            gains = []
            for record in group:
                curve = np.load(out / "jobs" / f"{Job(**record['job']).name}.npz")["psnr"]
                gains.append(float(curve[-1] - curve[2 * len(curve) // 3 - 1]))
            rows.append([domain, image_name(domain, image), method,
                         cell(group, "loss_change_last_10pct", 4),
                         cell(group, "best_smoothed_step", 0), cell(group, "last_smoothed"),
                         interval(gains)])
    return rows


PLATEAU_HEADER = ["domain", "image", "method", "loss change, last 10 %", "best step (smoothed)",
                  "last smoothed", "gain over the last third"]


def report(out: Path) -> str:
    """The tables of ``out``'s records (also written to ``OUT/report.md``) and the figure."""
    records = [r for r in load_records(out) if r.get("status") in ("completed", "stopped")]
    if not records:
        return f"no records in {out / 'jobs'} yet: run a stage first"
    lines = [
        f"{len(records)} fits; mean ± 95 % t-interval over seeds; PSNR in dB.", "",
        "## MFVI at its last step against DIP, MAP and the classical baselines", "",
        *table(CLAIM_HEADER, claim_rows(records)),
        "## Where DIP and MAP peak, and where the rules stop them", "",
        *table(STOP_HEADER, stop_rows(records)),
        "## The Bayesian DIPs at their last step (first images)", "",
        *table(BAYESIAN_HEADER, bayesian_rows(records)),
        "## Has MFVI converged?", "", *table(PLATEAU_HEADER, plateau_rows(records, out)),
        "## Every classical baseline", "",
        *table(["domain", "image", "PSNR"], baseline_rows(records)),
        "## Inpainting: the missing and the known pixels", "",
        *table(INPAINTING_HEADER, inpainting_rows(records)),
    ]
    text = "\n".join(lines)
    (out / "report.md").write_text(text)
    plot_curves(records, out)
    return text


def plot_curves(records: list[dict], out: Path) -> None:
    """``OUT/convergence.png``: the mean PSNR curves over seeds of DIP (current image), MAP and
    MFVI (smoothed) on each domain's first image, the rules' stops and the best classical."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = grouped(records)
    domains = [d for d in DOMAINS if d not in KNOWN_ONLY and (d, 0, "mfvi") in groups]
    if not domains:
        return
    columns = min(4, len(domains))
    rows = -(-len(domains) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(4 * columns, 3 * rows), squeeze=False)
    styles = {"dip": ("psnr_current", "tab:red"), "map": ("psnr_current", "tab:orange"),
              "mfvi": ("psnr", "tab:blue")}
    for ax, domain in zip(axes.flat, domains, strict=False):
        for method, (curve, color) in styles.items():
            group = groups.get((domain, 0, method))
            if not group:
                continue
            names = [Job(**r["job"]).name for r in group]
            stacked = np.mean([np.load(out / "jobs" / f"{n}.npz")[curve] for n in names], 0)
            ax.plot(np.arange(1, len(stacked) + 1), stacked, color=color, lw=1,
                    label=f"{method} ({'smoothed' if curve == 'psnr' else 'current'})")
            if method == "dip":
                for rule, marker in (("wmv", "v"), ("heldout", "^")):
                    steps = [r[f"stop_{rule}"]["step"] for r in group if f"stop_{rule}" in r]
                    if steps:
                        step = int(np.mean(steps))
                        ax.plot(step, stacked[step - 1], marker, color="k",
                                label=f"DIP stop: {rule}")
        name, classical = best_classical(groups[(domain, 0, "mfvi")])
        ax.axhline(np.mean(classical), color="gray", ls="--", lw=1, label="best classical")
        ax.set_title(f"{domain}: {image_name(domain, 0)}", fontsize=9)
        ax.set_xscale("log")
        ax.set_xlabel("step")
        ax.set_ylabel("PSNR (dB)")
    for ax in list(axes.flat)[len(domains):]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(out / "convergence.png", dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    return study_main(argv, "experiments.convergence_study", __doc__, tuple(STAGES),
                      "30 steps per fit", DATA, run_stage, report)


if __name__ == "__main__":
    sys.exit(main())
