"""Weight priors: declared by name (``"normal:0.05"``), with a scale that can change in place.

A prior is a small ``nn.Module`` holding its scale as a buffer, so it moves with the model to
the GPU and a Bayesian-optimisation loop can set ``prior.scale = 0.1`` between fits without
rebuilding anything: every sample site reads the scale when it is drawn.

>>> prior = make_prior("normal:0.05")
>>> prior.distribution((2, 3)).batch_shape
torch.Size([2, 3])
>>> prior.scale = 0.1
>>> round(float(prior.distribution((1,)).scale), 6)
0.1

Add your own with :func:`register_prior`::

    @register_prior("laplace")
    class LaplacePrior(Prior):
        def distribution(self, shape):
            zero = torch.zeros((), device=self._scale.device)
            return dist.Laplace(zero, self._scale).expand(shape)
"""

from __future__ import annotations

import math
from collections.abc import Callable

import pyro.distributions as dist
import torch
from torch import nn

from .errors import InvalidInputError

PRIORS: dict[str, type[Prior]] = {}


def register_prior(name: str) -> Callable[[type[Prior]], type[Prior]]:
    """Class decorator that makes a :class:`Prior` subclass available by ``name``."""

    def register(cls: type[Prior]) -> type[Prior]:
        PRIORS[name] = cls
        return cls

    return register


class Prior(nn.Module):
    """A zero-centred i.i.d. prior over each weight, with a positive ``scale``.

    Subclasses implement :meth:`distribution`, returning a distribution of batch shape
    ``shape`` (the caller declares the event dimensions).
    """

    def __init__(self, scale: float) -> None:
        super().__init__()
        self.register_buffer("_scale", torch.tensor(_positive_scale(scale)))

    @property
    def scale(self) -> float:
        return float(self._scale)

    @scale.setter
    def scale(self, value: float) -> None:
        self._scale.fill_(_positive_scale(value))

    def distribution(self, shape: torch.Size | tuple[int, ...]) -> dist.Distribution:
        raise NotImplementedError

    def spec(self) -> str:
        """The string that :func:`make_prior` turns back into this prior."""
        name = next(key for key, cls in PRIORS.items() if cls is type(self))
        return f"{name}:{self.scale:g}"


@register_prior("normal")
class NormalPrior(Prior):
    """The paper's prior: every weight ~ N(0, scale^2), independently."""

    def distribution(self, shape: torch.Size | tuple[int, ...]) -> dist.Distribution:
        loc = torch.zeros((), device=self._scale.device, dtype=self._scale.dtype)
        return dist.Normal(loc, self._scale).expand(torch.Size(shape))


def make_prior(spec: str | Prior) -> Prior:
    """Build a prior from ``"NAME:SCALE"`` (e.g. ``"normal:0.05"``); a Prior passes through."""
    if isinstance(spec, Prior):
        return spec
    name, _, scale = str(spec).partition(":")
    if name not in PRIORS:
        raise InvalidInputError(
            f"unknown prior {name!r}: choose one of {', '.join(PRIORS)} (as NAME:SCALE)"
        )
    try:
        value = float(scale)
    except ValueError:
        raise InvalidInputError(
            f"prior {spec!r} needs a numeric scale, as in '{name}:0.05'"
        ) from None
    return PRIORS[name](value)


def _positive_scale(value: float) -> float:
    value = float(value)
    if not math.isfinite(value) or value <= 0:
        raise InvalidInputError(f"prior scale must be a positive number, got {value}")
    return value
