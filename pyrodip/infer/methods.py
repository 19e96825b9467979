"""The fitting methods, all on the same network and likelihood, chosen by name.

- ``mfvi``: mean-field variational inference (the paper's method): a Normal per weight, fitted
  by SVI with the closed-form KL, weighted by the posterior temperature.
- ``dip``: plain Deep Image Prior: a point estimate of the weights (MAP guide), no prior.
- ``sgld``: SGLD-DIP (Cheng et al. 2019): the DIP fit with Gaussian noise added to the weights
  after every step; images rendered every ``sample_every`` steps after ``burn_in`` are the
  posterior samples (see :class:`SGLDNoise` for the two variants).
- ``dip-es``: plain DIP that stops itself by ES-WMV (Wang et al. 2023, see
  :mod:`pyrodip.infer.stopping`) and returns the image of its chosen step.
- ``map``: DIP with mfvi's prior and temperature: the posterior's mode (a point estimate, MAP
  guide), the weights' log-prior weighted by T = 0.1. Beside mfvi it separates what the prior
  does from what the posterior's spread does.
- ``mcdropout``: MC-dropout DIP: Dropout2d after each conv of the encoder and decoder, kept on
  at prediction time; AdamW with weight decay 1e-4.
- ``mfvi-paper``: the MIDL 2021 paper's MFVI as its scripts run it: "MSE + beta KL" with
  beta = 1e-6 (a temperature of beta N / (2 sigma^2), :func:`temperature_from_beta`), AdamW
  (decay 0.01 on the means), lr 5e-3, means from N(0, 0.1^2), standard deviations from
  softplus(-3); where the authors' code differs is listed in ``docs/concepts.md``.

The temperature T is the weight of the KL term: the loss is E_q[-log p(y | w)] + T KL(q || p),
the likelihood summed over the observed values; T = 1 is the ELBO, T = 0 drops the prior.

A method is an object: the defaults it gives (guide, ``temperature``, optimiser, weight decay,
dropout, learning rate, the guide's initialisation; each can be overridden in the run config)
and, through :meth:`Method.sampler`, what it does after every optimiser step and how it forms
its posterior predictive (SGLD adds noise and collects images; the others predict from the
guide once the fit ends).

>>> METHODS["mcdropout"].dropout, METHODS["mcdropout"].optimizer
(0.3, 'adamw')
>>> METHODS["sgld"].sampler(steps=100, lr=0.01) is not None
True
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from ..bayes.guides import DEFAULT_INIT_SCALE
from ..bayes.model import DEFAULT_TEMPERATURE
from ..errors import InvalidInputError
from ..registry import Registry
from ..settings import Option, at_least_zero, positive_int
from .predictive import Prediction, RunningMoments, draw_images, measure


@dataclass(frozen=True)
class Method:
    """The defaults a method gives to the settings it leaves to the user."""

    guide: str
    temperature: float  # the KL's weight: 1 = the ELBO, 0 = no prior
    optimizer: str = "adam"
    weight_decay: float = 0.0
    dropout: float = 0.0
    lr: float = 0.01
    init_loc: str = "pytorch"
    init_scale: float = 0.01
    lr_decay: float = 0.0  # anneal the lr over this last fraction of the steps
    average: float = 0.0  # average renders and parameters over this last fraction
    readout: str = "final"  # the returned predictive (pyrodip.infer.averaging.READOUTS)
    beta: float | None = None  # "MSE + beta KL": when set, the temperature follows from it
    calibration: str = "scale"  # how the std is recalibrated (pyrodip.infer.recalibration)
    stop_rule: str = "none"  # early stopping without ground truth (pyrodip.infer.stopping)
    description: str = ""
    loss_is_elbo: bool = False  # whether its loss is a negative ELBO (a study's ELBO column)

    def temperature_for(self, observed_values: int, noise_std: float | None) -> float:
        """The temperature of a fit to ``observed_values`` values with Gaussian noise of std
        ``noise_std``: :attr:`temperature`, or the one that :attr:`beta` implies.

        >>> round(METHODS["mfvi-paper"].temperature_for(128 * 128, 0.1), 4)
        0.8192
        """
        if self.beta is None:
            return self.temperature
        if noise_std is None:
            raise InvalidInputError(
                "this method's beta (\"MSE + beta KL\") needs Gaussian or speckle noise of "
                "known std: use `noise=gaussian`, or give `temperature`"
            )
        return temperature_from_beta(self.beta, observed_values, noise_std)

    def sampler(self, steps: int, lr: float, **options) -> Sampler | None:
        """What runs after each optimiser step of a ``steps``-step fit and collects the
        posterior predictive (None: predict from the guide after the fit)."""
        return None

    def check(self, settings: Any) -> None:
        """Refuse (:class:`~pyrodip.errors.InvalidInputError`) run settings this method cannot
        fit with; ``settings`` is the run's :class:`~pyrodip.run.config.RunConfig`."""

    def shown_default(self, key: str) -> str:
        """The default this method gives to the setting ``key``, as the help shows it.

        >>> METHODS["mfvi-paper"].shown_default("temperature")
        'from beta 1e-06'
        """
        if key == "temperature" and self.beta is not None:
            return f"from beta {self.beta:g}"
        value = getattr(self, key)
        return f"{value:.3g}" if isinstance(value, float) else str(value)


