"""The negative ELBO of a :class:`~pyrodip.bayes.model.BayesianDIP` and its guide without Pyro's
per-step tracing (``engine="fast"``): the same loss and gradients as
``TraceMeanField_ELBO()(model, guide)`` for the same random draws, at the speed of a
hand-written training step.

:class:`FastELBO` is derived from the Pyro model and guide, not written beside them:

- the weights are drawn as the guide draws them, ``loc + eps * scale`` with ``eps`` drawn site
  by site in the guide's order (so a seeded run draws the very numbers Pyro draws), but in one
  vectorised pass over all sites;
- the network runs as a plain twin of the model's :class:`~pyrodip.bayes.networks.SkipNet` (built
  from the same :class:`~pyrodip.bayes.networks.NetConfig`, without storage of its own) with those
  weights and the model's own BatchNorm parameters bound to it;
- the likelihood term comes from the model's likelihood module (its ``distribution``,
  ``to_site`` and ``fill_value``), through the model's operator and observed-pixel mask;
- the KL term is the closed-form Normal-Normal KL, over all mean-field sites at once, against
  each site's prior as the model declares it (point-estimate sites: minus the prior's
  log-density), weighted like the model weights it (``kl_weight``, or nothing when 0).

Where that derivation does not hold (a prior without a closed-form KL against a Normal guide,
a guide or likelihood this module does not know), :func:`supports` is False and
``engine="auto"`` uses Pyro. :func:`draw_images` is the same machinery for the posterior
predictive.

>>> import torch
>>> from pyrodip.bayes.guides import make_guide
>>> from pyrodip.bayes.model import BayesianDIP
>>> model = BayesianDIP((1, 32, 32))
>>> guide = make_guide("meanfield", model)
>>> supports(model, guide)
True
>>> loss = FastELBO(model, guide)(torch.rand(1, 1, 32, 32))
>>> loss.shape
torch.Size([])
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from pyro.distributions import Delta, Independent, Normal
from torch import Tensor, nn

from ..bayes.guides import MAPGuide, MeanFieldGuide, PartialGuide, WeightGuide, _key
from ..bayes.likelihoods import Likelihood
from ..bayes.model import BayesianDIP
from ..bayes.networks import NetConfig, SkipNet
from ..bayes.priors import FanInPrior, NormalPrior
from ..errors import InvalidInputError

#: The guides whose draws the fast path reproduces (each site Normal or a point estimate).
FAST_GUIDES = (MeanFieldGuide, MAPGuide, PartialGuide)
#: The priors with a closed-form KL against a Normal guide site in the fast path.
NORMAL_PRIORS = (NormalPrior, FanInPrior)


def unsupported_reason(model: nn.Module, guide: nn.Module) -> str | None:
    """Why :class:`FastELBO` cannot reproduce Pyro's ELBO for ``model`` and ``guide``, or
    None when it can."""
    return _analyse(model, guide)[0]


def supports(model: nn.Module, guide: nn.Module) -> bool:
    """Whether :class:`FastELBO` gives Pyro's ELBO for ``model`` and ``guide``."""
    return unsupported_reason(model, guide) is None


def _analyse(model: nn.Module, guide: nn.Module) -> tuple[str | None, dict[str, str]]:
    """The reason the fast path cannot run (or None), and how the guide draws each site."""
    if type(model) is not BayesianDIP:
        return f"the model is a {type(model).__name__}, not a BayesianDIP", {}
    if type(guide) not in FAST_GUIDES:
        names = ", ".join(cls.__name__ for cls in FAST_GUIDES)
        return f"the guide is a {type(guide).__name__} (supported: {names})", {}
    if type(model.likelihood).forward is not Likelihood.forward:
        return f"the likelihood {type(model.likelihood).__name__} has its own forward", {}
    kinds = {}
    for site in model.weight_sites:
        kinds[site] = _guide_kind(guide, site)
        if kinds[site] is None:
            return f"the guide's distribution at {site} is neither a Normal nor a point", {}
        prior = model.site_priors[site].prior
        if kinds[site] == "normal" and type(prior) not in NORMAL_PRIORS:
            return (
                f"the prior {prior.spec()!r} of {site} has no closed-form KL against the "
                f"Normal guide in the fast path (it has for: normal, fanin)"
            ), {}
    expected = {site.removeprefix("net.") for site in model.weight_sites}
    expected |= {name for name, _ in model.net.named_parameters()}
    if _parameter_names(model.net.head.out_channels, model.net_config) != expected:
        return "the network's parameters are not those of a SkipNet of the model's config", {}
    return None, kinds


