"""The likelihood p(y | A(x)) of the observation given the network's image.

:class:`GaussianLikelihood` is y ~ N(A(x), sigma^2) with sigma known (the simulated noise
level), learned (a point estimate fitted with the weights), or heteroscedastic (one
log-variance per pixel, from an extra output channel of the network).

>>> lik = GaussianLikelihood(noise_std=0.1)
>>> round(float(lik.std()), 6)
0.1
"""

from __future__ import annotations

import math

import pyro
import pyro.distributions as dist
import torch
from pyro.nn import PyroModule, PyroParam
from torch import Tensor
from torch.distributions import constraints

from .errors import InvalidInputError

LIKELIHOODS = ("gaussian", "learned", "heteroscedastic")


class GaussianLikelihood(PyroModule):
    """y ~ N(A(x), sigma^2), summed over every observed pixel.

    Args:
        noise_std: sigma, in image units ([0, 1] images). With ``learn_std`` it is the
            starting value.
        learn_std: fit sigma as a point estimate along with the weights.
        heteroscedastic: sigma per pixel, exp(log_variance / 2), with the log-variance from
            the network's extra output channel (aleatoric uncertainty).
    """

    def __init__(
        self, noise_std: float = 0.1, learn_std: bool = False, heteroscedastic: bool = False
    ) -> None:
        super().__init__()
        if not (math.isfinite(noise_std) and noise_std > 0):
            raise InvalidInputError(f"noise std must be a positive number, got {noise_std}")
        if learn_std and heteroscedastic:
            raise InvalidInputError("choose either a learned noise std or a heteroscedastic one")
        self.heteroscedastic = heteroscedastic
        self.learn_std = learn_std
        if learn_std:
            self.noise_std = PyroParam(torch.tensor(float(noise_std)), constraints.positive)
        else:
            self.register_buffer("noise_std", torch.tensor(float(noise_std)))

    @property
    def extra_channels(self) -> int:
        """Output channels the network needs beyond the image's (1 for the log-variance)."""
        return int(self.heteroscedastic)

    @property
    def name(self) -> str:
        if self.heteroscedastic:
            return "heteroscedastic"
        return "learned" if self.learn_std else "gaussian"

    def std(self, log_variance: Tensor | None = None) -> Tensor:
        """The noise standard deviation: a scalar, or per pixel when heteroscedastic."""
        if self.heteroscedastic:
            if log_variance is None:
                raise ValueError("a heteroscedastic likelihood needs the log-variance channel")
            return torch.exp(0.5 * log_variance)
        return self.noise_std

    def forward(
        self, prediction: Tensor, observation: Tensor | None, log_variance: Tensor | None = None
    ) -> Tensor:
        """Declare the observation site ``obs`` (sampled when ``observation`` is None)."""
        std = self.std(log_variance)
        noise = dist.Normal(prediction, std.expand_as(prediction)).to_event(prediction.dim())
        return pyro.sample("obs", noise, obs=observation)
