"""Pyro's autoguides on pyrodip's model: tempering any guide, and three autoguides registered as
guides.

The model's weight sites carry the temperature T (:meth:`BayesianDIP.prior_weighting`), so T
scales log p(w). pyrodip's guides sample inside the same weighting, so T scales log q(w) too,
and with it the whole KL. Pyro's autoguides do not: run untempered, their entropy term keeps
weight 1 while the prior's gets T, and SVI fits another objective. :func:`tempered` wraps any
guide so that its sites (auxiliary ones included) carry T.

The registered autoguides are Pyro's own classes, tempered, over the weight sites only, with
their locations initialised like pyrodip's guides (``init_loc``: a fresh PyTorch
initialisation, not Pyro's default of zeros, under which the network renders a constant image)
and their standard deviations at ``init_scale``:

- ``autonormal``: :class:`~pyro.infer.autoguide.AutoNormal` (mean-field Normal, a Monte Carlo
  KL under Pyro's engine; the fast engine maps its locations and scales onto the closed-form
  KL of ``meanfield``).
- ``autodelta``: :class:`~pyro.infer.autoguide.AutoDelta` (point estimates; the fast engine
  runs it as ``map``).
- ``autolowrank:RANK``: :class:`~pyro.infer.autoguide.AutoLowRankMultivariateNormal` of rank
  RANK (always Pyro's engine; refused where its factor exceeds
  :data:`~pyrodip.bayes.guides.LOWRANK_MEMORY_BUDGET`).

>>> from pyrodip.bayes.guides import make_guide
>>> from pyrodip.bayes.model import BayesianDIP
>>> model = BayesianDIP((1, 32, 32), temperature=0.1)
>>> guide = make_guide("autonormal", model, init_scale=0.05)
>>> site = next(iter(model.weight_sites))
>>> bool((guide.flat_loc()[:4] == model.initial_weights[site].flatten()[:4]).all())
True
>>> round(float(guide.flat_scale().mean()), 4)
0.05
"""

from __future__ import annotations

from operator import attrgetter

import torch
from pyro.infer.autoguide import AutoDelta, AutoLowRankMultivariateNormal, AutoNormal
from pyro.infer.autoguide.initialization import init_to_value
from torch import Tensor, nn

from ..validation import positive
from .guides import (
    DEFAULT_INIT_SCALE,
    LOWRANK_MEMORY_BUDGET,
    LowRankGuide,
    MAPGuide,
    WeightGuide,
    checked_rank,
    initial_loc,
    register_guide,
)

__all__ = ["AutoDeltaGuide", "AutoLowRankGuide", "AutoNormalGuide", "Tempered", "tempered"]


class Tempered(nn.Module):
    """``guide`` run inside ``model.prior_weighting()``: every site it samples (an autoguide's
    auxiliary sites included) carries the temperature T that the model's weight sites carry,
    so that T scales log q as it scales log p, i.e. the whole KL. Built by :func:`tempered`."""

    weights_tempered = True

    def __init__(self, guide: nn.Module, model) -> None:
        super().__init__()
        self.guide = guide
        self._weighting = model.prior_weighting

    def forward(self, *args, **kwargs):
        """The guide's draw, its sites scaled by T (masked at T = 0)."""
        with self._weighting():
            return self.guide(*args, **kwargs)


def tempered(guide: nn.Module, model) -> nn.Module:
    """``guide`` with ``model``'s temperature on its sites: itself when it applies it already
    (pyrodip's guides, ``weights_tempered``), else :class:`Tempered`. Pyro's autoguides need it
    whenever T != 1.

    >>> from pyrodip.bayes.guides import make_guide
    >>> from pyrodip.bayes.model import BayesianDIP
    >>> model = BayesianDIP((1, 32, 32), temperature=0.1)
    >>> type(tempered(AutoNormal(model), model)).__name__
    'Tempered'
    >>> guide = make_guide("meanfield", model)
    >>> tempered(guide, model) is guide
    True
    """
    return guide if getattr(guide, "weights_tempered", False) else Tempered(guide, model)


