"""The Bayesian Deep Image Prior as a Pyro model.

The generative story, for one image of shape (C, H, W):

    w ~ prior                      every conv weight and bias, one sample site each
    x = sigmoid(SkipNet_w(z))      z: fixed U(0, 0.1) noise (jittered while fitting)
    y ~ p(y | A(x))                the ``obs`` site, through the forward operator A (Gaussian,
                                   speckle or Poisson; missing pixels of a Mask excluded)
    + log p_image(x)               optional: a prior on the image (``image_prior``, a
                                   ``pyro.factor``; :mod:`pyrodip.bayes.image_priors`)
    - div_y x                      optional: SURE's divergence (``sure``, a ``pyro.factor``;
                                   :mod:`pyrodip.bayes.sure`), where the input is y, not z

Every weight site is one ``pyro.sample`` statement, named by its parameter's path in the
plain :class:`~pyrodip.bayes.networks.SkipNet` (``net.body.down.0.weight``, ...), drawn in the
network's order by :meth:`BayesianDIP.sample_weights`. The image is rendered from given
weights by :meth:`BayesianDIP.render` (``torch.func.functional_call`` on the plain network): the
Pyro model and the fast loss (:mod:`pyrodip.infer.elbo`) share that one rendering. The prior's
log-density at the weight sites, and so the KL term of the ELBO, is scaled by the posterior
temperature T (``temperature``; 1 = the ELBO; ``docs/concepts.md`` maps it to the papers'
objectives).

>>> model = BayesianDIP((1, 32, 32), net="small", prior="normal:0.05")
>>> convs = sum(1 for m in model.net.modules() if isinstance(m, nn.Conv2d))
>>> len(model.weight_sites) == convs + 1  # every weight; of the biases, the head's (BatchNorm)
True
>>> model.prior.scale = 0.1   # every site now draws from N(0, 0.1^2)

Layers can have priors of their own, by fnmatch patterns on the site names (the first
matching pattern wins; the others keep ``prior``):

>>> model = BayesianDIP((1, 32, 32), layer_priors={"net.head.*": "laplace:0.01"})
>>> model.site_priors["net.head.weight"].prior.spec()
'laplace:0.01'
>>> model.layer_priors["net.head.*"].scale = 0.02   # in place, as for ``prior``
"""

from __future__ import annotations

import contextlib
import dataclasses
import fnmatch
import math

import pyro
import torch
from pyro import poutine
from pyro.nn import PyroModule
from torch import Tensor, nn
from torch.func import functional_call

from ..errors import InvalidInputError
from ..physics.operators import Identity, Mask
from .image_priors import ImagePrior
from .likelihoods import GaussianLikelihood, Likelihood
from .networks import NetConfig, SkipNet
from .priors import Prior, make_prior
from .sure import SureDivergence, check_sure_model

#: The run's defaults, declared here (the lowest stage that uses them) and taken from here by
#: :class:`~pyrodip.run.config.RunConfig` (``prior``, ``prior_scale``, ``jitter``) and the
#: ``mfvi`` method (its temperature), so that a model built with the defaults is the one
#: ``pyrodip run`` fits (:func:`pyrodip.build_model` builds exactly that one).
DEFAULT_PRIOR = "normal"
DEFAULT_PRIOR_SCALE = 0.1
DEFAULT_TEMPERATURE = 0.1
DEFAULT_JITTER = 0.03


class _SitePrior:
    """The prior of one weight site, read from its :class:`Prior` (``prior``, shared with the
    other sites it covers) at every draw."""

    def __init__(self, prior: Prior, shape: torch.Size) -> None:
        self.prior = prior
        self.shape = shape

    def __call__(self, module: nn.Module):
        return self.prior.distribution(self.shape).to_event(len(self.shape))


