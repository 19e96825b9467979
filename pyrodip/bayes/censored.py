"""Gaussian noise on an observation clipped to a range: the Tobit (censored Normal)
likelihood, used by the fit (:class:`~pyrodip.bayes.likelihoods.GaussianLikelihood` with
``censored``) and by the calibration of the std (:mod:`pyrodip.infer.recalibration`).

A value inside (low, high) has the Normal density; a value at ``low`` (``high``) stands for
every noisy value at or below (above) it, and has the probability of lying there:
``Phi((low - loc) / scale)`` (``1 - Phi((high - loc) / scale)``). Clipping Gaussian noise to
[0, 1] (as the paper did, and as 8-bit scans are) leaves exactly such values; a Normal
likelihood reads a clipped 0 as a pixel whose noise happened to be small, and pulls the image
there.

>>> from pyrodip.physics.observation import Observation
>>> noisy = Observation.simulate(torch.full((1, 8, 8), 0.05), noise=0.1, seed=0)
>>> clipped = Observation(noisy.observation.clamp(0, 1), noisy.operator, noisy.noise)
>>> censored_range(noisy), censored_range(clipped)
(None, (0.0, 1.0))
>>> round(float(CensoredNormal(0.0, 1.0, 0.0, 1.0).log_prob(torch.tensor(0.0)).exp()), 4)
0.5
"""

from __future__ import annotations

import math

import pyro.distributions as dist
import torch
from torch import Tensor
from torch.distributions import constraints
from torch.special import log_ndtr

__all__ = ["CensoredNormal", "censored_normal_log_prob", "censored_range"]

_HALF_LOG_TWO_PI = 0.5 * math.log(2 * math.pi)


def censored_normal_log_prob(value: Tensor, loc: Tensor, scale: Tensor, low: Tensor,
                             high: Tensor) -> Tensor:
    """log p(value) under N(loc, scale^2) censored where ``low`` (``high``), a bool tensor,
    marks the values at or below (above) the end of the range they stand for: log Phi(z)
    there (log (1 - Phi(z))), the Normal log-density elsewhere, z = (value - loc) / scale."""
    z = (value - loc) / scale
    inside = -0.5 * z.square() - torch.log(scale) - _HALF_LOG_TWO_PI
    return torch.where(low, log_ndtr(z), torch.where(high, log_ndtr(-z), inside))


class CensoredNormal(dist.TorchDistribution):
    """N(loc, scale^2) observed through clipping to [low, high]: its draws are clipped Normal
    draws; :meth:`log_prob` is the Tobit likelihood (:func:`censored_normal_log_prob`)."""

    arg_constraints = {"loc": constraints.real, "scale": constraints.positive}
    has_rsample = False

    def __init__(self, loc, scale, low: float, high: float, validate_args=None) -> None:
        self.loc, self.scale = torch.broadcast_tensors(torch.as_tensor(loc),
                                                       torch.as_tensor(scale))
        self.low, self.high = float(low), float(high)
        super().__init__(self.loc.shape, validate_args=validate_args)

    @constraints.dependent_property(is_discrete=False, event_dim=0)
    def support(self):
        return constraints.interval(self.low, self.high)

    def expand(self, batch_shape, _instance=None):
        shape = torch.Size(batch_shape)
        return CensoredNormal(self.loc.expand(shape), self.scale.expand(shape), self.low,
                              self.high, validate_args=False)

    def sample(self, sample_shape: torch.Size | tuple = ()) -> Tensor:
        shape = self._extended_shape(sample_shape)
        with torch.no_grad():
            draw = torch.normal(self.loc.expand(shape), self.scale.expand(shape))
            return draw.clamp(self.low, self.high)

    def log_prob(self, value: Tensor) -> Tensor:
        if self._validate_args:
            self._validate_sample(value)
        return censored_normal_log_prob(value, self.loc, self.scale, value <= self.low,
                                        value >= self.high)


def censored_range(observation) -> tuple[float, float] | None:
    """(0, 1) when ``observation`` (an :class:`~pyrodip.physics.observation.Observation`)
    looks clipped to [0, 1]: Gaussian noise, every value inside, some exactly at an end
    (continuous noise never lands there otherwise); else None."""
    y = observation.observation
    if observation.noise.name != "gaussian" or not bool(((y >= 0) & (y <= 1)).all()):
        return None
    return (0.0, 1.0) if bool(((y == 0) | (y == 1)).any()) else None
