"""The fitting methods, all on the same network and likelihood, chosen by name.

- ``mfvi``: mean-field variational inference (the paper's method): a Normal per weight, fitted
  by SVI with the closed-form KL, tempered by ``kl_weight``.
- ``dip``: plain Deep Image Prior: a point estimate of the weights (MAP guide), no prior.
- ``sgld``: SGLD-DIP (Cheng et al. 2019): the DIP fit with Gaussian noise added to the weights
  after every step; images rendered every ``sample_every`` steps after ``burn_in`` are the
  posterior samples (see :class:`SGLDNoise` for the two variants).
- ``mcdropout``: MC-dropout DIP: Dropout2d after each conv of the encoder and decoder, kept on
  at prediction time; AdamW with weight decay 1e-4.

A method only sets defaults: every one of them can be overridden in :class:`RunConfig`.

>>> METHODS["mcdropout"].dropout, METHODS["mcdropout"].optimizer
(0.3, 'adamw')
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..errors import InvalidInputError
from ..registry import Registry


@dataclass(frozen=True)
class Method:
    """The defaults a method gives to the settings it leaves to the user."""

    guide: str
    kl_weight: float
    optimizer: str = "adam"
    weight_decay: float = 0.0
    dropout: float = 0.0
    description: str = ""


#: mfvi's kl_weight 0.3 is a tempered posterior: on the CT demo it kept the predictive mean
#: about 2 dB above w = 1 (see docs/concepts.md).
METHODS: Registry[Method] = Registry("method")
METHODS.register("mfvi", Method("meanfield", 0.3, description="mean-field variational inference"))
METHODS.register("dip", Method("map", 0.0, description="plain DIP (point estimate, no prior)"))
METHODS.register(
    "sgld", Method("map", 0.0, description="SGLD-DIP (noisy DIP steps, averaged samples)")
)
METHODS.register("mcdropout", Method(
    "map", 0.0, optimizer="adamw", weight_decay=1e-4, dropout=0.3, description="MC-dropout DIP",
))

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
      posterior, up to ``kl_weight``) and noise std ``sqrt(2 * lr)``. With DIP's likelihood the
      loss gradient is large, so it needs learning rates around 1e-6 to stay stable.

    >>> weights = [torch.zeros(10000)]
    >>> SGLDNoise(weights, lr=0.01, variant="adam")()
    >>> round(float(weights[0].std()), 2)
    0.02
    """

    def __init__(self, parameters, lr: float, variant: str = "adam") -> None:
        if variant not in SGLD_VARIANTS:
            raise InvalidInputError(
                f"unknown SGLD variant {variant!r}: choose one of {', '.join(SGLD_VARIANTS)}"
            )
        self.parameters = list(parameters)
        self.variant = variant
        self.std = 2 * lr if variant == "adam" else math.sqrt(2 * lr)

    @torch.no_grad()
    def __call__(self) -> None:
        for param in self.parameters:
            param.add_(torch.randn_like(param), alpha=self.std)
