"""Guides: the variational families over the network weights, chosen by spec ``NAME[:ARG]``.

- ``meanfield``: q(w) = prod N(loc, scale^2), sampled *at the model's own sites*, so
  ``TraceMeanField_ELBO`` computes KL(q || prior) in closed form against a ``normal``,
  ``fanin`` or ``laplace`` prior (Pyro's ``AutoNormal`` samples an auxiliary variable instead
  and falls back to a noisy Monte Carlo KL).
- ``map``: a point estimate (Delta) per site: with ``temperature=0`` this is plain DIP, with a
  prior it is MAP.
- ``lowrank:RANK``: one multivariate Normal over all the weights, its covariance a rank-RANK
  factor plus a diagonal. It is drawn at an auxiliary site (``_lowrank``) and split into a
  Delta at each model site, so the KL is a one-sample Monte Carlo estimate. The factor takes
  D x RANK x 4 bytes (D weights, float32), refused over :data:`LOWRANK_MEMORY_BUDGET`.
- ``partial:PATTERNS``: mean-field Normal on the sites whose name matches one of the
  comma-separated fnmatch patterns (e.g. ``partial:net.head.*,net.body.up.*``), a point
  estimate everywhere else.

Pyro's own ``AutoNormal``, ``AutoDelta`` and ``AutoLowRankMultivariateNormal`` are registered
too, as ``autonormal``, ``autodelta`` and ``autolowrank:RANK`` (:mod:`pyrodip.bayes.autoguides`).

Locations start from a fresh PyTorch initialisation of the network (``init_loc="pytorch"``)
or from N(0, s^2) (``init_loc="normal:0.1"``, the paper's); standard deviations from
``init_scale``.

>>> from pyrodip.bayes.model import BayesianDIP
>>> model = BayesianDIP((1, 32, 32))
>>> guide = make_guide("meanfield", model, init_scale=0.05)
>>> name = next(iter(model.weight_sites))
>>> round(float(guide.scale(name).detach().mean()), 4)
0.05
>>> guide = make_guide("partial:net.head.*", model)
>>> sorted(guide.bayesian_sites)
['net.head.bias', 'net.head.weight']

Parameters are kept flat: one ``locs`` tensor over all the weights (and, for the Normal guides,
one ``rhos``), in the model's site order; ``loc(site)`` and ``scale(site)`` are views of them.
One softplus and one optimiser tensor then serve every site.

Register your own with :func:`register_guide`. A guide's ``forward`` samples every name in
``model.weight_sites`` inside ``model.prior_weighting()``. It is built as
``cls(model, **options)``; a guide that takes an argument declares its name in ``argument``
(e.g. ``argument = "RANK"``) and is built as ``cls(model, ARG, **options)``, ARG the string
after the colon of its spec. The options are those :func:`pyrodip.build_model` passes:
``init_loc`` and ``init_scale``.
"""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Callable

import pyro
import pyro.distributions as dist
import torch
import torch.nn.functional as F
from pyro.nn import PyroModule
from torch import Tensor, nn

from ..errors import InvalidInputError
from ..registry import Registry
from ..validation import positive
from .model import example_sites

GUIDES: Registry[type[WeightGuide]] = Registry("guide")
#: The guides' initial std: the ``mfvi`` method's (and so ``pyrodip run``'s), which takes it from
#: here.
DEFAULT_INIT_SCALE = 0.01
#: The most memory (bytes) the covariance factor of a ``lowrank`` guide may take: 1 GiB.
#: Adam's two moments and the gradient take three times as much again while fitting.
LOWRANK_MEMORY_BUDGET = 2**30


def register_guide(name: str) -> Callable[[type[WeightGuide]], type[WeightGuide]]:
    """Class decorator that makes a guide available by ``name`` (``GUIDES.register``)."""
    return GUIDES.register(name)


