"""The posterior predictive: images drawn from weight samples of the guide, summarised per pixel.

Samples are drawn one at a time (``Predictive(parallel=True)`` cannot batch weights through
``F.conv2d``; where :mod:`pyrodip.infer.elbo` supports the model and guide, without Pyro's
tracing) and summarised on the fly with Welford's algorithm, so memory stays at a few
images whatever the number of samples, unless ``keep_samples=True``.

- ``mean``: the predictive mean image.
- ``std_epistemic``: the standard deviation of the image across weight samples.
- ``std_aleatoric``: the noise the likelihood predicts, sqrt(E[sigma^2]) per pixel (only for a
  heteroscedastic likelihood, else None).
- ``std_total``: sqrt(epistemic variance + aleatoric variance).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from pyro import poutine
from torch import Tensor

from ..errors import InvalidInputError
from .elbo import draw_images, supports


@dataclass
class Prediction:
    """Per-pixel predictive summaries, each shaped (C, H, W)."""

    mean: Tensor
    std_epistemic: Tensor
    std_aleatoric: Tensor | None
    std_total: Tensor
    num_samples: int
    samples: Tensor | None = None


class RunningMoments:
    """Streaming per-pixel mean and variance of images (Welford's algorithm), plus the mean of
    a per-pixel noise variance when one is given.

    >>> moments = RunningMoments()
    >>> for value in (1.0, 2.0, 3.0):
    ...     moments.add(torch.full((1, 2, 2), value))
    >>> float(moments.prediction().std_epistemic[0, 0, 0])
    1.0
    """

    def __init__(self, keep_samples: bool = False) -> None:
        self.count = 0
        self.mean: Tensor | None = None
        self.m2: Tensor | None = None
        self.noise_var: Tensor | None = None
        self.kept: list[Tensor] | None = [] if keep_samples else None

    @torch.no_grad()
    def add(self, image: Tensor, noise_variance: Tensor | None = None) -> None:
        """Add one image (C, H, W) and, for a heteroscedastic likelihood, its noise variance."""
        self.count += 1
        if self.mean is None:
            self.mean, self.m2 = image.clone(), torch.zeros_like(image)
        else:
            delta = image - self.mean
            self.mean += delta / self.count
            self.m2 += delta * (image - self.mean)
        if noise_variance is not None:
            variance = noise_variance.expand_as(image)
            if self.noise_var is None:
                self.noise_var = variance.clone()
            else:
                self.noise_var += variance
        if self.kept is not None:
            self.kept.append(image.clone())

    def prediction(self) -> Prediction:
        """The summaries of the images added so far (at least one)."""
        if self.count == 0:
            raise InvalidInputError("no posterior samples were collected: fit for more steps")
        count = self.count
        epistemic_var = self.m2 / (count - 1) if count > 1 else torch.zeros_like(self.m2)
        aleatoric_var = self.noise_var / count if self.noise_var is not None else None
        total_var = epistemic_var + (aleatoric_var if aleatoric_var is not None else 0)
        return Prediction(
            mean=self.mean,
            std_epistemic=epistemic_var.sqrt(),
            std_aleatoric=aleatoric_var.sqrt() if aleatoric_var is not None else None,
            std_total=total_var.sqrt(),
            num_samples=count,
            samples=torch.stack(self.kept) if self.kept is not None else None,
        )


@torch.no_grad()
def predict(model, guide, num_samples: int = 25, keep_samples: bool = False) -> Prediction:
    """Summarise ``num_samples`` images rendered with weights drawn from ``guide``.

    The sample standard deviation uses ``num_samples - 1`` degrees of freedom (0 for one
    sample). Where :func:`pyrodip.infer.elbo.supports` the model and guide, the weights are drawn
    without Pyro's tracing (the same draws, at the speed of a plain loop). Example::

        prediction = predict(model, guide, num_samples=25)
        prediction.mean.shape  # (C, H, W)
    """
    if num_samples < 1:
        raise InvalidInputError(f"samples must be a positive integer, got {num_samples}")
    was_training = model.training
    model.train(False)
    moments = RunningMoments(keep_samples)
    try:
        if supports(model, guide):
            images = draw_images(model, guide, num_samples)
        else:
            images = (_pyro_render(model, guide) for _ in range(num_samples))
        for image, log_variance in images:
            moments.add(image[0], log_variance[0].exp() if log_variance is not None else None)
    finally:
        model.train(was_training)
    return moments.prediction()


def _pyro_render(model, guide) -> tuple[Tensor, Tensor | None]:
    """One image from a weight draw of ``guide``, replayed through the Pyro model."""
    with poutine.replay(trace=poutine.trace(guide).get_trace()):
        return model.render(jitter=False)
