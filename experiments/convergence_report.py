"""The report of the convergence study (:mod:`experiments.convergence_study`): its tables and
its figure, from the records of :func:`experiments.convergence_fits.records`. Every ± is the
half-width of the 95 % t-interval over seeds (:mod:`pyrodip.evaluate.statistics`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from experiments import convergence_fits as fits
from experiments.common import PLUS_MINUS, table
from pyrodip.evaluate.statistics import format_interval

#: The domains whose baselines are denoisers (the goal is "within 0.5 dB of BM3D" there).
DENOISING = ("xray", "oct", "us")
#: Where the truth under the mask is not known (real hair): only the known pixels are scored.
KNOWN_ONLY = ("skin",)


def grouped(records: list[dict]) -> dict[tuple[str, int, str], list[dict]]:
    """Records by (domain, image, method), in the order of
    :data:`~experiments.convergence_fits.DOMAINS`, seeds in order."""
    found: dict[tuple, list[dict]] = {}
    for record in sorted(records, key=lambda r: r["job"]["seed"]):
        job = record["job"]
        method = job["method"]
        if job["stage"] == "long":
            method += f" ({record['config']['steps']} steps)"
        found.setdefault((job["domain"], job["image"], method), []).append(record)
    order = list(fits.DOMAINS)
    return dict(sorted(found.items(), key=lambda item: (order.index(item[0][0]), item[0][1:])))


def image_name(domain: str, image: int) -> str:
    return Path(fits.DOMAINS[domain][0][image]).name


def values(group: list[dict], key: str) -> list[float]:
    """``key`` of each record; ``stop_RULE`` keys give the PSNR at the rule's step."""
    if key.startswith("stop_"):
        return [r[key]["psnr"] for r in group if key in r]
    return [r[key] for r in group if r.get(key) is not None]


def cell(group: list[dict] | None, key: str, digits: int = 2) -> str:
    found = values(group, key) if group else []
    return format_interval(found, digits) if found else "-"


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
        row = [domain, image_name(domain, image), str(len(group)), format_interval(mfvi),
               cell(group, "last_smoothed"), cell(dip, "last_current"),
               cell(dip, "best_current"), cell(dip, "stop_wmv"), cell(dip, "stop_heldout"),
               paired(group, dip, "stop_wmv"), cell(map_, "last_current"),
               cell(map_, "best_current"), f"{format_interval(classical)} ({name})",
               format_interval([r["psnr"] - max(r["baselines"].values()) for r in group])]
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
    return format_interval(found) if found else "-"


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
            row += [format_interval(steps, 0) if steps else "-", f"{fired}/{len(steps)}"]
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
                     format_interval(paired) if method != "mfvi" and paired else "-",
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
        cells = [f"{name} {format_interval([r['baselines'][name] for r in group])}"
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


def plateau_rows(records: list[dict]) -> list[list[str]]:
    """Has MFVI settled? Its loss's change over the last tenth of the steps, relative to its
    range over the fit; where its smoothed PSNR peaks; what the last third of the steps added."""
    rows = []
    for (domain, image, method), group in grouped(records).items():
        if method.startswith("mfvi"):
            gains = []
            for record in group:
                curve = record["curves"]["psnr"]
                gains.append(float(curve[-1] - curve[2 * len(curve) // 3 - 1]))
            rows.append([domain, image_name(domain, image), method,
                         cell(group, "loss_change_last_10pct", 4),
                         cell(group, "best_smoothed_step", 0), cell(group, "last_smoothed"),
                         format_interval(gains)])
    return rows


PLATEAU_HEADER = ["domain", "image", "method", "loss change, last 10 %", "best step (smoothed)",
                  "last smoothed", "gain over the last third"]


def report(out: Path) -> str:
    """The tables of ``out``'s fits (also written to ``OUT/report.md``) and the figure."""
    records = [r for r in fits.records(out) if r.get("status") in ("completed", "stopped")]
    if not records:
        return f"no fits in {out / 'runs'} yet: run a stage first"
    lines = [
        f"{len(records)} fits; {PLUS_MINUS}; PSNR in dB.", "",
        "## MFVI at its last step against DIP, MAP and the classical baselines", "",
        *table(CLAIM_HEADER, claim_rows(records)),
        "## Where DIP and MAP peak, and where the rules stop them", "",
        *table(STOP_HEADER, stop_rows(records)),
        "## The Bayesian DIPs at their last step (first images)", "",
        *table(BAYESIAN_HEADER, bayesian_rows(records)),
        "## Has MFVI converged?", "", *table(PLATEAU_HEADER, plateau_rows(records)),
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
    domains = [d for d in fits.DOMAINS if d not in KNOWN_ONLY and (d, 0, "mfvi") in groups]
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
            stacked = np.mean([r["curves"][curve] for r in group], 0)
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


