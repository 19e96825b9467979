"""The negative ELBO of a model and guide, by one of two engines that share every piece.

- ``pyro``: Pyro's ``TraceMeanField_ELBO`` on the model and guide.
- ``fast``: :class:`FastELBO`, the same loss without Pyro's per-step tracing, built from the
  model's and guide's own pieces: the guide's flat locations and scales (weights drawn
  ``loc + eps * scale``, eps for all sites drawn in one call: one kernel launch a step on a
  GPU, where Pyro draws site by site),
  the model's :meth:`~pyrodip.bayes.model.BayesianDIP.render` from those weights, the
  likelihood's :meth:`~pyrodip.bayes.likelihoods.Likelihood.log_prob` (the ``obs`` site's own
  log-density), the image prior's log-density (the model's ``image_prior`` factor), SURE's
  divergence (the model's ``sure_divergence`` factor, :mod:`pyrodip.bayes.sure`), and for
  each prior the KL from ``torch.distributions.kl_divergence`` against
  the prior's :meth:`~pyrodip.bayes.priors.Prior.family`, weighted by the temperature as the
  model weights it. Point-estimate sites contribute minus their prior's log-density.

The fast engine applies wherever those pieces exist: a :class:`~pyrodip.bayes.model.BayesianDIP`,
a guide whose sites are Normal or points (``meanfield``, ``map``, ``partial``, and Pyro's
``AutoNormal`` and ``AutoDelta`` as registered in :mod:`pyrodip.bayes.autoguides`, whose
locations and scales map onto the same loss) and priors with a registered KL against a Normal
(``normal``, ``fanin``, ``laplace``, and any user prior whose family has one).
:func:`unsupported_reason` says why not, otherwise.

The Pyro engine tempers any guide (:func:`~pyrodip.bayes.autoguides.tempered`) and runs in a
fresh parameter store of its own (``pyro.get_param_store().scope()``): many fits in one process
neither share nor resurrect parameters through Pyro's global store, and no Pyro setting changes.

>>> import torch
>>> from pyrodip.bayes.guides import make_guide
>>> from pyrodip.bayes.model import BayesianDIP
>>> model = BayesianDIP((1, 32, 32), prior="laplace:0.1")
>>> guide = make_guide("meanfield", model)
>>> loss_fn = make_loss(model, guide)
>>> loss_fn.engine, loss_fn(torch.rand(1, 1, 32, 32)).shape
('fast', torch.Size([]))
"""

from __future__ import annotations

import warnings

import pyro
import torch
from pyro.infer import TraceMeanField_ELBO
from torch import Tensor, nn
from torch.distributions import Normal, kl_divergence

from ..bayes.autoguides import AutoDeltaGuide, AutoNormalGuide, tempered
from ..bayes.guides import MAPGuide, MeanFieldGuide
from ..bayes.model import BayesianDIP
from ..errors import InvalidInputError

#: How the loss is computed: "pyro" (TraceMeanField_ELBO), "fast" (:class:`FastELBO`) or
#: "auto" (fast where :func:`unsupported_reason` finds nothing, else pyro, saying why once).
ENGINES = ("auto", "pyro", "fast")


def unsupported_reason(model: nn.Module, guide: nn.Module) -> str | None:
    """Why :class:`FastELBO` cannot compute the ELBO of ``model`` and ``guide``, or None."""
    if not isinstance(model, BayesianDIP):
        return f"the model is a {type(model).__name__}, not a BayesianDIP"
    if not isinstance(guide, MeanFieldGuide | MAPGuide | AutoNormalGuide | AutoDeltaGuide):
        return (f"the guide is a {type(guide).__name__}, not one whose sites are Normal or "
                "points (meanfield, map, partial, autonormal, autodelta)")
    if guide.sites != model.weight_sites:
        return "the guide's sites are not the model's weight sites"
    normal = set(guide.bayesian_sites)
    checked: dict[int, bool] = {}  # prior -> whether it was checked against a Normal too
    for site in model.weight_sites:
        prior = model.site_priors[site].prior
        against_normal = site in normal
        if checked.get(id(prior)) in (True, against_normal):
            continue
        checked[id(prior)] = against_normal
        try:
            scale = prior._scale.reshape(1)
            family = prior.family(scale)
            if against_normal:
                kl_divergence(Normal(torch.zeros_like(scale), torch.ones_like(scale)), family)
        except NotImplementedError:
            return (f"the prior {prior.spec()!r} of {site} has no closed-form KL against a "
                    "Normal (registered with torch.distributions.kl.register_kl)")
    return None