def _guide_kind(guide: WeightGuide, site: str) -> str | None:
    """``normal`` when the guide draws ``site`` from Normal(loc, softplus(rho)), ``point`` for
    a Delta at loc, else None."""
    fn = guide.site_distribution(site)
    loc = guide.loc(site)
    if isinstance(fn, Delta):
        return "point" if torch.equal(fn.v, loc) else None
    rhos = getattr(guide, "rhos", {})
    if isinstance(fn, Independent) and type(fn.base_dist) is Normal and _key(site) in rhos:
        scale = F.softplus(rhos[_key(site)])
        if torch.equal(fn.base_dist.loc, loc) and torch.equal(fn.base_dist.scale, scale):
            return "normal"
    return None


@functools.lru_cache(maxsize=16)
def _twin(out_channels: int, config: NetConfig) -> SkipNet:
    """A plain SkipNet of this architecture with its tensors on the meta device (no storage,
    no random numbers drawn). Shared: copy it before changing it."""
    with torch.device("meta"):
        return SkipNet(out_channels, config)


@functools.lru_cache(maxsize=16)
def _parameter_names(out_channels: int, config: NetConfig) -> frozenset[str]:
    return frozenset(name for name, _ in _twin(out_channels, config).named_parameters())


class _BoundNet:
    """A copy of the model's network without parameters of its own: the weights of each
    pass, and the model's deterministic (BatchNorm) parameters, are bound to it."""

    def __init__(self, model: BayesianDIP) -> None:
        self.net = copy.deepcopy(_twin(model.net.head.out_channels, model.net_config))
        self.slots: dict[str, tuple[dict, str]] = {}
        for module_name, module in self.net.named_modules():
            for name in list(module._parameters):
                del module._parameters[name]
                full = f"{module_name}.{name}" if module_name else name
                self.slots[full] = (module.__dict__, name)
        for name, param in model.net.named_parameters():
            owner, attribute = self.slots.pop(name)
            owner[attribute] = param

    def __call__(self, z: Tensor, weights: dict[str, Tensor]) -> Tensor:
        for name, value in weights.items():
            owner, attribute = self.slots[name]
            owner[attribute] = value
        try:
            return self.net(z)
        finally:
            for owner, attribute in self.slots.values():
                owner[attribute] = None


