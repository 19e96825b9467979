"""How well the predictive uncertainty matches the actual error, against a reference image.

All pixels of all channels count alike. With the predictive ``mean``, its total ``std`` and the
reference image ``truth``, per pixel:

- squared error ``e = (mean - truth)**2``, predicted variance ``v = std**2``;
- **UCE** (uncertainty calibration error): pixels are binned by ``v`` into ``bins`` equal-width
  bins over ``[0, max v]`` (each bin ``[lo, hi)``, the last one closed on the right; when
  ``max v == 0`` every pixel is in bin 0), and
  ``UCE = sum_b (n_b / N) * |mean(v in b) - mean(e in b)|``, in squared image units;
- **coverage** of the central 50, 68.27, 90 and 95 % Gaussian predictive intervals
  (:data:`COVERAGE_LEVELS`): the fraction of pixels with ``|truth - mean| <= z * std``,
  ``z = norm.ppf(0.5 + level / 2)`` (0.674, 1.00002, 1.645 and 1.95996);
- **sparsification**: pixels sorted by ``std`` descending (stable: ties keep pixel order); for
  each fraction ``f`` in ``0, 1/fractions, ..., 1 - 1/fractions`` the first
  ``k = round(f * N)`` pixels are removed (at most ``N - 1``, so one pixel always remains) and
  the mean ``e`` of the rest is divided by the mean ``e`` of all pixels (all curves are 0 when
  that is 0); the **oracle** curve does the same with pixels sorted by ``e`` descending, the
  best any uncertainty could do;
- **AUSE**: the trapezoid integral over the fractions of ``sparsification - oracle`` (0 is an
  ideal ranking of the errors; it is blind to the scale of ``std``, which UCE measures).

A prediction without uncertainty (``std`` zero everywhere, plain DIP) has no calibration: UCE,
coverages, sparsification and AUSE are NaN (its reliability bins still hold the error).

>>> import numpy as np
>>> mean = np.zeros(4)
>>> cal = calibrate(mean, std=np.full(4, 0.5), truth=np.array([0.1, -0.2, 0.7, 1.2]), bins=2)
>>> cal.coverage["68"], cal.coverage["95"]
(0.5, 0.75)
>>> round(cal.uce, 4)  # |0.25 - (0.01 + 0.04 + 0.49 + 1.44) / 4|
0.245
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import xarray as xr
from scipy.stats import norm

from ..errors import InvalidInputError

#: The reported central predictive intervals: name -> probability.
COVERAGE_LEVELS = {"50": 0.5, "68": 0.6827, "90": 0.9, "95": 0.95}


@dataclass(frozen=True)
class Calibration:
    """Calibration of one predictive image against its reference (see the module docstring)."""

    uce: float
    bin_edges: np.ndarray  # (bins + 1,) variance bin edges, from 0 to max v
    bin_variance: np.ndarray  # (bins,) mean predicted variance, NaN for an empty bin
    bin_mse: np.ndarray  # (bins,) mean squared error, NaN for an empty bin
    bin_count: np.ndarray  # (bins,) pixels per bin
    coverage: dict[str, float]  # name of COVERAGE_LEVELS -> fraction of pixels covered
    fractions: np.ndarray  # (fractions,) removed fraction of pixels
    sparsification: np.ndarray  # (fractions,) relative error left, most uncertain removed
    oracle: np.ndarray  # (fractions,) relative error left, largest errors removed
    ause: float


def calibrate(mean, std, truth, bins: int = 10, fractions: int = 50) -> Calibration:
    """Reliability bins, UCE, interval coverage and sparsification of ``mean`` +- ``std``
    against ``truth`` (torch tensors or numpy arrays of one shape), in float64."""
    if bins < 1 or fractions < 1:
        raise InvalidInputError(
            f"calibrate: bins and fractions must be positive, got {bins} and {fractions}"
        )
    mean, std, truth = (_array(value) for value in (mean, std, truth))
    if not mean.shape == std.shape == truth.shape:
        raise InvalidInputError(
            f"calibrate: mean, std and truth must have one shape, got {mean.shape}, "
            f"{std.shape} and {truth.shape}"
        )
    if mean.size == 0:
        raise InvalidInputError("calibrate: the images are empty: pass images with pixels")
    if not (np.isfinite(mean).all() and np.isfinite(std).all() and np.isfinite(truth).all()):
        raise InvalidInputError("calibrate: mean, std and truth must be finite (no NaN or inf)")
    if (std < 0).any():
        raise InvalidInputError("calibrate: std must be >= 0; pass a standard deviation")
    mean, std, truth = mean.ravel(), std.ravel(), truth.ravel()
    error = (mean - truth) ** 2
    variance = std**2

    top = variance.max()
    edges = np.linspace(0.0, top, bins + 1)
    if top > 0:
        index = np.clip(np.searchsorted(edges, variance, side="right") - 1, 0, bins - 1)
    else:
        index = np.zeros(variance.size, dtype=np.intp)
    count = np.bincount(index, minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        bin_variance = np.bincount(index, variance, minlength=bins) / count
        bin_mse = np.bincount(index, error, minlength=bins) / count
    filled = count > 0
    uce = float(np.sum(count[filled] / variance.size * abs(bin_variance - bin_mse)[filled]))

    distance = abs(truth - mean)
    coverage = {name: float(np.mean(distance <= norm.ppf(0.5 + level / 2) * std))
                for name, level in COVERAGE_LEVELS.items()}

    removed = np.arange(fractions) / fractions
    sparsification = _sparsification(error, std, removed)
    oracle = _sparsification(error, error, removed)
    ause = float(np.trapezoid(sparsification - oracle, removed))
    if std.max() == 0:  # no uncertainty: nothing to calibrate
        uce = ause = np.nan
        coverage = dict.fromkeys(coverage, np.nan)
        sparsification = np.full(removed.size, np.nan)
    return Calibration(
        uce=uce,
        bin_edges=edges,
        bin_variance=bin_variance,
        bin_mse=bin_mse,
        bin_count=count,
        coverage=coverage,
        fractions=removed,
        sparsification=sparsification,
        oracle=oracle,
        ause=ause,
    )


def calibration_variables(cal: Calibration) -> tuple[dict[str, xr.DataArray], dict]:
    """The data variables (dims ``calibration_bin`` and ``sparsification_fraction``, with their
    coordinates) and attributes that store ``cal`` in a result dataset."""
    bin_coords = {
        "calibration_bin": np.arange(cal.bin_count.size),
        "calibration_bin_low": ("calibration_bin", cal.bin_edges[:-1]),
        "calibration_bin_high": ("calibration_bin", cal.bin_edges[1:]),
    }
    fraction_coords = {"sparsification_fraction": cal.fractions}
    data_vars = {
        name: xr.DataArray(values, dims="calibration_bin", coords=bin_coords)
        for name, values in (
            ("reliability_variance", cal.bin_variance),
            ("reliability_mse", cal.bin_mse),
            ("reliability_count", cal.bin_count),
        )
    }
    data_vars.update(
        {
            name: xr.DataArray(values, dims="sparsification_fraction", coords=fraction_coords)
            for name, values in (
                ("sparsification_error", cal.sparsification),
                ("sparsification_oracle", cal.oracle),
            )
        }
    )
    attrs = calibration_attrs(cal)
    attrs.update(calibration_bins=int(cal.bin_count.size), calibration_reference="truth")
    return data_vars, attrs


def calibration_attrs(cal: Calibration, suffix: str = "") -> dict[str, float]:
    """UCE, the coverages and AUSE of ``cal`` as result attributes (``uce``, ``coverage_68``,
    ...), each name ending in ``suffix``.

    >>> cal = calibrate(np.zeros(2), np.ones(2), np.array([0.5, 3.0]))
    >>> calibration_attrs(cal, "_raw")["coverage_68_raw"]
    0.5
    """
    attrs = {"uce": cal.uce, **{f"coverage_{name}": value for name, value in cal.coverage.items()},
             "ause": cal.ause}
    return {f"{name}{suffix}": value for name, value in attrs.items()}


def _array(value) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    return np.asarray(value, dtype=np.float64)


def _sparsification(error: np.ndarray, score: np.ndarray, removed: np.ndarray) -> np.ndarray:
    """Mean ``error`` of the pixels left after removing the fractions ``removed`` with the
    highest ``score``, relative to the mean error of all pixels."""
    n = error.size
    order = np.argsort(-score, kind="stable")
    tail = np.cumsum(error[order][::-1])[::-1]  # tail[k]: sum of the errors left after k
    if tail[0] == 0:
        return np.zeros(removed.size)
    k = np.minimum(np.rint(removed * n).astype(np.intp), n - 1)
    return tail[k] / tail[0] * (n / (n - k))
