"""The posterior predictive: images drawn from weight samples of the guide, summarised per pixel.

Samples are drawn one at a time (``Predictive(parallel=True)`` cannot batch weights through
``F.conv2d``) and summarised on the fly with Welford's algorithm, so memory stays at a few
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

from .errors import InvalidInputError


@dataclass
class Prediction:
    """Per-pixel predictive summaries, each shaped (C, H, W)."""

    mean: Tensor
    std_epistemic: Tensor
    std_aleatoric: Tensor | None
    std_total: Tensor
    num_samples: int
    samples: Tensor | None = None


@torch.no_grad()
def predict(model, guide, num_samples: int = 25, keep_samples: bool = False) -> Prediction:
    """Summarise ``num_samples`` images rendered with weights drawn from ``guide``.

    The sample standard deviation uses ``num_samples - 1`` degrees of freedom (0 for one
    sample). Example::

        prediction = predict(model, guide, num_samples=25)
        prediction.mean.shape  # (C, H, W)
    """
    if num_samples < 1:
        raise InvalidInputError(f"samples must be a positive integer, got {num_samples}")
    was_training = model.training
    model.train(False)
    try:
        count, mean, m2, noise_var = 0, None, None, None
        kept = []
        for _ in range(num_samples):
            weights = poutine.trace(guide).get_trace()
            with poutine.replay(trace=weights):
                image, log_variance = model.render(jitter=False)
            image = image[0]
            count += 1
            if mean is None:
                mean, m2 = image.clone(), torch.zeros_like(image)
            else:
                delta = image - mean
                mean += delta / count
                m2 += delta * (image - mean)
            if log_variance is not None:
                variance = log_variance[0].exp().expand_as(image)
                noise_var = variance.clone() if noise_var is None else noise_var + variance
            if keep_samples:
                kept.append(image.clone())
    finally:
        model.train(was_training)
    epistemic_var = m2 / (count - 1) if count > 1 else torch.zeros_like(m2)
    aleatoric_var = noise_var / count if noise_var is not None else None
    total_var = epistemic_var + (aleatoric_var if aleatoric_var is not None else 0)
    return Prediction(
        mean=mean,
        std_epistemic=epistemic_var.sqrt(),
        std_aleatoric=aleatoric_var.sqrt() if aleatoric_var is not None else None,
        std_total=total_var.sqrt(),
        num_samples=count,
        samples=torch.stack(kept) if keep_samples else None,
    )
