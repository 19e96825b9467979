"""The likelihood p(y | A(x)) of the observation given the network's image.

Every likelihood declares one Pyro sample site, ``obs``, holding the whole observation as a
single event, and accepts an optional boolean ``mask`` (True = observed pixel): masked-out
pixels add exactly nothing to the log-likelihood, whatever value they hold.

* :class:`GaussianLikelihood`: y ~ N(A(x), sigma^2) with sigma known (the simulated noise
  level), learned (a point estimate fitted with the weights), or heteroscedastic (one
  log-variance per pixel, from an extra output channel of the network); on an observation
  clipped to a range, censored there (the Tobit likelihood of :mod:`pyrodip.bayes.censored`).
* :class:`SpeckleLikelihood`: log y ~ N(log A(x), sigma^2), multiplicative (ultrasound) speckle.
* :class:`PoissonLikelihood`: peak * y ~ Poisson(peak * A(x)), photon counts (X-ray, CT).

The likelihood that matches a noise model of :mod:`pyrodip.physics.noise` is built by
:func:`pyrodip.bayes.noise_likelihoods.noise_likelihood`.

>>> lik = GaussianLikelihood(noise_std=0.1)
>>> round(float(lik.std()), 6)
0.1
>>> SpeckleLikelihood(0.2).name, PoissonLikelihood(1000.0).name, lik.extra_channels
('speckle', 'poisson', 0)
"""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import torch
from pyro.nn import PyroModule, PyroParam
from torch import Tensor
from torch.distributions import constraints

from ..errors import InvalidInputError
from ..physics.noise import LOG_FLOOR
from ..validation import positive
from .censored import CensoredNormal

__all__ = [
    "LIKELIHOODS",
    "RATE_FLOOR",
    "GaussianLikelihood",
    "Likelihood",
    "PoissonLikelihood",
    "SpeckleLikelihood",
]

LIKELIHOODS = ("gaussian", "learned", "heteroscedastic")
"""The Gaussian likelihood choices of :class:`pyrodip.run.config.RunConfig`
(``--likelihood``)."""

RATE_FLOOR = 1e-6
"""Smallest Poisson rate, in counts: keeps log(rate) finite where A(x) is 0."""


def _check_mask(mask: Tensor, prediction: Tensor) -> Tensor:
    """The mask expanded to the prediction's shape, or an InvalidInputError."""
    if not isinstance(mask, Tensor) or mask.dtype != torch.bool:
        kind = mask.dtype if isinstance(mask, Tensor) else type(mask).__name__
        raise InvalidInputError(
            f"the likelihood mask must be a bool tensor (True = observed pixel), got {kind}: "
            "convert it with mask > 0.5"
        )
    try:
        shape = torch.broadcast_shapes(mask.shape, prediction.shape)
    except RuntimeError:
        shape = None
    if shape != prediction.shape:
        raise InvalidInputError(
            f"the likelihood mask of shape {tuple(mask.shape)} does not broadcast to the "
            f"prediction's shape {tuple(prediction.shape)}: give it the observation's shape"
        )
    return mask.expand(prediction.shape)


