"""The predictive std rescaled without ground truth, on observed values the fit never saw.

The fit holds out a random fraction of the observed values
(:func:`pyrodip.physics.observation.hold_out`: pixels, low-resolution pixels or sinogram
bins). For each held-out value i, in the domain where the noise is additive
(:meth:`pyrodip.bayes.likelihoods.Likelihood.additive`):

- ``r_i = y_i - m_i``, the residual of the observation against the mean ``m_i`` of A(x) over
  the posterior images;
- ``v_i``, the variance of A(x) over the posterior images, and ``n_i``, the noise's variance.

If the posterior's std were right up to a factor s, ``r_i ~ N(0, s^2 v_i + n_i)``. Two ways to
choose s (:data:`CALIBRATIONS`):

- ``scale``: s by the held-out residuals' likelihood under that model (the sigma scaling of
  Laves et al., MIDL 2020, with the noise kept apart) times a Normal prior on log s^2
  (:data:`SCALE_PRIOR_SD`); every interval of the Gaussian predictive is then targeted at once.
  The prior matters only where the residuals are mostly noise (a mean whose error is small
  against the noise), where the likelihood alone lets s stray far from 1 by chance.
- ``conformal``: the smallest s whose intervals ``|r_i| <= z sqrt(s^2 v_i + n_i)`` (z of the
  target coverage c) cover ``ceil((n + 1) c)`` of the n held-out values (split conformal over
  nested intervals): a new observed value exchangeable with the held-out ones is covered with
  probability at least c. The guarantee is for observed values; in the image it is measured.

Values at the end of the observation's range (a clipped observation) are censored: ``scale``
scores them by the probability of lying beyond the end (the Tobit likelihood of
:mod:`pyrodip.bayes.censored`, as the fit does); ``conformal``
counts them as covered when the interval reaches past the end.

The held-out values are then scored under the rescaled predictive, without ground truth: their
mean log predictive density and CRPS (:mod:`pyrodip.evaluate.proper_scores`), in the same
additive domain (log y for speckle; for Poisson noise the Gaussian of variance A(x) / peak, as
here), censored where clipped; the mixture over the posterior samples where they were kept
and nothing is censored, else the Gaussian.

``std_total`` becomes ``s * std_total_raw`` (for a heteroscedastic likelihood only its
epistemic part is scaled). A prediction without uncertainty (zero std) has no scale (NaN).

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> v = np.full(20000, 0.01)                  # predicted variance 0.1^2, truly 0.2^2
>>> r = rng.normal(0, np.sqrt(4 * v + 0.0025))  # residuals with noise std 0.05
>>> round(scale_by_likelihood(r, v, np.full_like(v, 0.0025)), 1)
2.0
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np
import torch
from scipy.optimize import minimize_scalar
from scipy.stats import norm
from torch import Tensor

from ..bayes.censored import censored_normal_log_prob
from ..errors import InvalidInputError
from ..evaluate.proper_scores import HeldoutScores, heldout_scores
from .predictive import Prediction

#: ``--calibration``: none, or how the scale of the std is fitted on held-out values.
CALIBRATIONS = ("none", "scale", "conformal")
#: Share of the observed values held out of the fit to calibrate on (and for the BO's
#: ``heldout`` objective).
HELDOUT_FRACTION = 0.1
#: The coverage ``conformal`` targets by default.
CONFORMAL_COVERAGE = 0.9
#: log(s^2) is searched in [-LOG_RANGE, LOG_RANGE].
LOG_RANGE = 20.0
#: The sd of ``scale``'s Normal prior on log(s^2) around 0. Simulated with 1638 held-out
#: values, noise std 0.1 and a right std whose variance is 6e-4 (the error of a 32 dB mean):
#: maximum likelihood alone gives s from 0.39 to 1.40 (5th to 95th percentile), with this prior
#: 0.83 to 1.23; a std 1.8x too small at 24 dB still gets 1.53 to 1.92 (1.59 to 1.99 without).
SCALE_PRIOR_SD = 0.5


@dataclass(frozen=True)
class Recalibration:
    """How the std was rescaled: ``method`` (of :data:`CALIBRATIONS`), the ``scale`` s,
    the ``coverage`` it targets (NaN for ``scale``: every level), the number of held-out
    values, and the share of them inside the 68 % and 95 % intervals before (``raw``) and
    after."""

    method: str
    scale: float
    coverage: float
    heldout: int
    heldout_coverage_68_raw: float
    heldout_coverage_95_raw: float
    heldout_coverage_68: float
    heldout_coverage_95: float
    heldout_lpd: float = math.nan
    heldout_crps: float = math.nan
    heldout_score_form: str = "gaussian"

    def attrs(self) -> dict[str, float | int | str]:
        """The result attributes (``calibration``, ``calibration_scale``, ...)."""
        return {
            "calibration": self.method,
            "calibration_scale": self.scale,
            "calibration_coverage": self.coverage,
            "calibration_heldout": self.heldout,
            "heldout_coverage_68_raw": self.heldout_coverage_68_raw,
            "heldout_coverage_95_raw": self.heldout_coverage_95_raw,
            "heldout_coverage_68": self.heldout_coverage_68,
            "heldout_coverage_95": self.heldout_coverage_95,
            "heldout_lpd": self.heldout_lpd,
            "heldout_crps": self.heldout_crps,
            "heldout_score_form": self.heldout_score_form,
        }


def scale_by_likelihood(
    residual: np.ndarray,
    variance: np.ndarray,
    noise_variance: np.ndarray,
    low: np.ndarray | None = None,
    high: np.ndarray | None = None,
) -> float:
    """The s that maximises the likelihood of ``residual ~ N(0, s^2 variance +
    noise_variance)`` (1-D arrays) times the prior ``log s^2 ~ N(0, SCALE_PRIOR_SD^2)``.
    ``low``/``high`` (bool) mark censored values: the
    observation lies at or below (above) the end of its range, ``residual`` being the distance
    of that end from the mean; they score ``P(r <= residual)`` (``P(r >= residual)``)."""
    residual, variance, noise_variance = (np.asarray(a, dtype=np.float64)
                                          for a in (residual, variance, noise_variance))
    low = np.zeros(residual.shape, bool) if low is None else np.asarray(low, bool)
    high = np.zeros(residual.shape, bool) if high is None else np.asarray(high, bool)
    if not (variance > 0).any():
        return math.nan

    values, variances, noises = (torch.from_numpy(a) for a in (residual, variance,
                                                                noise_variance))
    low, high = torch.from_numpy(low), torch.from_numpy(high)

    def negative_log_likelihood(log_square: float) -> float:
        sd = torch.sqrt(math.exp(log_square) * variances + noises)
        log_prob = censored_normal_log_prob(values, torch.zeros_like(sd), sd, low, high)
        return -float(log_prob.sum()) + 0.5 * (log_square / SCALE_PRIOR_SD) ** 2

    found = minimize_scalar(negative_log_likelihood, bounds=(-LOG_RANGE, LOG_RANGE),
                            method="bounded", options={"xatol": 1e-6})
    return math.exp(found.x / 2)


def scale_by_conformal(
    residual: np.ndarray,
    variance: np.ndarray,
    noise_variance: np.ndarray,
    coverage: float,
    low: np.ndarray | None = None,
    high: np.ndarray | None = None,
) -> float:
    """The smallest s whose intervals ``|residual| <= z sqrt(s^2 variance + noise_variance)``
    (z of the central ``coverage``) hold ``ceil((n + 1) coverage)`` of the n values; a
    censored value (``low``/``high``) is covered as soon as the interval reaches past its
    end. NaN when no s can (no variance, or too few values for the coverage).

    >>> # z = 1 at 68.27 %: value i needs s = 10 |r_i|; ceil(5 * 0.6827) = 4 of the 4 values
    >>> r = np.array([0.1, 0.2, 0.3, 0.4])
    >>> round(scale_by_conformal(r, np.full(4, 0.01), np.zeros(4), 0.6827), 3)
    4.0
    """
    residual, variance, noise_variance = (np.asarray(a, dtype=np.float64)
                                          for a in (residual, variance, noise_variance))
    if not 0 < coverage < 1:
        raise InvalidInputError(f"the target coverage must be in (0, 1), got {coverage!r}")
    z = norm.ppf(0.5 + coverage / 2)
    with np.errstate(divide="ignore", invalid="ignore"):
        needed = np.where(
            variance > 0, np.maximum((residual**2 / z**2 - noise_variance) / variance, 0),
            np.where(residual**2 <= z**2 * noise_variance, 0.0, np.inf),
        )
    # A censored value is covered once the interval passes the end it lies beyond.
    if low is not None:
        needed[np.asarray(low, bool) & (residual >= 0)] = 0.0
    if high is not None:
        needed[np.asarray(high, bool) & (residual <= 0)] = 0.0
    k = math.ceil((residual.size + 1) * coverage)
    if k > residual.size or not (variance > 0).any():
        return math.nan
    value = float(np.sort(needed)[k - 1])
    return math.sqrt(value) if math.isfinite(value) else math.nan


@dataclass(frozen=True)
class HeldoutValues:
    """The held-out values as recalibration scores them (1-D arrays, in the noise's additive
    domain): ``residual`` y - m, the posterior's ``variance`` of A(x), the noise's
    ``noise_variance``; for a clipped observation the censored marks ``low``/``high`` and the
    ``bounds`` (the range's ends minus m); ``deviations`` (N, n): each posterior sample's A(x)
    minus m, when the samples were kept."""

    residual: np.ndarray
    variance: np.ndarray
    noise_variance: np.ndarray
    low: np.ndarray | None = None
    high: np.ndarray | None = None
    bounds: tuple[np.ndarray, np.ndarray] | None = None
    deviations: np.ndarray | None = None

    def scores(self, scale: float) -> HeldoutScores:
        """Their mean LPD and CRPS under the predictive with the std times ``scale``
        (:func:`pyrodip.evaluate.proper_scores.heldout_scores`)."""
        return heldout_scores(self.residual, self.variance, self.noise_variance, scale,
                              self.low, self.high, self.bounds, self.deviations)


def heldout_values(
    prediction: Prediction,
    likelihood,
    observation: Tensor,
    held: Tensor,
    value_range: tuple[float, float] | None = None,
    samples: Tensor | None = None,
) -> HeldoutValues:
    """The ``held`` values (bool, (1, H', W')) of ``observation`` (y, (C, H', W')) against
    ``prediction``'s measured summaries (see :func:`recalibrate`); ``samples``: the posterior
    samples as the likelihood sees them, (N, C, H', W') (:func:`pyrodip.infer.predictive.measure`),
    or None."""
    if prediction.measured_mean is None:
        raise InvalidInputError("the prediction has no measured summaries: draw it with predict")
    device = prediction.measured_mean.device
    mask = held.to(device).expand_as(prediction.measured_mean)
    y = observation.to(device)
    mean = prediction.measured_mean
    residual = (likelihood.additive(y) - mean)[mask]
    variance = prediction.measured_std.square()[mask]
    noise = likelihood.noise_variance(mean)[mask]
    if prediction.std_aleatoric is not None:  # heteroscedastic: the network's own noise
        noise = prediction.std_aleatoric.square().to(device).expand_as(mask)[mask]
    low = high = bounds = None
    if value_range is not None:
        bottom, top = value_range
        low, high = (y[mask] <= bottom).cpu().numpy(), (y[mask] >= top).cpu().numpy()
        bounds = tuple((end - mean[mask]).double().cpu().numpy() for end in (bottom, top))
    deviations = None
    if samples is not None:
        deviations = (samples.to(device) - mean)[:, mask].double().cpu().numpy()
    residual, variance, noise = (t.double().cpu().numpy() for t in (residual, variance, noise))
    return HeldoutValues(residual, variance, noise, low, high, bounds, deviations)


def recalibrate(
    prediction: Prediction,
    likelihood,
    observation: Tensor,
    held: Tensor,
    method: str = "scale",
    coverage: float = CONFORMAL_COVERAGE,
    value_range: tuple[float, float] | None = None,
    samples: Tensor | None = None,
) -> Recalibration:
    """Fit the scale of ``prediction``'s std on the ``held`` values (bool, (1, H', W')) of
    ``observation`` (y, (C, H', W')) that the fit never saw (see the module docstring), and
    score them under the rescaled predictive (LPD and CRPS, :class:`HeldoutValues`).
    ``prediction`` must hold the measured summaries (:func:`pyrodip.infer.predictive.predict`
    collects them); ``value_range``: the ends y was clipped to, so that a value at an end is
    censored (None: not clipped; :func:`~pyrodip.bayes.censored.censored_range`);
    ``samples``: as :func:`heldout_values`."""
    if method not in CALIBRATIONS[1:]:
        raise InvalidInputError(
            f"unknown calibration {method!r}: choose one of {', '.join(CALIBRATIONS[1:])}"
        )
    values = heldout_values(prediction, likelihood, observation, held, value_range, samples)
    residual, variance, noise = values.residual, values.variance, values.noise_variance
    if method == "scale":
        scale = scale_by_likelihood(residual, variance, noise, values.low, values.high)
        target = math.nan
    else:
        scale = scale_by_conformal(residual, variance, noise, coverage, values.low, values.high)
        target = coverage

    def covered(s: float, level: float) -> float:
        if not math.isfinite(s):
            return math.nan
        z = norm.ppf(0.5 + level / 2)
        return float(np.mean(residual**2 <= z**2 * (s**2 * variance + noise)))

    scores = values.scores(scale)
    return Recalibration(
        method=method, scale=scale, coverage=target, heldout=int(residual.size),
        heldout_coverage_68_raw=covered(1.0, 0.6827), heldout_coverage_95_raw=covered(1.0, 0.95),
        heldout_coverage_68=covered(scale, 0.6827), heldout_coverage_95=covered(scale, 0.95),
        heldout_lpd=scores.lpd, heldout_crps=scores.crps, heldout_score_form=scores.form,
    )


def rescaled(prediction: Prediction, scale: float) -> Prediction:
    """``prediction`` with its epistemic part of the total std multiplied by ``scale`` (the
    aleatoric part, a heteroscedastic likelihood's noise, is the noise's, as in the held-out
    model) and the std it had kept as ``std_total_raw`` (for NaN: the std unchanged)."""
    factor = scale if math.isfinite(scale) else 1.0
    if prediction.std_aleatoric is None:
        total = prediction.std_total * factor
    else:
        total = ((factor * prediction.std_epistemic) ** 2 + prediction.std_aleatoric**2).sqrt()
    return dataclasses.replace(prediction, std_total=total, std_total_raw=prediction.std_total)
