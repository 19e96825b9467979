"""A study's Markdown table (``pyrodip compare``, ``pyrodip report``): a row per method and
image, each cell the mean ± 95 % t-interval half-width over the seeds
(:func:`pyrodip.evaluate.statistics.format_interval`); then, where the runs hold held-out
values, the methods against a reference method as paired differences over the seeds
(:func:`paired_differences`: each seed's runs see the same observation and hold out the same
values) and each image's ranking by the truth's PSNR and by the proper scores of the held-out
values (:data:`SCORES`), with their agreement (:func:`ranking_agreement`).

>>> import xarray as xr
>>> study = xr.Dataset({"wall_time_s": (("method", "image", "seed"), [[[1.0, 2.0, 3.0]]])},
...                    coords={"method": ["dip"], "image": ["ct"], "seed": [0, 1, 2]})
>>> print(summary_table(study).splitlines()[2])
| dip | ct | 2.00 ± 2.48 |
"""

from __future__ import annotations

import math

import numpy as np
import xarray as xr

from ..errors import InvalidInputError
from ..evaluate.statistics import format_interval

__all__ = ["SCORES", "paired_differences", "ranking_agreement", "rankings", "summary_table"]

#: The scores methods are ranked by: column -> (study variable, +1 where higher is better, -1
#: where lower is): the truth's PSNR of the predictive mean, then the held-out values' mean
#: log predictive density and CRPS (:mod:`pyrodip.evaluate.proper_scores`), which need no truth.
SCORES = {"PSNR mean": ("mean_psnr", 1), "LPD": ("heldout_lpd", 1), "CRPS": ("heldout_crps", -1)}


def summary_table(study: xr.Dataset, reference: str | None = None) -> str:
    """A Markdown table of a stacked study (:func:`pyrodip.studies.stacking.stack`), a row per
    method and image: over the seeds, the smoothed PSNR at the last step and its best (with the
    step), SSIM, the predictive mean's PSNR, the held-out values' LPD and CRPS, calibration
    (UCE, coverage, AUSE), the ELBO (runs whose loss is a negative ELBO) and the wall time;
    then the paired differences against ``reference`` (default: the first method) and the
    rankings (:func:`score_sections`); then the failed runs."""
    columns = _columns(study)
    rows = ["| method | image | " + " | ".join(columns) + " |"]
    rows.append("|" + " --- |" * (len(columns) + 2))
    for image in study["image"].values:
        for method in study["method"].values:
            at = {"method": method, "image": image}
            cells = [_cell(values.sel(at), integer=header == "best step")
                     for header, values in columns.items()]
            rows.append(f"| {method} | {image} | " + " | ".join(cells) + " |")
    seeds = study.sizes["seed"]
    rows.append("")
    rows.append(f"mean ± 95 % t-interval half-width over {seeds} seed{'s' if seeds > 1 else ''}; "
                "PSNR last/best: the smoothed image (EMA) against the truth; PSNR mean: the "
                "predictive mean; LPD (nats per value, higher is better) and CRPS (lower is "
                "better): the held-out observed values under the calibrated predictive, no truth "
                "needed")
    rows += score_sections(study, reference)
    if "status" in study.data_vars:
        failed = study["status"].to_series().loc[lambda status: status == "failed"]
        if len(failed):
            rows.append(f"failed, left out of the table ({len(failed)} of "
                        f"{study['status'].size} runs):")
        for method, image, seed in failed.index:
            error = study["error"].sel({"method": method, "image": image, "seed": seed}).item()
            rows.append(f"- {method} on {image}, seed {seed}: {error}")
    return "\n".join(rows)


def _columns(study: xr.Dataset) -> dict[str, xr.DataArray]:
    """The table's columns: each a value per (method, image, seed)."""
    columns = {}
    if "psnr" in study.data_vars and "step" in study["psnr"].dims:
        curve = study["psnr"]
        columns["PSNR last"] = _last(curve)
        columns["PSNR best"] = curve.max("step")
        columns["best step"] = curve.fillna(-np.inf).argmax("step") + 1
        columns["SSIM last"] = _last(study["ssim"])
    for header, name in (("PSNR mean", "mean_psnr"), ("LPD", "heldout_lpd"),
                         ("CRPS", "heldout_crps"), ("UCE", "uce"), ("UCE raw", "uce_raw"),
                         ("cov 68", "coverage_68"), ("cov 68 raw", "coverage_68_raw"),
                         ("cov 95", "coverage_95"), ("cov 95 raw", "coverage_95_raw"),
                         ("std scale", "calibration_scale"), ("AUSE", "ause")):
        if name in study.data_vars:
            columns[header] = study[name]
    if "loss" in study.data_vars and "loss_is_elbo" in study.data_vars:
        columns["ELBO"] = (-_last(study["loss"])).where(study["loss_is_elbo"] == 1)
    columns["time s"] = study["wall_time_s"]
    return columns