def temperature_from_beta(beta: float, observed_values: int, noise_std: float) -> float:
    """The temperature T at which pyrodip's loss has the minimiser of the MIDL paper's
    ``MSE + beta KL``: T = beta N / (2 sigma^2) (``docs/concepts.md``).

    >>> round(temperature_from_beta(1e-6, 256 * 256, 0.1), 4)
    3.2768
    """
    return beta * observed_values / (2 * noise_std**2)


def temperature_from_nll_criterion(weight: float, observed_values: int) -> float:
    """The temperature T at which pyrodip's loss has the minimiser of "criterion + weight KL",
    the criterion being the follow-up paper's mean(exp(-s) (y - mu)^2 + s) over the N values
    (s the log variance): twice the mean Gaussian NLL, so T = weight N / 2.

    >>> round(temperature_from_nll_criterion(5.7e-7, 256 * 256), 4)
    0.0187
    """
    return weight * observed_values / 2


@dataclass(frozen=True)
class SGLDMethod(Method):
    """SGLD-DIP: noise after every step (:class:`SGLDNoise`), images collected after the
    burn-in. Options of :meth:`sampler` (its declared settings): ``sgld`` (the variant),
    ``burn_in``, ``sample_every``."""

    def sampler(self, steps: int, lr: float, sgld: str = "adam", burn_in: int | None = None,
                sample_every: int = 50, **options) -> Sampler:
        return SGLDSampler(lr, sgld, burn_in_steps(burn_in, steps), sample_every)

    def check(self, settings: Any) -> None:
        """The burn-in must end before the fit does."""
        if settings.burn_in is not None and settings.burn_in >= settings.steps:
            raise InvalidInputError(
                f"burn_in ({settings.burn_in}) must be below steps ({settings.steps}): sgld "
                "collects its samples after the burn-in"
            )


#: mfvi's defaults come from the readout study (docs/concepts.md, "The defaults"): T 0.1, the
#: guide's std starting at 0.01 (a fast rise), the learning rate annealed over the last 30 % of
#: the steps, and the result the mean (and std) of the renders of the last 20 %.
METHODS: Registry[Method] = Registry("method")
METHODS.register("mfvi", Method(
    "meanfield", DEFAULT_TEMPERATURE, init_scale=DEFAULT_INIT_SCALE, lr_decay=0.3, average=0.2,
    readout="renders", description="mean-field variational inference",
    loss_is_elbo=True,
))
METHODS.register("dip", Method(
    "map", 0.0, calibration="none", description="plain DIP (point estimate, no prior)",
))
METHODS.register(
    "sgld", SGLDMethod("map", 0.0, description="SGLD-DIP (noisy DIP steps, averaged samples)"),
    options=[
        Option("sgld", str, "adam", "sgld variant: adam (the papers') or textbook",
               check=lambda name, value: check_variant(value)),
        Option("burn_in", int, None, "sgld: steps before sampling", check=at_least_zero,
               shown_default="min(7000, steps / 2)"),
        Option("sample_every", int, 50, "sgld: steps between posterior samples",
               check=positive_int),
    ],
)
METHODS.register("mcdropout", Method(
    "map", 0.0, optimizer="adamw", weight_decay=1e-4, dropout=0.3, description="MC-dropout DIP",
))
METHODS.register("mfvi-paper", Method(
    "meanfield", 1.0, optimizer="adamw", weight_decay=0.01, lr=5e-3, init_loc="normal:0.1",
    init_scale=math.log1p(math.exp(-3.0)), beta=1e-6,
    description="the MIDL 2021 paper's MFVI (MSE + 1e-6 KL, AdamW, its initialisation)",
))
METHODS.register("dip-es", Method(
    "map", 0.0, calibration="none", stop_rule="wmv",
    description="plain DIP stopped by ES-WMV (no ground truth needed)",
))
METHODS.register("map", Method(
    "map", DEFAULT_TEMPERATURE, calibration="none",
    description="MAP: DIP with mfvi's prior and temperature",
))