def supports(model: nn.Module, guide: nn.Module) -> bool:
    """Whether :class:`FastELBO` computes the ELBO of ``model`` and ``guide``."""
    return unsupported_reason(model, guide) is None


class _PriorGroup:
    """The sites of one prior among a flat set of weights: their element positions (None:
    all of them, in order) and each element's scale factor."""

    def __init__(self, prior, index: Tensor | None, factor: Tensor) -> None:
        self.prior, self.index, self.factor = prior, index, factor

    def distribution(self):
        return self.prior.family(self.prior._scale * self.factor)

    def take(self, flat: Tensor) -> Tensor:
        return _take(flat, self.index)


def _take(flat: Tensor, index: Tensor | None) -> Tensor:
    """``flat[index]``; all of ``flat`` when ``index`` is None."""
    return flat if index is None else flat[index]


def _flat_index(guide, sites: list[str]) -> Tensor | None:
    """The positions of ``sites``' weights in the guide's flat locations (None: all of them,
    in order, or none: then nothing takes them)."""
    if not sites or sites == list(guide.sites):
        return None
    device = guide.locs.device
    return torch.cat([torch.arange(*guide._slices[site], device=device) for site in sites])


def _prior_groups(model: BayesianDIP, sites: list[str]) -> list[_PriorGroup]:
    """The priors of ``sites`` (flattened and concatenated in order), one group per prior."""
    device = model.z.device
    members: dict[int, tuple[object, list[tuple[int, int]], list[float]]] = {}
    start = 0
    for site in sites:
        prior, shape = model.site_priors[site].prior, model.weight_sites[site]
        _, spans, factors = members.setdefault(id(prior), (prior, [], []))
        spans.append((start, start + shape.numel()))
        factors.append(prior.factor(shape))
        start += shape.numel()
    groups = []
    for prior, spans, factors in members.values():
        sizes = torch.tensor([stop - begin for begin, stop in spans], device=device)
        factor = torch.tensor(factors, device=device).repeat_interleave(sizes)
        index = None
        if len(members) > 1:
            index = torch.cat([torch.arange(*span, device=device) for span in spans])
        groups.append(_PriorGroup(prior, index, factor))
    return groups