class _WeightSites:
    """The model for an autoguide's prototype: a callable that draws the weight sites only
    (the observation is never a latent site, whatever the arguments)."""

    def __init__(self, model) -> None:
        self.model = model

    def __call__(self, *args, **kwargs) -> dict[str, Tensor]:
        return self.model.sample_weights()


class _PyroAutoGuide:
    """What the registered autoguides share (mixed in before Pyro's class): built over the
    model's weight sites with pyrodip's initial locations, set up at once (so an optimiser
    built before the first step sees every parameter), and sampled inside the model's
    weighting."""

    argument: str | None = None
    weights_tempered = True
    # Memory: each autoguide keeps what its pyrodip counterpart keeps (mean-field here).
    values_per_weight = WeightGuide.values_per_weight
    step_values_per_weight = WeightGuide.step_values_per_weight

    def _build(self, model, init_loc: str, **options) -> None:
        values = {site: initial_loc(init_loc, value)
                  for site, value in model.initial_weights.items()}
        super().__init__(_WeightSites(model), init_loc_fn=init_to_value(values=values),
                         **options)
        self.sites = dict(model.weight_sites)
        self._weighting = model.prior_weighting
        self._setup_prototype()

    def forward(self, *args, **kwargs) -> dict[str, Tensor]:
        """Draw every weight site, scaled by the model's temperature (the model's arguments
        are accepted and ignored)."""
        with self._weighting():
            return super().forward(*args, **kwargs)

    def _flat(self, container: nn.Module) -> Tensor:
        return torch.cat([attrgetter(site)(container).reshape(-1) for site in self.sites])


@register_guide("autonormal")
class AutoNormalGuide(_PyroAutoGuide, AutoNormal):
    """Pyro's ``AutoNormal`` over the weights (see the module docstring)."""

    def __init__(
        self, model, init_loc: str = "pytorch", init_scale: float = DEFAULT_INIT_SCALE
    ) -> None:
        self._build(model, init_loc, init_scale=float(positive("init_scale", init_scale)))
        #: Every site has a Normal posterior.
        self.bayesian_sites = list(self.sites)

    def flat_loc(self) -> Tensor:
        """The location of every weight, flat in site order."""
        return self._flat(self.locs)

    def flat_scale(self) -> Tensor:
        """The std of every weight, flat in site order."""
        return self._flat(self.scales)


@register_guide("autodelta")
class AutoDeltaGuide(_PyroAutoGuide, AutoDelta):
    """Pyro's ``AutoDelta`` over the weights: a point estimate each (``init_scale`` is
    accepted and ignored, as by ``map``)."""

    bayesian_sites: list[str] = []
    values_per_weight = MAPGuide.values_per_weight
    step_values_per_weight = MAPGuide.step_values_per_weight

    def __init__(
        self, model, init_loc: str = "pytorch", init_scale: float | None = None
    ) -> None:
        self._build(model, init_loc)

    def loc(self, site: str) -> Tensor:
        """The point estimate of ``site``."""
        return attrgetter(site)(self)

    def flat_loc(self) -> Tensor:
        """The point estimate of every weight, flat in site order."""
        return self._flat(self)


@register_guide("autolowrank")
class AutoLowRankGuide(_PyroAutoGuide, AutoLowRankMultivariateNormal):
    """Pyro's ``AutoLowRankMultivariateNormal`` of rank RANK over the weights (its marginal
    std starts near ``init_scale``); refused where the factor exceeds ``memory_budget``
    bytes."""

    argument = "RANK"
    values_per_weight = LowRankGuide.values_per_weight

    def __init__(
        self,
        model,
        rank: int | str,
        init_loc: str = "pytorch",
        init_scale: float = DEFAULT_INIT_SCALE,
        memory_budget: int = LOWRANK_MEMORY_BUDGET,
    ) -> None:
        size = sum(shape.numel() for shape in model.weight_sites.values())
        rank = checked_rank(rank, size, memory_budget, "autolowrank")
        self._build(model, init_loc, init_scale=float(positive("init_scale", init_scale)),
                    rank=rank)
        self.bayesian_sites = list(self.sites)
