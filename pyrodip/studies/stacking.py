"""A study's runs stacked into one dataset over (``method``, ``image``, ``seed``).

:func:`stack` merges the runs' datasets, their scalar attributes (:data:`RUN_SCALARS`) becoming
variables; curves over ``step`` and images of other sizes are padded with NaN.
:func:`with_status` adds each run's status, error and fitted method.
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from ..run.schema import VARIABLES

#: Scalar attributes of a run that become variables over (method, image, seed), by the name
#: they take there.
RUN_SCALARS = {
    "mean_psnr": "mean_psnr", "mean_ssim": "mean_ssim", "uce": "uce", "coverage_68": "coverage_68",
    "coverage_95": "coverage_95", "uce_raw": "uce_raw", "coverage_68_raw": "coverage_68_raw",
    "coverage_95_raw": "coverage_95_raw", "calibration_scale": "calibration_scale",
    "ause": "ause", "wall_time_s": "wall_time_s",
    "mean_std_total": "mean_std_total", "baseline_psnr": "baseline_psnr",
    "psnr_missing": "psnr_missing", "heldout_lpd": "heldout_lpd", "heldout_crps": "heldout_crps",
    "ensemble": "ensemble", "mean_std_between": "mean_std_between",
}
#: Stacked variables that carry their ``long_name`` and ``units`` (:mod:`pyrodip.run.schema`).
DESCRIBED = ("heldout_lpd", "heldout_crps")

Key = tuple[str, str, int]


def stack(datasets: dict[Key, xr.Dataset]) -> xr.Dataset:
    """One dataset over (method, image, seed) from runs keyed by (method, image, seed): their
    variables, :data:`RUN_SCALARS` attributes and ``loss_is_elbo`` (1 where the run's loss is
    a negative ELBO) as variables; NaN where a run lacks one."""
    pieces = []
    for (method, image, seed), run in datasets.items():
        run = run.drop_vars([v for v in run.data_vars if "baseline" in v and v != "baseline"])
        scalars = {name: float(run.attrs.get(key, np.nan)) for key, name in RUN_SCALARS.items()}
        scalars["loss_is_elbo"] = float(run.attrs.get("loss_is_elbo", np.nan))
        piece = run.reset_coords().assign(scalars).drop_attrs()  # per-run coords become vars
        # Index the pixel axes, so that images of other sizes are padded with NaN, not refused.
        piece = piece.assign_coords(
            {dim: np.arange(size) for dim, size in piece.sizes.items() if dim not in piece.coords}
        )
        pieces.append(piece.expand_dims(method=[method], image=[image], seed=[seed]))
    # The pieces never overlap (each is one (method, image, seed)): an outer merge pads every
    # variable a run lacks, or holds over fewer steps or pixels, with NaN.
    stacked = xr.merge(pieces, join="outer", compat="no_conflicts", combine_attrs="drop")
    methods = list(dict.fromkeys(key[0] for key in datasets))
    images = list(dict.fromkeys(key[1] for key in datasets))
    stacked = stacked.reindex({"method": methods, "image": images})
    any_run = next(iter(datasets.values())).attrs
    stacked.attrs = {"task": any_run.get("task", ""), "runs": len(datasets)}
    for name in DESCRIBED:
        long_name, units = VARIABLES[name]
        stacked[name].attrs.update(long_name=long_name, units=units)
    return stacked


def with_status(study: xr.Dataset, methods: dict[Key, str],
                errors: dict[Key, str]) -> xr.Dataset:
    """``study`` over every run that ``methods`` names (by key, the method it fits), with
    per run ``status`` (``ok`` or ``failed``), ``error`` (the failure's, else ``""``) and
    ``run_method`` (the fitted method: a variant's row fits its own); a failed run's values
    are NaN.

    >>> study = stack({("dip", "ct", 0): xr.Dataset(attrs={"task": "denoise"})})
    >>> done = with_status(study, {("dip", "ct", 0): "dip", ("dip", "ct", 1): "dip"},
    ...                    {("dip", "ct", 1): "MemoryError"})
    >>> done["status"].values.ravel().tolist(), done["run_method"].values.ravel().tolist()
    (['ok', 'failed'], ['dip', 'dip'])
    """
    axes = {name: list(dict.fromkeys(key[i] for key in methods))
            for i, name in enumerate(("method", "image", "seed"))}
    study = study.reindex(axes)
    shape = tuple(len(values) for values in axes.values())
    status, error = np.full(shape, "ok", dtype=object), np.full(shape, "", dtype=object)
    fitted = np.full(shape, "", dtype=object)
    for key, method in methods.items():
        at = tuple(axes[name].index(value) for name, value in zip(axes, key, strict=True))
        fitted[at] = method
        if key in errors:
            status[at], error[at] = "failed", errors[key]
    dims = tuple(axes)
    return study.assign(status=(dims, status.astype(str)), error=(dims, error.astype(str)),
                        run_method=(dims, fitted.astype(str)))
