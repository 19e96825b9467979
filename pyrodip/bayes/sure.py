"""SURE, Stein's unbiased risk estimate, as the data term of Gaussian denoising
(``data_term=sure``).

With DIP's fixed random input the image does not depend on the observation y, and SURE is the
squared error. Fed y itself (Jo, Chun and Choi, ICCV 2021), the network is a denoiser f(y), and

    SURE(f, y) = ||y - f(y)||^2 - N sigma^2 + 2 sigma^2 div_y f(y)

estimates ||f(y) - x||^2 without the clean image x, for y = x + N(0, sigma^2) noise. Its
divergence is estimated by Monte Carlo (Ramani, Blu and Unser 2008) from a second pass of the
network at a probed input:

    div_y f(y) ~ b . (f(y + eps b) - f(y)) / eps,    b ~ N(0, I),    eps = max|y| / 1000.

Divided by -2 sigma^2, SURE is the Gaussian log-likelihood minus the divergence (up to a
constant), so the model keeps its ``obs`` site and adds ``pyro.factor("sure_divergence",
-div)``; the fast engine (:mod:`pyrodip.infer.elbo`) adds ``div`` to its loss. Both passes use
the same weights and the same input jitter. Values held out of the fit (a calibration's) are
replaced in the input by the mean of the others and left out of the probe, so the fit never
sees them and the estimate is SURE's over the values it fits.

SURE assumes unclipped Gaussian noise of a known (or estimated) level on the image itself:
:func:`check_data_term` refuses the settings where it does not hold, :func:`check_sure_model`
the model's pieces.

>>> y = torch.rand(1, 1, 16, 16)
>>> divergence = monte_carlo_divergence(lambda v: 0.5 * v, y, 1e-3, torch.randn_like(y))
>>> bool(divergence > 0)   # 0.5 |b|^2, of mean 0.5 N
True
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from ..errors import InvalidInputError
from ..physics.operators import Identity
from .likelihoods import GaussianLikelihood

__all__ = ["DATA_TERMS", "SureDivergence", "check_data_term", "check_sure_model",
           "monte_carlo_divergence", "probe_step", "sure_input"]

#: The run setting ``data_term``: the likelihood alone (the default) or SURE.
DATA_TERMS = ("likelihood", "sure")
#: The probe's step relative to the largest absolute observed value (Ramani et al.'s choice).
PROBE_FRACTION = 1e-3
_OFF = "use --data-term likelihood"
_KNOWN = "use --noise-level known, or --data-term likelihood"


def monte_carlo_divergence(
    f: Callable[[Tensor], Tensor], x: Tensor, eps: float, probe: Tensor,
    fx: Tensor | None = None,
) -> Tensor:
    """``probe . (f(x + eps probe) - f(x)) / eps``: an unbiased estimate (up to O(eps)) of
    the divergence of ``f`` at ``x`` for a standard-normal ``probe`` shaped like ``x``;
    ``fx``: f(x) when already computed. Differentiable in f's parameters.

    >>> matrix = torch.tensor([[2.0, 1.0], [0.0, 3.0]])
    >>> b = torch.tensor([1.0, -1.0])
    >>> float(monte_carlo_divergence(lambda v: matrix @ v, torch.zeros(2), 1e-3, b))
    4.0
    """
    if fx is None:
        fx = f(x)
    return (probe * (f(x + eps * probe) - fx)).sum() / eps


def probe_step(observation: Tensor) -> float:
    """eps for the probe: :data:`PROBE_FRACTION` of the largest absolute value of
    ``observation`` (its finite values; 1e-3 when they are all 0).

    >>> probe_step(torch.tensor([0.5, -2.0]))
    0.002
    """
    finite = observation[torch.isfinite(observation)]
    largest = float(finite.abs().max()) if finite.numel() else 0.0
    return PROBE_FRACTION * (largest if largest > 0 else 1.0)


def sure_input(observation: Tensor, observed_mask: Tensor | None = None) -> Tensor:
    """The network's input for SURE: the observation (batch dim 1), where ``observed_mask``
    (bool, broadcastable, True = fitted) is False the mean of the fitted values.

    >>> sure_input(torch.tensor([[1.0, 5.0, 3.0]]), torch.tensor([[True, False, True]]))
    tensor([[1., 2., 3.]])
    """
    if observed_mask is None:
        return observation.clone()
    mask = observed_mask.expand_as(observation)
    return torch.where(mask, observation, observation[mask].mean())


class SureDivergence(nn.Module):
    """SURE's divergence term for the observation ``observation`` (`(1, C, H, W)`): the
    network's input ``input`` (:func:`sure_input`, with ``observed_mask``; the model keeps it
    as its input z), the probe's step ``eps`` (:func:`probe_step` of the fitted values unless
    given) and the Monte Carlo estimate.

    >>> sure = SureDivergence(torch.full((1, 1, 4, 4), 0.5))
    >>> sure.eps, tuple(sure.input.shape)
    (0.0005, (1, 1, 4, 4))
    >>> round(float(sure(lambda v: v, sure.input, sure.input, torch.ones(1, 1, 4, 4))), 2)
    16.0
    """

    def __init__(self, observation: Tensor, observed_mask: Tensor | None = None,
                 eps: float | None = None) -> None:
        super().__init__()
        if observation.dim() != 4 or observation.shape[0] != 1:
            raise InvalidInputError(f"SURE needs the observation as a (1, C, H, W) tensor, got "
                                    f"shape {tuple(observation.shape)}")
        fitted = observation if observed_mask is None else \
            observation[observed_mask.expand_as(observation)]
        self.eps = probe_step(fitted) if eps is None else float(eps)
        if not self.eps > 0:
            raise InvalidInputError(f"SURE's probe step must be positive, got {eps!r}")
        self.input = sure_input(observation, observed_mask)
        mask = None if observed_mask is None else observed_mask.expand_as(observation)
        self.register_buffer("probe_mask", None if mask is None else mask.to(observation.dtype))

    def draw_probe(self, like: Tensor) -> Tensor:
        """b ~ N(0, I) shaped like the input ``like`` (from the global generator, so a fit's
        seed decides it), zero at the values held out of the fit."""
        probe = torch.randn_like(like)
        return probe if self.probe_mask is None else probe * self.probe_mask

    def forward(self, f: Callable[[Tensor], Tensor], x: Tensor, fx: Tensor,
                probe: Tensor | None = None) -> Tensor:
        """The divergence of the image ``f`` (a network pass) at the input ``x`` (jittered
        while fitting), ``fx`` = f(x): :func:`monte_carlo_divergence` with the probe
        ``probe`` (drawn by :meth:`draw_probe` when None)."""
        probe = self.draw_probe(x) if probe is None else probe
        return monte_carlo_divergence(f, x, self.eps, probe, fx)

    def extra_repr(self) -> str:
        return f"eps={self.eps:g}"


def check_sure_model(likelihood: nn.Module, operator: nn.Module) -> None:
    """Refuse SURE where its assumptions fail: a likelihood other than Gaussian with a known
    std and no censoring, or an operator other than the identity (a held-out subset of it
    allowed).

    >>> check_sure_model(GaussianLikelihood(0.1), Identity())   # SURE holds: no error
    >>> check_sure_model(GaussianLikelihood(0.1, learn_std=True), Identity())
    Traceback (most recent call last):
    ...
    pyrodip.errors.InvalidInputError: data_term=sure needs a known noise level, not a learned one: use --noise-level known, or --data-term likelihood
    """  # noqa: E501
    inner = getattr(operator, "operator", operator)
    if not isinstance(inner, Identity):
        raise InvalidInputError(f"data_term=sure needs denoising (the identity operator), not "
                                f"{type(inner).__name__}: {_OFF}")
    if not isinstance(likelihood, GaussianLikelihood):
        raise InvalidInputError(f"data_term=sure assumes Gaussian noise, not "
                                f"{getattr(likelihood, 'name', type(likelihood).__name__)}: "
                                f"{_OFF}")
    if likelihood.learn_std or likelihood.heteroscedastic:
        raise InvalidInputError(f"data_term=sure needs a known noise level, not a "
                                f"{likelihood.name} one: {_KNOWN}")
    if likelihood.censored is not None:
        raise InvalidInputError("data_term=sure assumes unclipped Gaussian noise, and this "
                                "observation is scored as censored: pass --censoring off")


def check_data_term(settings: Any) -> None:
    """Refuse ``data_term=sure`` in run settings (a
    :class:`~pyrodip.run.config.RunConfig`) where SURE's assumptions, or its second network
    pass, do not hold; each message names the fix.

    >>> from types import SimpleNamespace
    >>> check_data_term(SimpleNamespace(data_term="sure", task="ct"))
    Traceback (most recent call last):
    ...
    pyrodip.errors.InvalidInputError: data_term=sure needs denoising (the identity operator), not task=ct: use --data-term likelihood
    """  # noqa: E501
    if settings.data_term != "sure":
        return
    if settings.task != "denoise":
        raise InvalidInputError(f"data_term=sure needs denoising (the identity operator), not "
                                f"task={settings.task}: {_OFF}")
    if settings.noise != "gaussian":
        raise InvalidInputError(f"data_term=sure assumes Gaussian noise, not {settings.noise} "
                                f"noise: {_OFF}")
    if settings.noise_level != "known":
        raise InvalidInputError(f"data_term=sure needs a known noise level, not a "
                                f"{settings.noise_level} one: {_KNOWN}")
    if settings.clip and settings.censoring == "auto":
        raise InvalidInputError("data_term=sure assumes unclipped Gaussian noise, and a "
                                "clipped observation is scored as censored: pass --censoring off")
    if settings.capture:
        raise InvalidInputError("data_term=sure's second network pass is not captured: drop "
                                "--capture")
    for active, what, fix in (
        (settings.local_reparam, "local reparameterisation draws new noise",
         "drop --local-reparam"),
        (settings.resolved("dropout") > 0, "dropout draws new masks", "use --dropout 0"),
    ):
        if active:
            raise InvalidInputError(f"data_term=sure needs the same network in both of its "
                                    f"passes, and {what} in each: {fix}")