class FastELBO(nn.Module):
    """``TraceMeanField_ELBO()(model, guide)`` without Pyro's per-step overhead:
    ``loss_fn(y)`` is the negative ELBO (with ``kl_weight``), its gradients reach the guide's
    and the model's parameters. Raises :class:`InvalidInputError` when
    :func:`unsupported_reason` names a reason."""

    def __init__(self, model: BayesianDIP, guide: WeightGuide) -> None:
        super().__init__()
        reason, kinds = _analyse(model, guide)
        if reason is not None:
            raise InvalidInputError(
                f"engine 'fast' cannot compute this ELBO: {reason}; use engine 'pyro' or 'auto'"
            )
        self.model, self.guide = model, guide
        self._net = _BoundNet(model)
        sites = model.weight_sites
        normal = [s for s in sites if kinds[s] == "normal"]
        #: (site, name in the network, location) of every point-estimate site.
        self._points = [(s, s.removeprefix("net."), guide.loc(s)) for s in sites
                        if s not in normal]
        # The Normal sites, in the guide's order: names, shapes, parameters.
        self._names = [s.removeprefix("net.") for s in normal]
        self._shapes = [sites[s] for s in normal]
        self._sizes = [shape.numel() for shape in self._shapes]
        self._locs = [guide.loc(s) for s in normal]
        self._rhos = [guide.rhos[_key(s)] for s in normal]
        # Each Normal site's prior std: the std of its prior for a lone weight (read at each
        # step, so that a scale changed in place counts) x a fixed factor (fan-in).
        priors = [model.site_priors[s].prior for s in normal]
        self._priors = list({id(p): p for p in priors}.values())
        factors = [
            float(model.prior_distribution(s).base_dist.scale.reshape(-1)[0] / _unit_std(p))
            for s, p in zip(normal, priors, strict=True)
        ]
        index = [next(i for i, q in enumerate(self._priors) if q is p) for p in priors]
        device = model.z.device
        self.register_buffer("_prior_index", torch.tensor(index, device=device), False)
        self.register_buffer("_prior_factor", torch.tensor(factors, device=device), False)
        self.register_buffer("_repeats", torch.tensor(self._sizes, device=device), False)

    def variational(self) -> tuple[Tensor, Tensor] | None:
        """The location and scale of every Normal site, flattened and concatenated in the
        guide's order (None when the guide has none)."""
        if not self._locs:
            return None
        loc = torch.cat([loc.reshape(-1) for loc in self._locs])
        scale = F.softplus(torch.cat([rho.reshape(-1) for rho in self._rhos]))
        return loc, scale

    def sample(self, variational: tuple[Tensor, Tensor] | None) -> dict[str, Tensor]:
        """Every weight, keyed by its name in the network (``body.down.0.weight``), drawn as
        the guide draws it: ``loc + eps * scale``, eps drawn site by site in Pyro's order."""
        weights = {name: loc for _, name, loc in self._points}
        if variational is not None:
            loc, scale = variational
            eps = torch.empty_like(loc)
            for chunk in eps.split(self._sizes):
                chunk.normal_()
            values = (loc + eps * scale).split(self._sizes)
            for name, value, shape in zip(self._names, values, self._shapes, strict=True):
                weights[name] = value.view(shape)
        return weights

    def render(self, weights: dict[str, Tensor], jitter: bool) -> tuple[Tensor, Tensor | None]:
        """:meth:`BayesianDIP.render` with these weights."""
        model = self.model
        z = model.z
        if jitter and model.jitter > 0:
            z = z + model.jitter * torch.randn_like(z)
        out = self._net(z, weights)
        channels = model.image_shape[0]
        image = torch.sigmoid(out[:, :channels])
        log_variance = out[:, channels:] if model.likelihood.heteroscedastic else None
        return image, log_variance

    def log_likelihood(self, image: Tensor, log_variance: Tensor | None, y: Tensor) -> Tensor:
        """log p(y | image), summed over the observed pixels (the model's ``obs`` site)."""
        model = self.model
        likelihood = model.likelihood
        fn = likelihood.distribution(model.operator(image), log_variance)
        value = likelihood.to_site(y)
        mask = getattr(model.operator, "observed_mask", None)
        if mask is None:
            return fn.log_prob(value).sum()
        value = torch.where(mask, value, likelihood.fill_value)
        return torch.where(mask, fn.log_prob(value), 0.0).sum()

    def kl(self, variational: tuple[Tensor, Tensor] | None) -> Tensor:
        """KL(q || prior) summed over the weights, as TraceMeanField_ELBO computes it: in
        closed form at the Normal sites, minus the log prior at the point estimates."""
        total = torch.zeros((), device=self.model.z.device)
        if variational is not None:
            loc, scale = variational
            unit = torch.cat([_unit_std(p).reshape(1) for p in self._priors])
            site_std = unit[self._prior_index] * self._prior_factor
            prior_std = site_std.repeat_interleave(self._repeats, output_size=loc.numel())
            var_ratio = (scale / prior_std).pow(2)
            t1 = (loc / prior_std).pow(2)
            total = total + 0.5 * (var_ratio + t1 - 1 - var_ratio.log()).sum()
        for site, _, loc in self._points:
            total = total - self.model.prior_distribution(site).log_prob(loc)
        return total

    def forward(self, y: Tensor) -> Tensor:
        """The negative ELBO for the observation ``y`` (shaped like A(x), batch dim 1)."""
        model = self.model
        variational = self.variational()
        weights = self.sample(variational)
        image, log_variance = self.render(weights, jitter=model.training)
        model.last_image = image.detach()
        loss = -self.log_likelihood(image, log_variance, y)
        if model.kl_weight > 0:  # kl_weight 0: the model masks the prior out
            loss = loss + model.kl_weight * self.kl(variational)
        return loss


@torch.no_grad()
def draw_images(
    model: BayesianDIP, guide: WeightGuide, num: int
) -> Iterator[tuple[Tensor, Tensor | None]]:
    """``num`` posterior images, each (image, log_variance or None) as ``model.render`` gives
    them without jitter, from weights drawn as the guide draws them (needs :func:`supports`)."""
    elbo = FastELBO(model, guide)
    variational = elbo.variational()
    for _ in range(num):
        yield elbo.render(elbo.sample(variational), jitter=False)


def _unit_std(prior) -> Tensor:
    """The std of ``prior`` for a lone weight (a tensor: no host sync on a GPU)."""
    return prior.distribution((1,)).scale