class WeightGuide(PyroModule):
    """Base class: the location of every weight of a :class:`BayesianDIP`, in one flat
    parameter ``locs`` (site order), and the views of it per site.

    A ``PyroModule``: called inside Pyro's inference (``pyro.infer.SVI``), its parameters are
    Pyro parameters, seen by ``pyro.optim`` optimisers. It samples inside the model's
    :meth:`~pyrodip.bayes.model.BayesianDIP.prior_weighting` (:attr:`weights_tempered`).
    """

    #: Whether the guide's sites carry the model's temperature itself (see :func:`tempered`).
    weights_tempered = True

    #: The name of the argument after the colon of the spec (e.g. "RANK"); None: takes none.
    argument: str | None = None
    #: Values autograd keeps per weight in a training step: the drawn weight and the graph of
    #: its draw (measured: 11 for a sampling guide, 3 for a point estimate; see
    #: :func:`pyrodip.run.resources.estimate_memory`).
    step_values_per_weight: int = 11

    @classmethod
    def values_per_weight(cls, argument: str) -> int:
        """Parameter values the guide keeps per weight, for the spec argument ``argument``
        (memory estimates; bad arguments are refused later, when the guide is built). Here
        two, a location and a scale: a guide that keeps more says so.

        >>> GUIDES["meanfield"].values_per_weight(""), GUIDES["lowrank"].values_per_weight("5")
        (2, 7)
        """
        return 2

    def __init__(self, model, init_loc: str = "pytorch") -> None:
        super().__init__(name=type(self).__name__)
        self.sites = dict(model.weight_sites)
        self._weighting = model.prior_weighting
        self.locs = nn.Parameter(torch.cat([
            initial_loc(init_loc, value).reshape(-1) for value in model.initial_weights.values()
        ]))
        self._slices = _slices(self.sites)

    def loc(self, site: str) -> Tensor:
        """The location of ``site``: a view of ``locs``."""
        start, stop = self._slices[site]
        return self.locs[start:stop].view(self.sites[site])

    def flat_loc(self) -> Tensor:
        """The location of every weight, flat in site order (``locs``)."""
        return self.locs

    def site_distribution(self, site: str) -> dist.Distribution:
        """q of one weight site (one event over the site's tensor). A subclass overrides this
        or :meth:`site_distributions`."""
        return self.site_distributions()[site]

    def site_distributions(self) -> dict[str, dist.Distribution]:
        """q of every weight site, by name."""
        return {site: self.site_distribution(site) for site in self.sites}

    def forward(self, *args, **kwargs) -> dict[str, Tensor]:
        """Draw every weight site (the model's arguments are accepted and ignored)."""
        with self._weighting():
            return {name: pyro.sample(name, fn) for name, fn in self.site_distributions().items()}


@register_guide("meanfield")
class MeanFieldGuide(WeightGuide):
    """Independent Normal per weight of :attr:`bayesian_sites` (every site unless
    ``bayesian_sites`` names fewer; the others are point estimates): scale = softplus(rho),
    initialised to ``init_scale``. ``rhos`` covers the Normal sites only, in site order."""

    def __init__(
        self,
        model,
        init_loc: str = "pytorch",
        init_scale: float = DEFAULT_INIT_SCALE,
        bayesian_sites: list[str] | None = None,
    ) -> None:
        super().__init__(model, init_loc)
        #: The sites with a Normal posterior, in the model's order.
        self.bayesian_sites = list(self.sites) if bayesian_sites is None else bayesian_sites
        self._rho_slices = _slices({site: self.sites[site] for site in self.bayesian_sites})
        size = sum(self.sites[site].numel() for site in self.bayesian_sites)
        self.rhos = _rhos(self.locs.new_empty(size), init_scale)

    def scales(self) -> Tensor:
        """softplus(rhos): the std of every weight of :attr:`bayesian_sites`, flat."""
        return F.softplus(self.rhos)

    def flat_scale(self) -> Tensor:
        """:meth:`scales`, by the name every guide of the fast engine gives it."""
        return self.scales()

    def scale(self, site: str) -> Tensor:
        """The posterior std of ``site``: zeros for a point-estimate site."""
        if site not in self._rho_slices:
            return torch.zeros_like(self.loc(site))
        start, stop = self._rho_slices[site]
        return F.softplus(self.rhos[start:stop]).view(self.sites[site])

    def site_distributions(self) -> dict[str, dist.Distribution]:
        scales = self.scales()
        fns = {}
        for site, shape in self.sites.items():
            if site in self._rho_slices:
                start, stop = self._rho_slices[site]
                fns[site] = _normal(self.loc(site), scales[start:stop].view(shape))
            else:
                fns[site] = _point(self.loc(site))
        return fns


