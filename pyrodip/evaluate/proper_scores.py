"""Proper scores of held-out observed values under a predictive, without ground truth: the log
predictive density (LPD, nats per value; higher is better) and the continuous ranked
probability score (CRPS, in the units of the values; lower is better).

Each value is scored as a residual ``r = y - m`` against its predictive, centred on the mean
``m`` (:mod:`pyrodip.infer.recalibration` forms the residuals, in the domain where the noise is
additive, and calls :func:`heldout_scores`):

- **Gaussian**: ``r ~ N(0, w)``, ``w`` the predictive variance. LPD is ``log N(r; 0, w)``;
  CRPS is ``sqrt(w) [z (2 Phi(z) - 1) + 2 phi(z) - 1 / sqrt(pi)]`` with ``z = r / sqrt(w)``.
- **Mixture**: ``r ~ (1/N) sum_s N(d_s, n)``, a component per posterior sample (``d_s``: the
  sample's deviation from ``m``, ``n``: the noise's variance). LPD is the log of the mean
  component density; CRPS is the energy form ``E|X - r| - E|X - X'| / 2`` with the closed form
  of ``E|N(mu, v)|`` (:func:`expected_abs_normal`).
- **Censored** (an observation clipped to a range, Gaussian form): a value at an end has the
  probability of lying beyond it (:func:`pyrodip.bayes.censored.censored_normal_log_prob`), and
  the CRPS is that of the clipped predictive, the Gaussian's less the parts beyond the ends.

Both scores are proper: their expectation over y is best when the predictive is y's own
distribution, so a model cannot gain by a std too small or too large.

>>> round(float(gaussian_crps(np.array([0.0]), np.array([1.0]))[0]), 4)  # (2 - sqrt 2) / sqrt(2 pi)
0.2337
>>> round(float(gaussian_lpd(np.array([0.0]), np.array([1.0]))[0]), 4)  # -log sqrt(2 pi)
-0.9189
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from scipy.special import logsumexp
from scipy.stats import norm

from ..bayes.censored import censored_normal_log_prob
from ..errors import InvalidInputError

__all__ = ["HeldoutScores", "expected_abs_normal", "gaussian_crps", "gaussian_lpd",
           "heldout_scores", "mixture_crps", "mixture_lpd"]

#: Pairs of mixture components times values scored at once by :func:`mixture_crps`.
PAIRS_PER_BLOCK = 2**22


@dataclass(frozen=True)
class HeldoutScores:
    """The mean LPD (nats per value) and mean CRPS of the held-out values, and the form of the
    predictive they were scored under (``gaussian`` or ``mixture``)."""

    lpd: float
    crps: float
    form: str

    def attrs(self) -> dict[str, float | str]:
        """The result attributes ``heldout_lpd``, ``heldout_crps`` and ``heldout_score_form``."""
        return {"heldout_lpd": self.lpd, "heldout_crps": self.crps,
                "heldout_score_form": self.form}


def expected_abs_normal(mean: np.ndarray, variance: np.ndarray) -> np.ndarray:
    """``E|X|`` for ``X ~ N(mean, variance)``: ``2 sd phi(mean / sd) + mean (2 Phi(mean / sd)
    - 1)``, ``|mean|`` where the variance is 0.

    >>> float(expected_abs_normal(np.array(0.0), np.array(1.0)))  # sqrt(2 / pi)
    0.7978845608028654
    """
    mean, variance = np.broadcast_arrays(np.asarray(mean, float), np.asarray(variance, float))
    sd = np.sqrt(variance)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = mean / sd
        value = 2 * sd * norm.pdf(z) + mean * (2 * norm.cdf(z) - 1)
    return np.where(sd > 0, value, np.abs(mean))


def gaussian_lpd(residual: np.ndarray, variance: np.ndarray, low: np.ndarray | None = None,
                 high: np.ndarray | None = None) -> np.ndarray:
    """Per value ``log N(residual; 0, variance)``; where ``low`` (``high``) marks a value at
    the lower (upper) end of a clipped range, the log of the probability of lying at or
    beyond it."""
    residual, variance = _arrays(residual, variance)
    return _censored_log_prob(residual, np.zeros_like(residual), variance, low, high)


def gaussian_crps(residual: np.ndarray, variance: np.ndarray, bottom: np.ndarray | None = None,
                  top: np.ndarray | None = None) -> np.ndarray:
    """Per value the CRPS of ``N(0, variance)`` at ``residual``; with ``bottom`` and ``top``
    (the ends of the clipped range, as residuals), that of the predictive clipped to them.

    >>> r, w = np.array([0.3]), np.array([0.04])
    >>> bool(gaussian_crps(r, w, np.array([-9.0]), np.array([9.0])) == gaussian_crps(r, w))
    True
    """
    residual, variance = _arrays(residual, variance)
    sd = np.sqrt(variance)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = residual / sd
        value = sd * (z * (2 * norm.cdf(z) - 1) + 2 * norm.pdf(z) - 1 / math.sqrt(math.pi))
        if bottom is not None and top is not None:  # the parts beyond the ends, cut off
            value = value - sd * (_square_cdf_integral(np.asarray(bottom, float) / sd)
                                  + _square_cdf_integral(-np.asarray(top, float) / sd))
    return np.where(sd > 0, value, np.abs(residual))


def mixture_lpd(residual: np.ndarray, centres: np.ndarray, variance: np.ndarray,
                low: np.ndarray | None = None, high: np.ndarray | None = None) -> np.ndarray:
    """Per value the log density at ``residual`` (n,) of the equal mixture of
    ``N(centres[s], variance)`` (``centres``: (N, n)), censored as :func:`gaussian_lpd`."""
    residual, variance = _arrays(residual, variance)
    centres = _centres(centres, residual)
    log_prob = _censored_log_prob(residual[None], centres, variance[None], low, high)
    return logsumexp(log_prob, axis=0) - math.log(centres.shape[0])


def mixture_crps(residual: np.ndarray, centres: np.ndarray, variance: np.ndarray) -> np.ndarray:
    """Per value the CRPS at ``residual`` (n,) of the equal mixture of ``N(centres[s],
    variance)`` (``centres``: (N, n)): ``E|X - r| - E|X - X'| / 2``, both in closed form.

    >>> r, w = np.array([0.3, -1.0]), np.array([0.5, 2.0])
    >>> np.allclose(mixture_crps(r, np.zeros((4, 2)), w), gaussian_crps(r, w))
    True
    """
    residual, variance = _arrays(residual, variance)
    centres = _centres(centres, residual)
    count = centres.shape[0]
    to_value = expected_abs_normal(centres - residual, variance).mean(0)
    spread = np.empty_like(residual)
    block = max(1, PAIRS_PER_BLOCK // count**2)
    for first in range(0, residual.size, block):
        part = centres[:, first:first + block]
        gaps = part[:, None] - part[None]
        spread[first:first + block] = expected_abs_normal(
            gaps, 2 * variance[first:first + block]).mean((0, 1))
    return to_value - spread / 2


def heldout_scores(
    residual: np.ndarray,
    variance: np.ndarray,
    noise_variance: np.ndarray,
    scale: float = 1.0,
    low: np.ndarray | None = None,
    high: np.ndarray | None = None,
    bounds: tuple[np.ndarray, np.ndarray] | None = None,
    deviations: np.ndarray | None = None,
) -> HeldoutScores:
    """The mean LPD and CRPS of held-out ``residual`` s (1-D) under the calibrated predictive:
    ``N(0, scale^2 variance + noise_variance)``, or, given the posterior samples'
    ``deviations`` from the mean (N, n) and no censoring, the mixture of
    ``N(scale * deviations[s], noise_variance)``. ``low``/``high`` mark values at the ends of
    a clipped range and ``bounds`` are those ends as residuals (each value's). A NaN
    ``scale`` (no uncertainty to scale) counts as 1.

    >>> rng = np.random.default_rng(0)
    >>> r = rng.normal(0, 1, 50000)
    >>> right, narrow = (heldout_scores(r, np.full(r.size, w), np.zeros(r.size)).crps
    ...                  for w in (1.0, 0.25))
    >>> bool(right < narrow)
    True
    """
    residual, variance, noise_variance = (np.asarray(a, dtype=np.float64).ravel()
                                          for a in (residual, variance, noise_variance))
    if not residual.size:
        raise InvalidInputError("no held-out values to score: hold some out (heldout_fraction)")
    if not residual.shape == variance.shape == noise_variance.shape:
        raise InvalidInputError("residual, variance and noise_variance must have one length")
    factor = scale if math.isfinite(scale) else 1.0
    censored = bounds is not None or low is not None or high is not None
    if deviations is not None and not censored:
        centres = factor * np.asarray(deviations, dtype=np.float64).reshape(-1, residual.size)
        return HeldoutScores(float(mixture_lpd(residual, centres, noise_variance).mean()),
                             float(mixture_crps(residual, centres, noise_variance).mean()),
                             "mixture")
    total = factor**2 * variance + noise_variance
    bottom, top = bounds if bounds is not None else (None, None)
    return HeldoutScores(float(gaussian_lpd(residual, total, low, high).mean()),
                         float(gaussian_crps(residual, total, bottom, top).mean()), "gaussian")


def _arrays(residual, variance) -> tuple[np.ndarray, np.ndarray]:
    residual = np.asarray(residual, dtype=np.float64)
    variance = np.broadcast_to(np.asarray(variance, dtype=np.float64), residual.shape)
    if (variance < 0).any():
        raise InvalidInputError("a predictive variance is negative: pass variances (std ** 2)")
    return residual, variance


def _centres(centres, residual: np.ndarray) -> np.ndarray:
    centres = np.asarray(centres, dtype=np.float64)
    if centres.ndim != 2 or centres.shape[1] != residual.size or not centres.shape[0]:
        raise InvalidInputError(f"the mixture's centres must be (samples, {residual.size}), got "
                                f"{centres.shape}: one row per posterior sample")
    return centres


def _censored_log_prob(value, loc, variance, low, high) -> np.ndarray:
    """:func:`~pyrodip.bayes.censored.censored_normal_log_prob` on arrays (no mark: none)."""
    value, loc, variance = np.broadcast_arrays(value, loc, variance)
    marks = [torch.from_numpy(np.broadcast_to(np.zeros(1, bool) if m is None
                                              else np.asarray(m, bool), value.shape).copy())
             for m in (low, high)]
    scale = torch.from_numpy(np.sqrt(variance).copy())
    log_prob = censored_normal_log_prob(torch.from_numpy(value.copy()),
                                        torch.from_numpy(loc.copy()), scale, *marks)
    return log_prob.numpy()


def _square_cdf_integral(a: np.ndarray) -> np.ndarray:
    """``int_{-inf}^a Phi(t)^2 dt = a Phi(a)^2 + 2 Phi(a) phi(a) - Phi(a sqrt 2) / sqrt(pi)``."""
    cdf = norm.cdf(a)
    value = a * cdf**2 + 2 * cdf * norm.pdf(a) - norm.cdf(a * math.sqrt(2)) / math.sqrt(math.pi)
    return np.where(np.isneginf(a), 0.0, np.maximum(value, 0.0))