class Likelihood(PyroModule):
    """Base class: the per-pixel distribution of the ``obs`` site, masking and the interface.

    Called as ``likelihood(prediction, observation, log_variance, mask)`` (:meth:`forward`):
    the prediction A(x) is a `(B, C, H', W')` tensor; the observation, the log-variance and
    the mask have its shape (the mask broadcasts to it).

    Subclasses define :meth:`distribution` and :attr:`name`; those whose site does not hold
    the observation itself (Poisson counts) also override :meth:`to_site` and
    :meth:`from_site`. ``fill_value`` replaces masked-out observation pixels before the
    log-density is computed: it must lie in the support, so that NaN or out-of-support values
    there can neither fail validation nor leak NaN into the gradients.
    """

    heteroscedastic: bool = False
    fill_value: float = 0.0

    @property
    def extra_channels(self) -> int:
        """Output channels the network needs beyond the image's (1 for the log-variance)."""
        return int(self.heteroscedastic)

    @property
    def name(self) -> str:
        raise NotImplementedError

    def distribution(
        self, prediction: Tensor, log_variance: Tensor | None = None
    ) -> dist.TorchDistribution:
        """The distribution of the site value per pixel (batch shape = the prediction's)."""
        raise NotImplementedError

    def to_site(self, observation: Tensor) -> Tensor:
        """The site value for an observation in image units."""
        return observation

    def from_site(self, value: Tensor) -> Tensor:
        """An observation in image units from a site value."""
        return value

    def additive(self, value: Tensor) -> Tensor:
        """An observation (or a prediction A(x)) in the domain where this noise is additive,
        ``additive(y) = additive(A(x)) + n`` with n of :meth:`noise_variance` (y itself for
        Gaussian and Poisson noise, log y for speckle): where held-out residuals are scored
        (:mod:`pyrodip.infer.recalibration`)."""
        return value

    def noise_variance(self, prediction: Tensor) -> Tensor:
        """The variance of n in :meth:`additive`'s domain given A(x), per value (the known or
        fitted noise level; heteroscedastic noise is the network's, not this)."""
        raise NotImplementedError

    def site(
        self,
        prediction: Tensor,
        observation: Tensor | None,
        log_variance: Tensor | None = None,
        mask: Tensor | None = None,
    ) -> tuple[dist.TorchDistribution, Tensor | None]:
        """The ``obs`` site's distribution (one event over the whole prediction) and value.

        ``mask`` (bool, broadcastable to ``prediction``, True = observed) drops the other
        pixels from the log-likelihood; their value becomes :attr:`fill_value`.
        """
        fn = self.distribution(prediction, log_variance)
        value = None if observation is None else self.to_site(observation)
        if mask is not None:
            mask = _check_mask(mask, prediction)
            fn = fn.mask(mask)
            if value is not None:
                value = torch.where(mask, value, self.fill_value)
        return fn.to_event(prediction.dim()), value

    def log_prob(
        self,
        prediction: Tensor,
        observation: Tensor,
        log_variance: Tensor | None = None,
        mask: Tensor | None = None,
    ) -> Tensor:
        """log p(y | A(x)) summed over the observed pixels: the ``obs`` site's log-density.

        >>> lik = GaussianLikelihood(1.0)
        >>> round(float(lik.log_prob(torch.zeros(1, 1, 1, 1), torch.zeros(1, 1, 1, 1))), 4)
        -0.9189
        """
        fn, value = self.site(prediction, observation, log_variance, mask)
        return fn.log_prob(value)

    def forward(
        self,
        prediction: Tensor,
        observation: Tensor | None,
        log_variance: Tensor | None = None,
        mask: Tensor | None = None,
    ) -> Tensor:
        """Declare the observation site ``obs`` (sampled when ``observation`` is None), as
        :meth:`site` describes it.

        Args:
            prediction: A(x), a `(B, C, H', W')` tensor.
            observation: y, a `(B, C, H', W')` tensor, or None to draw it.
            log_variance: the per-pixel log-variance (heteroscedastic), a `(B, C, H', W')`
                tensor, or None.
            mask: a bool tensor broadcastable to `(B, C, H', W')`, True = observed, or None.

        Returns:
            The observation in image units, a `(B, C, H', W')` tensor.
        """
        fn, value = self.site(prediction, observation, log_variance, mask)
        return self.from_site(pyro.sample("obs", fn, obs=value))

    def _register_std(self, std: float, learn: bool) -> None:
        """Keep ``std`` as ``self.noise_std``: a positive PyroParam if learned, else a buffer."""
        self.learn_std = learn
        if learn:
            self.noise_std = PyroParam(torch.tensor(std), constraints.positive)
        else:
            self.register_buffer("noise_std", torch.tensor(std))