@register_guide("map")
class MAPGuide(WeightGuide):
    """A point estimate per weight: the guide of plain DIP (and MAP with a prior)."""

    bayesian_sites: list[str] = []
    step_values_per_weight = 3

    def __init__(self, model, init_loc: str = "pytorch", init_scale: float | None = None) -> None:
        super().__init__(model, init_loc)

    @classmethod
    def values_per_weight(cls, argument: str) -> int:
        """One value per weight: the location."""
        return 1

    def site_distributions(self) -> dict[str, dist.Distribution]:
        return {site: _point(self.loc(site)) for site in self.sites}


@register_guide("partial")
class PartialGuide(MeanFieldGuide):
    """Mean-field Normal on the sites matching one of ``patterns`` (comma-separated fnmatch
    patterns on the site names), a point estimate (Delta) on the others."""

    argument = "PATTERNS"

    def __init__(
        self, model, patterns: str, init_loc: str = "pytorch",
        init_scale: float = DEFAULT_INIT_SCALE,
    ) -> None:
        sites = model.weight_sites
        chosen = [pattern.strip() for pattern in patterns.split(",") if pattern.strip()]
        if not chosen:
            raise InvalidInputError(
                f"partial guide needs layer patterns, e.g. 'partial:net.head.*', got {patterns!r}"
            )
        for pattern in chosen:
            if not any(fnmatch.fnmatchcase(site, pattern) for site in sites):
                raise InvalidInputError(
                    f"partial guide pattern {pattern!r} matches no weight site: the sites are "
                    f"named like {example_sites(sites)}"
                )
        matched = [site for site in sites
                   if any(fnmatch.fnmatchcase(site, pattern) for pattern in chosen)]
        super().__init__(model, init_loc, init_scale, bayesian_sites=matched)


@register_guide("lowrank")
class LowRankGuide(WeightGuide):
    """One multivariate Normal over all D weights: covariance ``F F^T + diag(s^2)``, F of shape
    (D, rank), s = softplus(rho).

    The joint draw is an auxiliary site ``_lowrank``; each model site gets its slice as a
    Delta, so ``TraceMeanField_ELBO`` (and ``Trace_ELBO``) estimate the KL by Monte Carlo.
    The marginal std of each weight starts near ``init_scale`` (half the variance from F, half
    from the diagonal). ``memory_budget``: the most bytes the factor (D x rank float32) may
    take.
    """

    argument = "RANK"

    @classmethod
    def values_per_weight(cls, argument: str) -> int:
        """Location, scale and the RANK values of the factor's row."""
        return 2 + (int(argument) if argument.isdigit() else 1)

    def __init__(
        self,
        model,
        rank: int | str,
        init_loc: str = "pytorch",
        init_scale: float = DEFAULT_INIT_SCALE,
        memory_budget: int = LOWRANK_MEMORY_BUDGET,
    ) -> None:
        super().__init__(model, init_loc)
        size = self.locs.numel()
        self.rank = rank = checked_rank(rank, size, memory_budget, "lowrank")
        self.rhos = _rhos(self.locs, init_scale / math.sqrt(2))
        self.cov_factor = nn.Parameter(
            torch.randn(size, rank) * (init_scale / math.sqrt(2 * rank))
        )

    def joint(self) -> dist.LowRankMultivariateNormal:
        """q(w) over the weights of all sites, flattened and concatenated in site order."""
        return dist.LowRankMultivariateNormal(self.locs, self.cov_factor,
                                              F.softplus(self.rhos) ** 2)

    def forward(self, *args, **kwargs) -> dict[str, Tensor]:
        """Draw all weights jointly, then put each site's slice at that site."""
        with self._weighting():
            joint = pyro.sample("_lowrank", self.joint(), infer={"is_auxiliary": True})
            return {site: pyro.sample(site, _point(joint[start:stop].view(self.sites[site])))
                    for site, (start, stop) in self._slices.items()}