def _last(curve: xr.DataArray) -> xr.DataArray:
    """Each run's value at its own last step (runs of fewer steps are padded with NaN)."""
    valid = curve.notnull()
    last = (valid * np.arange(curve.sizes["step"])).argmax("step")
    return curve.isel(step=last).where(valid.any("step"))


def _cell(values: xr.DataArray, integer: bool = False) -> str:
    """The finite ``values`` as mean ± half-width, ``-`` when there are none."""
    array = np.asarray(values.values, dtype=float)
    array = array[np.isfinite(array)]
    if array.size == 0:
        return "-"
    return format_interval(array, number=(lambda value: f"{value:.0f}") if integer else _number)


def _number(value: float) -> str:
    """Three significant digits (scientific notation for the very large or small)."""
    if value != 0 and (abs(value) >= 1e5 or abs(value) < 1e-3):
        return f"{value:.2e}"
    return f"{value:.{max(0, 3 - int(math.floor(math.log10(abs(value) or 1))) - 1)}f}"


def paired_differences(study: xr.Dataset, reference: str | None = None) -> xr.Dataset:
    """Each of :data:`SCORES` per run minus that of the ``reference`` method's run (default:
    the first) on the same image and seed, the same observation; NaN where either is missing.

    >>> study = xr.Dataset({"mean_psnr": (("method", "image", "seed"), [[[20.0]], [[21.5]]])},
    ...                    coords={"method": ["dip", "mfvi"], "image": ["ct"], "seed": [0]})
    >>> paired_differences(study)["mean_psnr"].sel({"method": "mfvi"}).item()
    1.5
    """
    methods = [str(method) for method in study["method"].values]
    reference = methods[0] if reference is None else reference
    if reference not in methods:
        raise InvalidInputError(f"reference method {reference!r} is not in the study: choose "
                                f"one of {', '.join(methods)}")
    names = [name for name, _ in SCORES.values() if name in study.data_vars]
    return xr.Dataset({name: study[name] - study[name].sel({"method": reference}, drop=True)
                       for name in names})


def rankings(study: xr.Dataset) -> dict[str, dict[str, list[str]]]:
    """Per image, per column of :data:`SCORES` in the study, the methods from best to worst by
    their mean over the seeds (methods without a finite value left out).

    >>> study = xr.Dataset({"heldout_crps": (("method", "image", "seed"), [[[0.2]], [[0.1]]])},
    ...                    coords={"method": ["dip", "mfvi"], "image": ["ct"], "seed": [0]})
    >>> rankings(study)
    {'ct': {'CRPS': ['mfvi', 'dip']}}
    """
    ranked: dict[str, dict[str, list[str]]] = {}
    for image in study["image"].values:
        ranked[str(image)] = {}
        for column, means in _seed_means(study, image).items():
            order = sorted((method for method in means if np.isfinite(means[method])),
                           key=lambda method: -means[method])
            ranked[str(image)][column] = order
    return ranked