def method_defaults(key: str) -> str:
    """The default of the setting ``key`` per method, as the help shows it: the methods that
    differ from the most common default, then that one.

    >>> method_defaults("dropout")
    "the method's: mcdropout 0.3, else 0"
    """
    shown = {name: method.shown_default(key) for name, method in METHODS.items()}
    values = list(shown.values())
    common = max(values, key=values.count)
    others = [f"{name} {value}" for name, value in shown.items() if value != common]
    return f"the method's: {', '.join([*others, f'else {common}'])}"


#: The two SGLD variants (see :class:`SGLDNoise`).
SGLD_VARIANTS = ("adam", "textbook")
#: The papers' SGLD burn-in; shorter fits use half their steps (see :func:`burn_in_steps`).
SGLD_BURN_IN = 7000


def burn_in_steps(burn_in: int | None, steps: int) -> int:
    """The steps before SGLD starts collecting samples: ``burn_in``, or when it is None the
    papers' 7000, capped at half the fit so that a short fit still collects samples.

    >>> burn_in_steps(None, 50000), burn_in_steps(None, 3000), burn_in_steps(100, 3000)
    (7000, 1500, 100)
    """
    return min(SGLD_BURN_IN, steps // 2) if burn_in is None else burn_in


class SGLDNoise:
    """Adds SGLD's Gaussian noise to the weights after each optimiser step.

    - ``variant="adam"`` (the default, the SGLD-DIP papers' code): the optimiser is Adam and
      the noise std is ``2 * lr``. This is what the published SGLD-DIP results used; it is not
      a sampler of the posterior in the textbook sense, but it mixes at DIP's learning rates.
    - ``variant="textbook"``: Langevin dynamics: plain SGD steps on the loss (the negative log
      posterior, up to the temperature) and noise std ``sqrt(2 * lr)``. With DIP's likelihood the
      loss gradient is large, so it needs learning rates around 1e-6 to stay stable.

    >>> weights = [torch.zeros(10000)]
    >>> SGLDNoise(weights, lr=0.01, variant="adam")()
    >>> round(float(weights[0].std()), 2)
    0.02
    """

    def __init__(self, parameters: list[Tensor], lr: float, variant: str = "adam") -> None:
        check_variant(variant)
        self.parameters = list(parameters)
        self.variant = variant
        self.std = 2 * lr if variant == "adam" else math.sqrt(2 * lr)

    @torch.no_grad()
    def __call__(self) -> None:
        for param in self.parameters:
            param.add_(torch.randn_like(param), alpha=self.std)


def check_variant(variant: str) -> None:
    """Refuse an SGLD variant but :data:`SGLD_VARIANTS`."""
    if variant not in SGLD_VARIANTS:
        raise InvalidInputError(
            f"unknown SGLD variant {variant!r}: choose one of {', '.join(SGLD_VARIANTS)}"
        )


class Sampler:
    """A method's work between optimiser steps: :meth:`after_step` runs after each step
    (``step`` counts from 0), :meth:`prediction` gives the posterior predictive at the end.
    Its state (:meth:`state_dict`) is saved in checkpoints."""

    def start(self, model, guide) -> None:
        """Bind to the model and guide of the fit (before the first step)."""

    def after_step(self, step: int) -> None:
        raise NotImplementedError

    def prediction(self) -> Prediction:
        raise NotImplementedError

    def state_dict(self) -> dict | None:
        return None

    def load_state_dict(self, state: dict | None) -> None:
        pass


class SGLDSampler(Sampler):
    """SGLD noise on the weights' locations after every step; after ``burn_in`` steps, an
    image from the current weights every ``sample_every`` steps, summarised as they come."""

    def __init__(self, lr: float, variant: str, burn_in: int, sample_every: int) -> None:
        check_variant(variant)  # refused before the fit starts
        self.lr, self.variant = lr, variant
        self.burn_in, self.sample_every = burn_in, sample_every
        self.moments = RunningMoments()

    def start(self, model, guide) -> None:
        self.model, self.guide = model, guide
        # Views of the guide's flat locations, site by site: the noise is drawn per site.
        self.noise = SGLDNoise([guide.loc(site) for site in guide.sites], self.lr, self.variant)

    def after_step(self, step: int) -> None:
        self.noise()
        if step >= self.burn_in and (step - self.burn_in) % self.sample_every == 0:
            for image, noise_variance in draw_images(self.model, self.guide, 1):
                self.moments.add(image, noise_variance, measure(self.model, image))

    def prediction(self) -> Prediction:
        return self.moments.prediction()

    def state_dict(self) -> dict:
        return self.moments.state_dict()

    def load_state_dict(self, state: dict | None) -> None:
        self.moments.load_state_dict(state)