def make_guide(spec: str, model, **options) -> WeightGuide:
    """Build the guide that ``spec`` (``NAME`` or ``NAME:ARG``) names for ``model``."""
    name, colon, argument = spec.partition(":")
    if name not in GUIDES:
        raise InvalidInputError(
            f"unknown guide {name!r}: choose one of {', '.join(map(guide_usage, GUIDES))}"
        )
    cls = GUIDES[name]
    if cls.argument is None:
        if colon:
            raise InvalidInputError(f"guide {name!r} takes no argument, got {spec!r}")
        return cls(model, **options)
    if not argument:
        raise InvalidInputError(f"guide {name!r} needs an argument: {guide_usage(name)}")
    return cls(model, argument, **options)


def guide_usage(name: str) -> str:
    """The spec form of the guide registered as ``name``, e.g. ``lowrank:RANK``."""
    argument = GUIDES[name].argument
    return name if argument is None else f"{name}:{argument}"


def _point(value: Tensor) -> dist.Delta:
    return dist.Delta(value, event_dim=value.dim())


def _normal(loc: Tensor, scale: Tensor) -> dist.Distribution:
    return dist.Normal(loc, scale).to_event(loc.dim())


def _slices(sites: dict[str, torch.Size]) -> dict[str, tuple[int, int]]:
    """(start, stop) of each site in the flat concatenation of ``sites`` in order."""
    slices, start = {}, 0
    for site, shape in sites.items():
        slices[site] = (start, start + shape.numel())
        start += shape.numel()
    return slices


def _rhos(like: Tensor, init_scale: float) -> nn.Parameter:
    """softplus^-1(init_scale), shaped like ``like``."""
    init_scale = positive("init_scale", init_scale)
    rho = init_scale + math.log(-math.expm1(-init_scale))  # inverse softplus, no overflow
    return nn.Parameter(torch.full_like(like.detach(), rho))


def checked_rank(text: int | str, size: int, memory_budget: int, name: str) -> int:
    """The rank ``text`` of guide ``name`` (``NAME:RANK``) over ``size`` weights, refused
    unless an integer >= 1 whose covariance factor (size x rank float32) fits
    ``memory_budget`` bytes."""
    try:
        rank = int(text)
    except (TypeError, ValueError):
        rank = 0
    if isinstance(text, bool) or str(rank) != str(text).strip() or rank < 1:
        raise InvalidInputError(f"{name} rank must be an integer >= 1, got {text!r} "
                                f"(e.g. {name}:10)")
    needed = size * rank * 4
    if needed > memory_budget:
        fits = memory_budget // (size * 4)
        fix = f"use rank <= {fits}" if fits else "not even rank 1 fits"
        raise InvalidInputError(
            f"{name}:{rank} needs {_bytes(needed)} for its covariance factor ({size} "
            f"weights x rank {rank} x 4 bytes), over the budget of {_bytes(memory_budget)}: "
            f"{fix}, or raise memory_budget"
        )
    return rank


def _bytes(size: int) -> str:
    return f"{size / 2**30:.2f} GiB" if size >= 2**30 else f"{size / 2**20:.1f} MiB"


def initial_loc(init_loc: str, pytorch_init: Tensor) -> Tensor:
    """A site's initial location: ``pytorch_init`` (a fresh PyTorch initialisation) for
    ``"pytorch"``, a draw of N(0, STD^2) for ``"normal:STD"``."""
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
