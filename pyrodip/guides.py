"""Guides: the variational families over the network weights, chosen by name.

- ``meanfield``: q(w) = prod N(loc, scale^2), sampled *at the model's own sites*, so
  ``TraceMeanField_ELBO`` computes KL(q || prior) in closed form (Pyro's ``AutoNormal`` samples
  an auxiliary variable instead and falls back to a noisy Monte Carlo KL).
- ``map``: a point estimate (Delta) per site: with ``kl_weight=0`` this is plain DIP, with a
  prior it is MAP.

Locations start from a fresh PyTorch initialisation of the network (``init_loc="pytorch"``)
or from N(0, s^2) (``init_loc="normal:0.1"``, the paper's); scales from ``init_scale``.

>>> from pyrodip.model import BayesianDIP
>>> model = BayesianDIP((1, 32, 32))
>>> guide = make_guide("meanfield", model, init_scale=0.05)
>>> name = next(iter(model.weight_sites))
>>> round(float(guide.scale(name).detach().mean()), 4)
0.05

Register your own with :func:`register_guide`; a guide is built as ``cls(model, **options)``
and its ``forward`` samples every name in ``model.weight_sites`` inside
``model.prior_weighting()``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import pyro
import pyro.distributions as dist
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .errors import InvalidInputError

GUIDES: dict[str, type[WeightGuide]] = {}


def register_guide(name: str) -> Callable[[type[WeightGuide]], type[WeightGuide]]:
    """Class decorator that makes a guide available by ``name``."""

    def register(cls: type[WeightGuide]) -> type[WeightGuide]:
        GUIDES[name] = cls
        return cls

    return register


def _key(site: str) -> str:
    # ParameterDict keys may not contain dots.
    return site.replace(".", "__")


class WeightGuide(nn.Module):
    """Base class: one location parameter per weight site of a :class:`BayesianDIP`."""

    def __init__(self, model, init_loc: str = "pytorch") -> None:
        super().__init__()
        self.sites = dict(model.weight_sites)
        self._weighting = model.prior_weighting
        self.locs = nn.ParameterDict(
            {_key(name): nn.Parameter(_initial_loc(init_loc, value))
             for name, value in model.initial_weights.items()}
        )

    def loc(self, site: str) -> Tensor:
        return self.locs[_key(site)]

    def site_distribution(self, site: str) -> dist.Distribution:
        raise NotImplementedError

    def forward(self, *args, **kwargs) -> dict[str, Tensor]:
        """Draw every weight site (the model's arguments are accepted and ignored)."""
        with self._weighting():
            return {name: pyro.sample(name, self.site_distribution(name)) for name in self.sites}


@register_guide("meanfield")
class MeanFieldGuide(WeightGuide):
    """Independent Normal per weight: scale = softplus(rho), initialised to ``init_scale``."""

    def __init__(self, model, init_loc: str = "pytorch", init_scale: float = 0.05) -> None:
        super().__init__(model, init_loc)
        if not (math.isfinite(init_scale) and init_scale > 0):
            raise InvalidInputError(f"init_scale must be a positive number, got {init_scale}")
        rho = math.log(math.expm1(init_scale))  # inverse softplus
        self.rhos = nn.ParameterDict(
            {key: nn.Parameter(torch.full_like(loc, rho)) for key, loc in self.locs.items()}
        )

    def scale(self, site: str) -> Tensor:
        return F.softplus(self.rhos[_key(site)])

    def site_distribution(self, site: str) -> dist.Distribution:
        loc = self.loc(site)
        return dist.Normal(loc, self.scale(site)).to_event(loc.dim())


@register_guide("map")
class MAPGuide(WeightGuide):
    """A point estimate per weight: the guide of plain DIP (and MAP with a prior)."""

    def __init__(self, model, init_loc: str = "pytorch", init_scale: float | None = None) -> None:
        super().__init__(model, init_loc)

    def site_distribution(self, site: str) -> dist.Distribution:
        loc = self.loc(site)
        return dist.Delta(loc, event_dim=loc.dim())


def make_guide(spec: str, model, **options) -> WeightGuide:
    """Build the guide registered as ``spec`` for ``model``."""
    if spec not in GUIDES:
        raise InvalidInputError(f"unknown guide {spec!r}: choose one of {', '.join(GUIDES)}")
    return GUIDES[spec](model, **options)


def _initial_loc(init_loc: str, pytorch_init: Tensor) -> Tensor:
    if init_loc == "pytorch":
        return pytorch_init.clone()
    name, _, std = init_loc.partition(":")
    try:
        std_value = float(std)
    except ValueError:
        std_value = float("nan")
    if name != "normal" or not (math.isfinite(std_value) and std_value > 0):
        raise InvalidInputError(
            f"unknown init_loc {init_loc!r}: use 'pytorch' or 'normal:STD' (e.g. 'normal:0.1')"
        )
    return std_value * torch.randn_like(pytorch_init)
