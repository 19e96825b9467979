"""The report of the calibration study (:mod:`experiments.calibration_study`): its tables and
its figure, from the records of :func:`experiments.calibration_fits.records`. Every ± is the
half-width of the 95 % t-interval over seeds (:mod:`pyrodip.evaluate.statistics`)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from experiments.calibration_fits import DOMAINS, ENSEMBLE_DOMAINS, VARIANTS, Job, records
from experiments.common import PLUS_MINUS, SEEDS, agreement_cells, table
from pyrodip.evaluate.statistics import format_interval, mean_interval


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
    if "ensemble" in settings:
        return f"{job['method']} ensemble of {settings['ensemble']}"
    variant = next((name for name, values in VARIANTS.items() if dict(values) == settings), "")
    return f"{job['method']} {variant}".strip()


def calibration_values(group: list[dict], calibration: str, key: str) -> list[float]:
    return [r["calibrations"][calibration][key] for r in group
            if calibration in r.get("calibrations", {})]


def cell(values: list[float], digits: int = 2) -> str:
    """The values' mean ± half-width, ``-`` where no seed has one.

    >>> cell([1.0, 2.0, 3.0]), cell([])
    ('2.00 ± 2.48', '-')
    """
    return format_interval(values, digits) if values else "-"


def coverage_cells(group: list[dict], calibration: str) -> list[str]:
    """The 68 % and 95 % coverage over the seeds; seeds whose scale is 0 or not finite (no
    interval) are counted apart."""
    cells = []
    for level in ("68", "95"):
        values = [v for v in calibration_values(group, calibration, f"coverage_{level}")
                  if math.isfinite(v)]
        missing = len(group) - len(values)
        note = f"{missing} of {len(group)} without a scale"
        if not values:
            cells.append(note)
        else:
            cells.append(format_interval(values) + (f" ({note})" if missing else ""))
    return cells


def tune_rows(records: list[dict]) -> list[list[str]]:
    rows = []
    for (domain, _), group in groups(records, "tune").items():
        row = [domain, group[0]["job"]["image"], format_interval([r["psnr"] for r in group]),
               format_interval([r["oracle_scale"] for r in group]),
               cell(calibration_values(group, "scale", "scale"))]
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
            rows.append([domain, name, format_interval([r["psnr"] for r in group]),
                         format_interval([r["oracle_scale"] for r in group]),
                         format_interval([r["oracle_scale_95"] for r in group]),
                         format_interval([r["rms_ratio"] for r in group]),
                         *coverage_cells(group, "raw")])
    return rows


def bias_rows(records: list[dict]) -> list[list[str]]:
    """The bias split of the tuning fits, every domain."""
    rows = []
    for domain in DOMAINS:
        tuned = [r for r in records if r["job"]["stage"] == "tune"
                 and r["job"]["domain"] == domain]
        bias = bias_split(tuned)
        if bias:
            rows.append([domain, f"{bias['bias_share']:.0%}", f"{bias['spread_ratio']:.2f}"])
    return rows


BIAS_HEADER = ["domain", "bias: share of the squared error",
               "RMS spread of the mean over seeds / RMS posterior std"]


DIAGNOSE_HEADER = ["domain", "variant", "PSNR", "oracle scale 68 %", "oracle scale 95 %",
                   "RMS error / RMS std", "raw cover 68 %", "raw cover 95 %"]


def bias_split(group: list[dict]) -> dict | None:
    """Split the squared error of the seeds' means into the bias (the error of their average)
    and the spread around it; and the spread against the posterior's variance (None for
    fewer than two seeds)."""
    if len(group) < 2:
        return None
    arrays = [r["images"] for r in group]
    means = np.stack([a["mean"] for a in arrays])
    truth = arrays[0]["truth"]
    n = len(arrays)
    spread = means.var(axis=0, ddof=1).mean()  # unbiased, per pixel, averaged
    error = ((means - truth) ** 2).mean()
    bias = max(((means.mean(axis=0) - truth) ** 2).mean() - spread / n, 0.0)
    variance = np.mean([(a["std"] ** 2).mean() for a in arrays])
    return {"bias_share": bias / error, "spread_ratio": math.sqrt(spread / variance)}


def goal_rows(records: list[dict], stage: str = "goal") -> list[list[str]]:
    rows = []
    for (domain, method), group in groups(records, stage).items():
        if "calibrations" not in group[0]:
            continue
        row = [domain, method, format_interval([r["psnr"] for r in group]),
               cell(calibration_values(group, "scale", "scale"))]
        for calibration in ("raw", "scale", "conformal0.9"):
            row += coverage_cells(group, calibration)
        row += [cell([1e3 * v for v in calibration_values(group, name, "uce")])
                for name in ("raw", "scale")]
        observed = [r["uce_observation"] for r in group if r.get("uce_observation") is not None
                    and r["config"]["noise"] != "speckle"]  # y's noise is not additive there
        row += [format_interval([1e3 * v for v in observed]) if observed else "",
                cell(calibration_values(group, "scale", "ause"), 3)]
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
            rows.append([domain, format_interval([b for _, b in pairs]),
                         format_interval([a for a, _ in pairs]),
                         format_interval([a - b for a, b in pairs])])
    return rows


def uce_difference_rows(records: list[dict]) -> list[list[str]]:
    """Calibrated UCE (``scale``) of MFVI minus each other calibrated method's, paired by
    seed (the same observation and held-out values), in 1e-3; "lower" when the interval lies
    below 0."""
    by_name = {Job(**r["job"]).name: r for r in records}
    rows = []
    for domain in DOMAINS:
        image = DOMAINS[domain][0]
        for other in ("mcdropout", "sgld"):
            pairs = []
            for seed in SEEDS:
                mine = by_name.get(Job("goal", domain, image, "mfvi", seed).name)
                theirs = by_name.get(Job("goal", domain, image, other, seed).name)
                if mine and theirs and "calibrations" in mine and "calibrations" in theirs:
                    pairs.append(1e3 * (mine["calibrations"]["scale"]["uce"]
                                        - theirs["calibrations"]["scale"]["uce"]))
            if len(pairs) >= 2:
                mean, half = mean_interval(pairs)
                verdict = ("lower" if mean + half < 0 else
                           "higher" if mean - half > 0 else "not resolved")
                rows.append([domain, other, format_interval(pairs), verdict])
    return rows


UCE_HEADER = ["domain", "against", "UCE of mfvi minus it (1e-3, paired)", "mfvi's UCE is"]


def ensemble_rows(records: list[dict]) -> list[list[str]]:
    """The goal table's rows of the ensemble stage's domains: the goal stage's single MFVI fit,
    then the ensembles of the same observations."""
    single = [r for r in records if r["job"]["stage"] == "goal"
              and r["job"]["domain"] in ENSEMBLE_DOMAINS and label(r["job"]) == "mfvi"]
    rows = goal_rows(single) + goal_rows(records, "ensemble")
    order = list(DOMAINS)
    return sorted(rows, key=lambda row: order.index(row[0]))


def ensemble_gain_rows(records: list[dict]) -> list[list[str]]:
    """Each ensemble's PSNR against its members' (mean over members; and member 0, the single
    fit of the seed), paired by seed."""
    rows = []
    for (domain, method), group in groups(records, "ensemble").items():
        group = [r for r in group if r.get("member_psnr")]
        if not group:
            continue
        members = [float(np.mean(r["member_psnr"])) for r in group]
        gains = [r["psnr"] - mean for r, mean in zip(group, members, strict=True)]
        over_first = [r["psnr"] - r["member_psnr"][0] for r in group]
        rows.append([domain, method, format_interval([r["psnr"] for r in group]),
                     format_interval(members), format_interval(gains), format_interval(over_first),
                     format_interval([r["wall_time_s"] for r in group], 0)])
    return rows


ENSEMBLE_HEADER = ["domain", "ensemble", "PSNR", "members' PSNR (mean)", "gain over the members",
                   "gain over member 0", "wall time (s, all members)"]


def agreement_rows(records: list[dict]) -> list[list[str]]:
    """Per domain of the goal stage: do the held-out scores (LPD, CRPS; no truth) rank the
    calibrated methods (with the ensembles where they ran) as the truth's PSNR does, over the
    seed means (:func:`pyrodip.studies.table.ranking_agreement`)?"""
    rows = []
    for domain in DOMAINS:
        chosen = {key[1]: group for stage in ("goal", "ensemble")
                  for key, group in groups(records, stage).items()
                  if key[0] == domain and "calibrations" in group[0]}
        if len(chosen) < 2:
            continue
        methods = sorted(chosen, key=lambda m: -np.mean([r["psnr"] for r in chosen[m]]))
        scores = {m: {name: [next((r[key] for r in chosen[m] if r["job"]["seed"] == seed),
                                  np.nan) for seed in SEEDS]
                      for name, key in (("mean_psnr", "psnr"), ("heldout_lpd", "heldout_lpd"),
                                        ("heldout_crps", "heldout_crps"))}
                  for m in methods}
        rows.append([domain, ", ".join(methods), *agreement_cells(scores)])
    return rows


AGREEMENT_HEADER = ["domain", "methods by PSNR (truth), best first", "Kendall tau, LPD",
                    "Kendall tau, CRPS", "LPD picks the best", "CRPS picks the best"]


PSNR_HEADER = ["domain", "PSNR, all values fitted", "PSNR, 10 % held out", "difference"]


def refit_rows(records: list[dict]) -> list[list[str]]:
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
            whole = by_name.get(
                Job("goal", domain, image, "mfvi", seed, (("calibration", "none"),)).name)
            if kept is None or "calibrations" not in kept or whole is None:
                continue
            arrays = whole["images"]
            cal = calibrate(arrays["mean"], kept["calibrations"]["scale"]["scale"] * arrays["std"],
                            arrays["truth"])
            scored.append((cal.coverage["68"], cal.coverage["95"], 1e3 * cal.uce))
        if scored:
            rows.append([domain, *(format_interval([s[i] for s in scored]) for i in range(3))])
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
    """Write ``OUT/report.md`` and ``OUT/calibration_goal.png`` from the finished fits."""
    found = [r for r in records(out) if r.get("status") == "completed"]
    if not found:
        raise SystemExit(f"no fits in {out / 'runs'}: run a stage first")
    lines = [f"{PLUS_MINUS}; PSNR in dB.", "",
             "## tune (the second images)", "", *table(TUNE_HEADER, tune_rows(found)),
             "## diagnose", "", *table(DIAGNOSE_HEADER, diagnose_rows(found)),
             "## bias (the tuning fits)", "", *table(BIAS_HEADER, bias_rows(found)),
             "## goal (the first images)", "", *table(GOAL_HEADER, goal_rows(found)),
             *table(UCE_HEADER, uce_difference_rows(found)),
             "## ensembles of fits (the first images; one fit: the goal stage's)", "",
             *table(GOAL_HEADER, ensemble_rows(found)),
             *table(ENSEMBLE_HEADER, ensemble_gain_rows(found)),
             "## held-out scores against the truth's ranking (goal and ensemble fits)", "",
             *table(AGREEMENT_HEADER, agreement_rows(found)),
             "## PSNR of MFVI with and without the held-out values", "",
             *table(PSNR_HEADER, psnr_cost_rows(found)),
             "## MFVI refitted on all values, the held-out fit's scale applied", "",
             *table(REFIT_HEADER, refit_rows(found))]
    path = out / "report.md"
    path.write_text("\n".join(lines))
    plot_goal(found, out)
    return path