class FastELBO(nn.Module):
    """``TraceMeanField_ELBO()(model, guide)`` without Pyro's per-step tracing: ``loss_fn(y)``
    is the negative ELBO (KL times the temperature); its gradients reach the guide's and the
    model's parameters. Raises :class:`InvalidInputError` when :func:`unsupported_reason`
    names a reason (``checked=True``: the caller has asked it already)."""

    engine = "fast"

    def __init__(self, model: BayesianDIP, guide, checked: bool = False) -> None:
        super().__init__()
        reason = None if checked else unsupported_reason(model, guide)
        if reason is not None:
            raise InvalidInputError(
                f"engine 'fast' cannot compute this ELBO: {reason}; use engine 'pyro' or 'auto'"
            )
        self.model, self.guide = model, guide
        sites = list(model.weight_sites)
        normal = list(guide.bayesian_sites)
        self._normal = [(site, guide.sites[site]) for site in normal]
        self._sizes = [shape.numel() for _, shape in self._normal]
        self._points = [site for site in sites if site not in set(normal)]
        # Where each kind of site lies in the guide's flat locs.
        self._loc_index = _flat_index(guide, normal)
        self._point_index = _flat_index(guide, self._points)
        self._normal_priors = _prior_groups(model, normal)
        self._point_priors = _prior_groups(model, self._points)

    def variational(self) -> tuple[Tensor, Tensor] | None:
        """The location and scale of every Normal site, flat in the guide's order (None when
        the guide has none)."""
        if not self._normal:
            return None
        return _take(self.guide.flat_loc(), self._loc_index), self.guide.flat_scale()

    def draw_noise(self, generator: torch.Generator | None = None) -> Tensor | None:
        """The standard-normal eps of every Normal site, flat in the guide's order, drawn in
        one call from ``generator`` (default: the global one); None when the guide has no
        Normal site. Pyro draws site by site, so the two engines' draws differ."""
        if not self._normal:
            return None
        return torch.randn(sum(self._sizes), generator=generator, device=self.model.z.device)

    def draw(
        self, variational: tuple[Tensor, Tensor] | None = None, eps: Tensor | None = None
    ) -> dict[str, Tensor]:
        """Every weight by site, drawn as the guide draws it: ``loc + eps * scale`` (eps from
        :meth:`draw_noise` unless given), locations at the point-estimate sites."""
        weights = {site: self.guide.loc(site) for site in self._points}
        if variational is None:
            variational = self.variational()
        if variational is not None:
            loc, scale = variational
            eps = self.draw_noise() if eps is None else eps
            values = (loc + eps * scale).split(self._sizes)
            for (site, shape), value in zip(self._normal, values, strict=True):
                weights[site] = value.view(shape)
        return weights

    def kl(self, variational: tuple[Tensor, Tensor] | None) -> Tensor:
        """KL(q || prior) over the weights, as TraceMeanField_ELBO computes it: closed form at
        the Normal sites, minus the log prior density at the point estimates."""
        total = torch.zeros((), device=self.model.z.device)
        if variational is not None:
            loc, scale = variational
            for group in self._normal_priors:
                q = Normal(group.take(loc), group.take(scale))
                total = total + kl_divergence(q, group.distribution()).sum()
        if self._points:
            locs = _take(self.guide.flat_loc(), self._point_index)
            for group in self._point_priors:
                total = total - group.distribution().log_prob(group.take(locs)).sum()
        return total

    def loss(self, y: Tensor, weights: dict[str, Tensor], variational=None) -> Tensor:
        """The negative ELBO for the observation ``y`` (shaped like A(x), batch dim 1) with
        these weights (e.g. from :meth:`draw`, or a trace of the guide); the rendered image
        is kept, detached, as the model's ``last_image``."""
        loss, image = self.loss_and_image(y, weights, variational, self.model.temperature)
        self.model.last_image = image.detach()
        return loss

    def loss_and_image(
        self, y: Tensor, weights: dict[str, Tensor], variational, temperature: float | Tensor,
        jitter_noise: Tensor | None = None,
    ) -> tuple[Tensor, Tensor]:
        """The negative ELBO at temperature ``temperature`` and the rendered image, with no
        side effect (what :mod:`pyrodip.infer.batched` maps over fits); ``jitter_noise``: the
        standard-normal noise of the input jitter (drawn when None)."""
        model = self.model
        image, log_variance, divergence = model.render_fit(weights, jitter_noise)
        mask = getattr(model.operator, "observed_mask", None)
        loss = -model.likelihood.log_prob(model.operator(image), y, log_variance, mask)
        if model.image_prior is not None:
            loss = loss - model.image_prior.log_density(image)
        if divergence is not None:  # the model's sure_divergence factor, -div
            loss = loss + divergence
        if isinstance(temperature, Tensor) or temperature > 0:  # 0: the model masks the prior
            if variational is None:
                variational = self.variational()
            loss = loss + temperature * self.kl(variational)
        return loss, image

    def forward(self, y: Tensor) -> Tensor:
        variational = self.variational()
        return self.loss(y, self.draw(variational), variational)


class PyroELBO(nn.Module):
    """Pyro's ``TraceMeanField_ELBO()(model, tempered(guide, model))`` as a module, tagged with
    its engine, each call in a fresh Pyro parameter store (see the module docstring)."""

    engine = "pyro"

    def __init__(self, model: nn.Module, guide: nn.Module) -> None:
        super().__init__()
        if isinstance(model, BayesianDIP):
            guide = tempered(guide, model)
        self.elbo = TraceMeanField_ELBO()(model, guide)

    def forward(self, *args, **kwargs) -> Tensor:
        with pyro.get_param_store().scope():
            return self.elbo(*args, **kwargs)


def make_loss(model: nn.Module, guide: nn.Module, engine: str = "auto") -> nn.Module:
    """The negative ELBO of ``model`` and ``guide`` as a module whose ``engine`` attribute
    says which engine runs: ``pyro``, ``fast`` (an InvalidInputError saying why, where it
    cannot run) or ``auto`` (fast where it can, else pyro with a warning saying why)."""
    if engine not in ENGINES:
        raise InvalidInputError(f"unknown engine {engine!r}: choose one of {', '.join(ENGINES)}")
    if engine == "auto":
        reason = unsupported_reason(model, guide)
        if reason is None:
            return FastELBO(model, guide)
        warnings.warn(f"engine 'auto' runs Pyro's ELBO: {reason}", stacklevel=2)
        return PyroELBO(model, guide)
    return FastELBO(model, guide) if engine == "fast" else PyroELBO(model, guide)