class GaussianLikelihood(Likelihood):
    """y ~ N(A(x), sigma^2), summed over every observed pixel.

    Called on a `(B, C, H', W')` prediction A(x) and observation y, as :class:`Likelihood`.

    Args:
        noise_std: sigma, in image units ([0, 1] images). With ``learn_std`` it is the
            starting value.
        learn_std: fit sigma as a point estimate along with the weights.
        heteroscedastic: sigma per pixel, exp(log_variance / 2), with the log-variance from
            the network's extra output channel (aleatoric uncertainty).
        censored: (low, high), the range y was clipped to: a value at an end scores the
            probability of the noisy value lying beyond it (:class:`CensoredNormal`); None:
            y is not clipped.
    """

    def __init__(
        self, noise_std: float = 0.1, learn_std: bool = False, heteroscedastic: bool = False,
        censored: tuple[float, float] | None = None,
    ) -> None:
        super().__init__()
        noise_std = positive("noise_std", noise_std)
        if learn_std and heteroscedastic:
            raise InvalidInputError("choose either a learned noise std or a heteroscedastic one")
        if censored is not None and not censored[0] < censored[1]:
            raise InvalidInputError(f"the censored range must be (low, high) with low < high, "
                                    f"got {censored!r}")
        self.heteroscedastic, self.censored = heteroscedastic, censored
        self._register_std(noise_std, learn_std)

    @property
    def name(self) -> str:
        if self.heteroscedastic:
            return "heteroscedastic"
        return "learned" if self.learn_std else "gaussian"

    def std(self, log_variance: Tensor | None = None) -> Tensor:
        """The noise standard deviation: a scalar, or per pixel when heteroscedastic."""
        if self.heteroscedastic:
            if log_variance is None:
                raise InvalidInputError(
                    "a heteroscedastic likelihood needs the log-variance channel: pass log_variance"
                )
            return torch.exp(0.5 * log_variance)
        return self.noise_std

    def distribution(
        self, prediction: Tensor, log_variance: Tensor | None = None
    ) -> dist.TorchDistribution:
        std = self.std(log_variance).expand_as(prediction)
        if self.censored is not None:
            return CensoredNormal(prediction, std, *self.censored)
        return dist.Normal(prediction, std)

    def noise_variance(self, prediction: Tensor) -> Tensor:
        return self.noise_std.detach().square().expand_as(prediction)


class SpeckleLikelihood(Likelihood):
    """log y ~ N(log A(x), sigma^2): multiplicative log-normal speckle, as in ultrasound.

    Called on a `(B, C, H', W')` prediction A(x) and observation y, as :class:`Likelihood`.

    The site holds y itself under ``LogNormal(log(max(A(x), LOG_FLOOR)), sigma)``, so its
    log-density includes the Jacobian term -log y (constant in the weights). Observed pixels
    must be positive (as :class:`pyrodip.physics.noise.SpeckleNoise` makes them).

    Args:
        std: sigma, the std of the noise in the log domain. With ``learn_std`` it is the
            starting value.
        learn_std: fit sigma as a point estimate along with the weights.
    """

    fill_value = 1.0

    def __init__(self, std: float = 0.1, learn_std: bool = False) -> None:
        super().__init__()
        self._register_std(positive("std", std), learn_std)

    @property
    def name(self) -> str:
        return "speckle-learned" if self.learn_std else "speckle"

    def std(self, log_variance: Tensor | None = None) -> Tensor:
        """The std of log y (a scalar)."""
        return self.noise_std

    def distribution(
        self, prediction: Tensor, log_variance: Tensor | None = None
    ) -> dist.TorchDistribution:
        loc = torch.log(prediction.clamp_min(LOG_FLOOR))
        return dist.LogNormal(loc, self.noise_std.expand_as(prediction))

    def additive(self, value: Tensor) -> Tensor:
        return torch.log(value.clamp_min(LOG_FLOOR))

    def noise_variance(self, prediction: Tensor) -> Tensor:
        return self.noise_std.detach().square().expand_as(prediction)


class PoissonLikelihood(Likelihood):
    """peak * y ~ Poisson(peak * A(x)): photon-counting noise, as in X-ray and CT.

    Called on a `(B, C, H', W')` prediction A(x) and observation y, as :class:`Likelihood`.

    The ``obs`` site holds the counts, ``round(peak * y)``, not y, so that its log-density
    is the Poisson probability mass; ``forward`` still returns y = counts / peak. The rate is
    clamped at :data:`RATE_FLOOR` counts. Observations must be >= 0.

    Args:
        peak: photons per unit intensity: an image value of 1 has mean count ``peak``.
    """

    def __init__(self, peak: float = 1000.0) -> None:
        super().__init__()
        self.peak = positive("peak", peak)

    @property
    def name(self) -> str:
        return "poisson"

    def distribution(
        self, prediction: Tensor, log_variance: Tensor | None = None
    ) -> dist.TorchDistribution:
        return dist.Poisson((self.peak * prediction).clamp_min(RATE_FLOOR))

    def to_site(self, observation: Tensor) -> Tensor:
        return torch.round(observation * self.peak)

    def noise_variance(self, prediction: Tensor) -> Tensor:
        return prediction.clamp_min(RATE_FLOOR / self.peak) / self.peak

    def from_site(self, value: Tensor) -> Tensor:
        return value / self.peak
