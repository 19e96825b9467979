"""A study's Markdown table (``pyrodip compare``, ``pyrodip report``): a row per method and
image, each cell the mean ± 95 % t-interval half-width over the seeds
(:func:`pyrodip.evaluate.statistics.format_interval`).

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

from ..evaluate.statistics import format_interval

__all__ = ["summary_table"]


def summary_table(study: xr.Dataset) -> str:
    """A Markdown table of a stacked study (:func:`pyrodip.studies.stacking.stack`), a row per
    method and image: over the seeds, the smoothed PSNR at the last step and its best (with the
    step), SSIM, the predictive mean's PSNR, calibration (UCE, coverage, AUSE), the ELBO (runs
    whose loss is a negative ELBO) and the wall time; then the failed runs."""
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
                "predictive mean")
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
    for header, name in (("PSNR mean", "mean_psnr"), ("UCE", "uce"), ("UCE raw", "uce_raw"),
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