def ranking_agreement(study: xr.Dataset) -> xr.Dataset:
    """Per image (a domain), how well the ranking of the methods by the held-out LPD and CRPS
    (no truth) agrees with their ranking by the truth's PSNR of the predictive mean, over the
    seed means: Kendall's tau (``tau_lpd``, ``tau_crps``; 1 is the same order, -1 the reverse,
    NaN with fewer than two methods scored by both) and whether the best method is the same
    (``best_lpd``, ``best_crps``: 1 or 0, NaN without scores).

    >>> study = xr.Dataset({name: (("method", "image", "seed"), values) for name, values in
    ...     (("mean_psnr", [[[20.0]], [[22.0]], [[21.0]]]), ("heldout_lpd", [[[1.0]], [[3.0]],
    ...      [[2.0]]]), ("heldout_crps", [[[0.1]], [[0.3]], [[0.2]]]))},
    ...     coords={"method": ["dip", "mfvi", "sgld"], "image": ["ct"], "seed": [0]})
    >>> agreement = ranking_agreement(study)
    >>> float(agreement["tau_lpd"][0]), float(agreement["tau_crps"][0])
    (1.0, -1.0)
    >>> float(agreement["best_lpd"][0]), float(agreement["best_crps"][0])
    (1.0, 0.0)
    """
    from scipy.stats import kendalltau

    images = [str(image) for image in study["image"].values]
    found = {f"{kind}_{key}": np.full(len(images), np.nan)
             for kind in ("tau", "best") for key in ("lpd", "crps")}
    for index, image in enumerate(images):
        means = _seed_means(study, image)
        truth = means.get("PSNR mean", {})
        for column, key in (("LPD", "lpd"), ("CRPS", "crps")):
            scores = means.get(column, {})
            both = [m for m in truth
                    if np.isfinite(truth[m]) and np.isfinite(scores.get(m, np.nan))]
            if len(both) < 2:
                continue
            tau = kendalltau([truth[m] for m in both], [scores[m] for m in both]).statistic
            found[f"tau_{key}"][index] = tau
            best = max(both, key=lambda m: truth[m]) == max(both, key=lambda m: scores[m])
            found[f"best_{key}"][index] = float(best)
    return xr.Dataset({name: ("image", values) for name, values in found.items()},
                      coords={"image": images})


def score_sections(study: xr.Dataset, reference: str | None = None) -> list[str]:
    """The lines after the table: the paired differences of :data:`SCORES` against
    ``reference`` (default: the first method) over the seeds, and each image's rankings with
    Kendall's tau of the held-out scores' against the PSNR's (:func:`ranking_agreement`); none
    without two methods and a held-out score."""
    scored = ("heldout_lpd", "heldout_crps")
    if study.sizes.get("method", 0) < 2 or not any(
            name in study.data_vars and bool(np.isfinite(study[name]).any()) for name in scored):
        return []
    differences = paired_differences(study, reference)
    reference = reference or str(study["method"].values[0])
    columns = [column for column, (name, _) in SCORES.items() if name in differences]
    lines = ["", f"paired differences against {reference} (the same observation per seed; "
             "mean ± 95 % t-interval half-width):", "",
             "| difference | image | " + " | ".join(f"Δ {column}" for column in columns) + " |",
             "|" + " --- |" * (len(columns) + 2)]
    for image in study["image"].values:
        for method in study["method"].values:
            if method == reference:
                continue
            at = {"method": method, "image": image}
            cells = [_cell(differences[SCORES[column][0]].sel(at)) for column in columns]
            lines.append(f"| {method} - {reference} | {image} | " + " | ".join(cells) + " |")
    agreement = ranking_agreement(study)
    lines += ["", "ranking of the methods by seed mean, best first (τ: Kendall's tau against "
              "the PSNR's ranking):", "",
              "| image | " + " | ".join(f"by {column}" for column in columns)
              + " | τ LPD | τ CRPS |", "|" + " --- |" * (len(columns) + 3)]
    for image, ranked in rankings(study).items():
        taus = [agreement[f"tau_{key}"].sel(image=image).item() for key in ("lpd", "crps")]
        cells = [" > ".join(ranked.get(column, [])) or "-" for column in columns]
        cells += ["-" if not np.isfinite(tau) else f"{tau:+.2f}" for tau in taus]
        lines.append(f"| {image} | " + " | ".join(cells) + " |")
    return lines


def _seed_means(study: xr.Dataset, image) -> dict[str, dict[str, float]]:
    """Per column of :data:`SCORES` in ``study``: method -> its finite mean over the seeds on
    ``image``, signed so that higher is better (NaN without a finite value)."""
    means = {}
    for column, (name, sign) in SCORES.items():
        if name not in study.data_vars:
            continue
        values = study[name].sel(image=image)
        means[column] = {
            str(method): _finite_mean(values.sel({"method": method}).values) * sign
            for method in study["method"].values
        }
    return means


def _finite_mean(values) -> float:
    array = np.asarray(values, dtype=float).ravel()
    array = array[np.isfinite(array)]
    return float(array.mean()) if array.size else float("nan")