class BayesianDIP(PyroModule):
    """DIP skip network with random weights, a forward operator and a likelihood.

    Args:
        image_shape: (C, H, W) of the image x to reconstruct; H and W must be multiples of
            ``2 ** scales`` (see :func:`pyrodip.io.images.center_crop`).
        net: a preset name (``small``, ``paper``) or a :class:`NetConfig`.
        prior: a :class:`Prior` or its spec string, e.g. ``"normal:0.05"``.
        layer_priors: fnmatch pattern on the site names -> prior (or spec) for the sites it
            matches, e.g. ``{"net.head.*": "laplace:0.01"}``; the first matching pattern wins,
            other sites keep ``prior``. A pattern that matches no site is refused.
        likelihood: a :mod:`pyrodip.bayes.likelihoods` module; ``GaussianLikelihood(0.1)`` if None.
        operator: the forward operator A; defaults to the identity (denoising).
        temperature: T, the weight of the prior's log-density at every weight site, and so of
            the KL term (1 = the ELBO; 0 = no prior, plain maximum likelihood).
        jitter: std of the Gaussian noise added to the input z at each fitting step.
        bayesian_batchnorm: make BatchNorm scales and shifts sample sites too.
        image_prior: a prior on the rendered image beside the weight prior, or None.
        sure: SURE's divergence term (:mod:`pyrodip.bayes.sure`), or None: the network's
            input is then its observation (C channels, not ``net.input_channels``) and the
            model adds minus the divergence to its log joint.
    """

    def __init__(
        self,
        image_shape: tuple[int, int, int],
        net: str | NetConfig = "small",
        prior: str | Prior = f"{DEFAULT_PRIOR}:{DEFAULT_PRIOR_SCALE}",
        layer_priors: dict[str, str | Prior] | None = None,
        likelihood: Likelihood | None = None,
        operator: nn.Module | None = None,
        temperature: float = DEFAULT_TEMPERATURE,
        jitter: float = DEFAULT_JITTER,
        bayesian_batchnorm: bool = False,
        image_prior: ImagePrior | None = None,
        sure: SureDivergence | None = None,
    ) -> None:
        super().__init__()
        config = NetConfig.preset(net) if isinstance(net, str) else net
        channels, height, width = image_shape
        if height % config.min_side or width % config.min_side:
            raise InvalidInputError(
                f"image size {height}x{width} is not a multiple of {config.min_side} "
                f"(2^scales): crop it with pyrodip.io.images.center_crop or use fewer scales"
            )
        if not (math.isfinite(temperature) and temperature >= 0):
            raise InvalidInputError(f"temperature must be a number >= 0, got {temperature}")
        if not (math.isfinite(jitter) and jitter >= 0):
            raise InvalidInputError(f"jitter must be a number >= 0, got {jitter}")
        self.image_shape = (channels, height, width)
        self.net_config = config
        self.temperature = float(temperature)
        self.jitter = float(jitter)
        self.prior = make_prior(prior)
        #: pattern -> the prior of the sites it matches (each changeable in place).
        self.layer_priors = {pattern: make_prior(spec)
                             for pattern, spec in (layer_priors or {}).items()}
        # Registered as submodules so that they move with the model (.to(device)).
        self.layer_prior_modules = nn.ModuleList(self.layer_priors.values())
        self.likelihood = likelihood if likelihood is not None else GaussianLikelihood()
        self.operator = operator if operator is not None else Identity()
        self.image_prior = image_prior
        inner = getattr(self.operator, "operator", self.operator)  # a Subset's own operator
        if self.likelihood.heteroscedastic and not isinstance(inner, Identity | Mask):
            raise InvalidInputError(
                "a heteroscedastic noise level needs an operator that keeps the image's shape "
                "(denoising or inpainting): use `noise_level=known` or `noise_level=learned`"
            )
        self.sure = sure
        if sure is None:
            self.register_buffer("z", 0.1 * torch.rand(1, config.input_channels, height, width))
        else:
            check_sure_model(self.likelihood, self.operator)
            if tuple(sure.input.shape[1:]) != self.image_shape:
                raise InvalidInputError(
                    f"SURE's observation has shape {tuple(sure.input.shape[1:])}, not the "
                    f"image's {self.image_shape}: give it the observation of this image"
                )
            self.register_buffer("z", sure.input.clone())
            config = dataclasses.replace(config, input_channels=sure.input.shape[1])
            self.net_config = config

        net = SkipNet(channels + self.likelihood.extra_channels, config)
        random_types = (nn.Conv2d, nn.BatchNorm2d) if bayesian_batchnorm else (nn.Conv2d,)
        #: name -> initial value (a fresh PyTorch initialisation) of every weight site.
        self.initial_weights: dict[str, Tensor] = {}
        #: name -> the prior of every weight site.
        self.site_priors: dict[str, _SitePrior] = {}
        for module_name, module in net.named_modules():
            if not isinstance(module, random_types):
                continue
            for param_name, param in list(module.named_parameters(recurse=False)):
                site = f"net.{module_name}.{param_name}"
                self.initial_weights[site] = param.detach().clone()
                pattern = next(
                    (p for p in self.layer_priors if fnmatch.fnmatchcase(site, p)), None
                )
                prior = self.prior if pattern is None else self.layer_priors[pattern]
                self.site_priors[site] = _SitePrior(prior, param.shape)
                # The weight is a random variable: the plain network keeps no value for it.
                module.register_parameter(param_name, None)
        #: The plain network; its remaining parameters (BatchNorm's) are point estimates.
        self.net = net
        for pattern in self.layer_priors:
            if not any(fnmatch.fnmatchcase(site, pattern) for site in self.site_priors):
                raise InvalidInputError(
                    f"layer prior pattern {pattern!r} matches no weight site: the sites are "
                    f"named like {example_sites(self.site_priors)}"
                )

    @property
    def weight_sites(self) -> dict[str, torch.Size]:
        """Name and shape of every weight sample site, in the order the network draws them."""
        return {name: value.shape for name, value in self.initial_weights.items()}

    def prior_distribution(self, site: str):
        """The prior of weight site ``site`` (events over the whole tensor), as the model
        draws it (``layer_priors`` applied)."""
        return self.site_priors[site](None)

    def prior_weighting(self) -> contextlib.AbstractContextManager:
        """The effect that applies ``temperature`` to the weight sites (guides use it too)."""
        if self.temperature == 0:
            return poutine.mask(mask=False)
        return poutine.scale(scale=self.temperature)

    def sample_weights(self) -> dict[str, Tensor]:
        """Draw every weight site from its prior (or, under a guide's replay, take the guide's
        draw), inside :meth:`prior_weighting`. One draw per call: a batch of weights (from
        ``Predictive(parallel=True)`` or ``vectorize_particles=True``) is refused, as the
        convolutions cannot take it."""
        with self.prior_weighting():
            weights = {site: pyro.sample(site, self.prior_distribution(site))
                       for site in self.site_priors}
        for site, value in weights.items():
            if value.shape != self.site_priors[site].shape:
                raise InvalidInputError(
                    f"weight site {site} got a batch of shape {tuple(value.shape)}, not one "
                    f"draw of {tuple(self.site_priors[site].shape)}: the model renders one "
                    "weight sample at a time; use Predictive(..., parallel=False) and "
                    "vectorize_particles=False, or pyrodip.predict"
                )
        return weights

    def render(
        self, weights: dict[str, Tensor] | None = None, jitter: bool = False,
        noise: Tensor | None = None, net_input: Tensor | None = None,
    ) -> tuple[Tensor, Tensor | None]:
        """One pass of the network with ``weights`` (site name -> value; drawn by
        :meth:`sample_weights` when None): the image `(1, C, H, W)` in (0, 1) and, for a
        heteroscedastic likelihood, the per-pixel log-variance (else None). The input is
        ``net_input`` when given, else :meth:`network_input` (``jitter``, ``noise``)."""
        if weights is None:
            weights = self.sample_weights()
        z = self.network_input(jitter, noise) if net_input is None else net_input
        values = {site[4:]: value for site, value in weights.items()}  # strip "net."
        out = functional_call(self.net, values, (z,))
        channels = self.image_shape[0]
        image = torch.sigmoid(out[:, :channels])
        log_variance = out[:, channels:] if self.likelihood.heteroscedastic else None
        return image, log_variance

    def network_input(self, jitter: bool = False, noise: Tensor | None = None) -> Tensor:
        """The network's input: z (the observation, with ``sure``), plus ``self.jitter``
        times ``noise`` (standard normal, shaped like z; drawn when None) if ``jitter``."""
        z = self.z
        if jitter and self.jitter > 0:
            z = z + self.jitter * (torch.randn_like(z) if noise is None else noise)
        return z

    def render_fit(
        self, weights: dict[str, Tensor], noise: Tensor | None = None,
        probe: Tensor | None = None,
    ) -> tuple[Tensor, Tensor | None, Tensor | None]:
        """What a fitting step renders, in both engines: :meth:`render` (jittered while
        training) and, with ``sure``, the divergence of the image in the input from a second
        pass at the same weights and jitter (``probe``: its b, drawn when None), else None."""
        z = self.network_input(self.training, noise)
        image, log_variance = self.render(weights, net_input=z)
        divergence = None
        if self.sure is not None:
            divergence = self.sure(lambda x: self.render(weights, net_input=x)[0], z, image,
                                   probe)
        return image, log_variance, divergence

    def forward(self, observation: Tensor | None = None) -> Tensor:
        """The Pyro model: draw the weights, render the image, observe A(image).

        Args:
            observation: y with a leading batch dim of 1, a `(1, C, H', W')` tensor shaped
                like A(x); None draws it.

        Returns:
            The rendered image, a `(1, C, H, W)` tensor, also kept (detached) as
            ``last_image`` for progress tracking.
        """
        image, log_variance, divergence = self.render_fit(self.sample_weights())
        self.last_image = image.detach()
        mask = getattr(self.operator, "observed_mask", None)
        self.likelihood(self.operator(image), observation, log_variance, mask=mask)
        if self.image_prior is not None:
            pyro.factor("image_prior", self.image_prior.log_density(image))
        if divergence is not None:
            pyro.factor("sure_divergence", -divergence)
        return image


def example_sites(sites) -> str:
    """A few of the site names in ``sites``, for error messages."""
    names = list(sites)
    shown = names if len(names) <= 4 else [*names[:2], "...", *names[-2:]]
    return ", ".join(shown)
