"""The posterior predictive: images drawn from weight samples of the guide, summarised per pixel.

Posterior images are drawn in one place, :func:`draw_images`: where the fast engine supports
the model and guide (:func:`pyrodip.infer.elbo.supports`), weights are drawn as the guide draws
them and rendered in batches with ``torch.func.vmap`` (``Predictive(parallel=True)`` cannot
batch weights through ``F.conv2d``); otherwise one at a time through Pyro (guide traced, model
replayed). Images are summarised on the fly with Welford's algorithm, so memory stays at a few
batches of images whatever the number of samples, unless ``keep_samples=True``.

- ``mean``: the predictive mean image.
- ``std_epistemic``: the standard deviation of the image across weight samples.
- ``std_aleatoric``: the noise the likelihood predicts, sqrt(E[sigma^2]) per pixel (only for a
  heteroscedastic likelihood, else None).
- ``std_total``: sqrt(epistemic variance + aleatoric variance).
- ``measured_mean``, ``measured_std``: the same summaries of the posterior images as the
  likelihood sees them, A(image) in the noise's additive domain (:func:`measure`), for scoring
  held-out observed values (:mod:`pyrodip.infer.recalibration`).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pyro
import torch
from pyro import poutine
from torch import Tensor
from torch.func import vmap

from ..errors import InvalidInputError
from .elbo import FastELBO, unsupported_reason

#: Images rendered at once by :func:`draw_images` (one vmap call) on a GPU. On a CPU one at a
#: time is faster (measured at 128 x 128, one thread: 25 images in 0.57 s one by one, 1.27 s
#: in batches of 8).
GPU_BATCH = 8


@dataclass
class Prediction:
    """Per-pixel predictive summaries of ``num_samples`` posterior images.

    Attributes:
        mean, std_epistemic, std_total: `(C, H, W)` tensors, as the module docstring says.
        std_aleatoric: a `(C, H, W)` tensor for a heteroscedastic likelihood, else None.
        samples: the posterior images, an `(N, C, H, W)` tensor (``keep_samples``), or None.
        measured_mean, measured_std: `(C, H', W')` tensors shaped like the observation y, or
            None.
        std_between: for an ensemble's mixture, the std of its members' means (uncalibrated,
            a part of ``std_epistemic``), a `(C, H, W)` tensor; else None.
    """

    mean: Tensor
    std_epistemic: Tensor
    std_aleatoric: Tensor | None
    std_total: Tensor
    num_samples: int
    samples: Tensor | None = None
    measured_mean: Tensor | None = None
    measured_std: Tensor | None = None
    std_total_raw: Tensor | None = None  # before recalibration (pyrodip.infer.recalibration)
    std_between: Tensor | None = None  # an ensemble's spread of member means (pyrodip.run.ensemble)


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
        self.measured: RunningMoments | None = None

    @torch.no_grad()
    def add(
        self, image: Tensor, noise_variance: Tensor | None = None, measured: Tensor | None = None
    ) -> None:
        """Add one image (C, H, W) and, for a heteroscedastic likelihood, its noise variance;
        ``measured``: the image as the likelihood sees it (:func:`measure`)."""
        self.count += 1
        if self.mean is None:
            self.mean, self.m2 = image.clone(), torch.zeros_like(image)
        else:
            delta = image - self.mean
            self.mean += delta / self.count
            self.m2 += delta * (image - self.mean)
        if measured is not None:
            if self.measured is None:
                self.measured = RunningMoments()
            self.measured.add(measured)
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
        measured = self.measured.prediction() if self.measured is not None else None
        return Prediction(
            mean=self.mean,
            std_epistemic=epistemic_var.sqrt(),
            std_aleatoric=aleatoric_var.sqrt() if aleatoric_var is not None else None,
            std_total=total_var.sqrt(),
            num_samples=count,
            samples=torch.stack(self.kept) if self.kept is not None else None,
            measured_mean=measured.mean if measured is not None else None,
            measured_std=measured.std_epistemic if measured is not None else None,
        )

    def state_dict(self) -> dict:
        """The running sums (for checkpoints)."""
        state = vars(self).copy()
        if self.measured is not None:
            state["measured"] = self.measured.state_dict()
        return state

    def load_state_dict(self, state: dict) -> None:
        state = dict(state)
        measured = state.pop("measured", None)
        vars(self).update(state)
        self.measured = None
        if measured is not None:
            self.measured = RunningMoments()
            self.measured.load_state_dict(measured)


def measure(model, image: Tensor) -> Tensor:
    """A posterior image (C, H, W) as ``model``'s likelihood sees it: A(image) in the noise's
    additive domain (:meth:`pyrodip.bayes.likelihoods.Likelihood.additive`)."""
    return model.likelihood.additive(model.operator(image[None]))[0]


@torch.no_grad()
def draw_images(
    model, guide, num: int, batch: int | None = None
) -> Iterator[tuple[Tensor, Tensor | None]]:
    """``num`` posterior images, each (image (C, H, W), noise variance (C, H, W) or None), from
    weights drawn from ``guide`` and rendered by ``model`` without input jitter, ``batch`` at
    a time where the fast engine supports the pair (else one at a time through Pyro).
    ``batch`` None: :data:`GPU_BATCH` on a GPU, 1 on a CPU.

    The weights are those the guide draws for the same seed, in either case (dropout masks
    differ between batched and one-by-one rendering)."""
    if batch is None:
        batch = GPU_BATCH if model.z.device.type == "cuda" else 1
    was_training = model.training
    model.train(False)
    try:
        if unsupported_reason(model, guide) is not None:
            for _ in range(num):
                with pyro.get_param_store().scope():  # no parameter kept, none resurrected
                    trace = poutine.trace(guide).get_trace()
                with poutine.replay(trace=trace):
                    yield _unbatched(*model.render(jitter=False))
            return
        elbo = FastELBO(model, guide, checked=True)
        variational = elbo.variational()
        render = vmap(lambda weights: _tensors(model.render(weights)), randomness="different")
        for first in range(0, num, batch):
            draws = [elbo.draw(variational) for _ in range(min(batch, num - first))]
            if len(draws) == 1:
                images, log_variances = model.render(draws[0])
            else:
                stacked = {site: torch.stack([d[site] for d in draws]) for site in draws[0]}
                images, log_variances = _tensors(render(stacked))
                images = images.flatten(0, 1)
                if log_variances is not None:
                    log_variances = log_variances.flatten(0, 1)
            for i in range(len(draws)):
                yield _unbatched(images[i : i + 1],
                                 None if log_variances is None else log_variances[i : i + 1])
    finally:
        model.train(was_training)


def _tensors(pair):
    """(image, None) <-> image, (image, log_variance) <-> itself: vmap returns tensors only."""
    if isinstance(pair, Tensor):
        return pair, None
    return pair[0] if pair[1] is None else pair


def _unbatched(image: Tensor, log_variance: Tensor | None) -> tuple[Tensor, Tensor | None]:
    return image[0], None if log_variance is None else log_variance[0].exp()


@torch.no_grad()
def predict(
    model, guide, num_samples: int = 25, keep_samples: bool = False, batch: int | None = None
) -> Prediction:
    """Summarise ``num_samples`` images rendered with weights drawn from ``guide`` (see
    :func:`draw_images`).

    The sample standard deviation uses ``num_samples - 1`` degrees of freedom (0 for one
    sample).

    Returns:
        A :class:`Prediction` of `(C, H, W)` tensors (the model's image shape).

    Example::

        prediction = predict(model, guide, num_samples=25)
        prediction.mean.shape  # (C, H, W)
    """
    if num_samples < 1:
        raise InvalidInputError(f"samples must be a positive integer, got {num_samples}")
    moments = RunningMoments(keep_samples)
    for image, noise_variance in draw_images(model, guide, num_samples, batch):
        moments.add(image, noise_variance, measure(model, image))
    return moments.prediction()
