"""Priors on the rendered image, beside the weight prior: an unnormalised log-density of the
image x that the model adds to its log joint (``pyro.factor("image_prior", ...)``) and the
fast engine to its loss, so that the fit maximises

    log p(y | A(x)) + log p_image(x) - T KL(q(w) || p(w)).

The image prior is weighed against the likelihood, not tempered by T: ``tv`` with weight
``lam`` is the term of the classical MAP of total-variation denoising,
``||y - x||^2 / (2 sigma^2) + lam TV(x)``, so scikit-image's
``denoise_tv_chambolle(weight=w)`` corresponds to ``lam = w / sigma^2``.

================  =============================================================
name              log p_image(x) (summed over channels)
================  =============================================================
``none``          no image prior (the default)
``tv``            -``tv_weight`` x the isotropic total variation of x:
                  the sum over pixels of ``sqrt(dx^2 + dy^2 + eps)``, forward
                  differences, zero across the last row and column
``red``           regularisation by denoising (Romano, Elad, Milanfar 2017):
                  the gradient ``-red_weight (x - D(x))`` with D a classical
                  denoiser (``red_denoiser``, of strength ``red_sigma``) applied
                  to the rendered image every ``red_every`` steps; the value
                  is ``-red_weight / 2 ||x - D(x)||^2`` with D(x) held fixed
================  =============================================================

``red`` runs its denoiser on the CPU between steps, so it cannot be batched
(:func:`pyrodip.fit_batch`) or captured (``capture``).

>>> import torch
>>> step = torch.zeros(1, 1, 4, 4)
>>> step[..., 2:] = 1.0            # a vertical edge of height 1 across 4 rows
>>> round(float(TotalVariation(weight=2.0).log_density(step)), 2)
-8.0

Add your own with ``IMAGE_PRIORS.register("name", options=...)`` on an :class:`ImagePrior`
subclass whose ``from_settings`` reads the run settings its options declare.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from ..physics.baselines import DENOISERS
from ..registry import Registry
from ..settings import Option
from ..validation import choice, positive, positive_int, positive_setting

__all__ = ["IMAGE_PRIORS", "ImagePrior", "RegularizationByDenoising", "TotalVariation",
           "make_image_prior"]

IMAGE_PRIORS: Registry[type[ImagePrior]] = Registry("image prior")
"""Image-prior classes by name; the run setting ``image_prior`` names one."""

#: The weights' defaults: the best of a small grid on the tuning images (the second X-ray and
#: OCT images, Gaussian noise of std 0.1 clipped, 128 px; ``experiments/image_prior_study.py``).
DEFAULT_TV_WEIGHT = 1.0
DEFAULT_RED_WEIGHT = 30.0
DEFAULT_RED_SIGMA = 0.1
#: Added under the square root of the total variation, so that its gradient stays finite where
#: the image is flat.
TV_EPS = 1e-8


class ImagePrior(nn.Module):
    """An unnormalised log-density of the image; :meth:`from_settings` builds it from a run's
    settings (None: no image prior). ``batchable``: whether fits with it can run as one
    batched computation (a pure function of the image, without state between steps)."""

    batchable = True

    @classmethod
    def from_settings(cls, settings: Any) -> ImagePrior | None:
        raise NotImplementedError

    def log_density(self, image: Tensor) -> Tensor:
        """log p_image(image) up to a constant, for an image `(1, C, H, W)`: a scalar."""
        raise NotImplementedError

    def spec(self) -> str:
        """The prior's name and numbers, as results record it."""
        raise NotImplementedError


@IMAGE_PRIORS.register("none")
class NoImagePrior(ImagePrior):
    """No image prior: the model has only its weight prior."""

    @classmethod
    def from_settings(cls, settings: Any) -> None:
        return None


@IMAGE_PRIORS.register("tv", options=(
    Option("tv_weight", float, DEFAULT_TV_WEIGHT, "tv: the weight lam of the image's total "
           "variation (-lam TV(x) in the log joint, beside the likelihood)",
           check=positive_setting),
))
class TotalVariation(ImagePrior):
    """``-weight * TV(x)``, the isotropic total variation (see the module docstring)."""

    def __init__(self, weight: float) -> None:
        super().__init__()
        self.weight = positive("tv_weight", weight)

    @classmethod
    def from_settings(cls, settings: Any) -> TotalVariation:
        return cls(settings.tv_weight)

    def log_density(self, image: Tensor) -> Tensor:
        dx = torch.diff(image, dim=-1, append=image[..., -1:])
        dy = torch.diff(image, dim=-2, append=image[..., -1:, :])
        return -self.weight * torch.sqrt(dx * dx + dy * dy + TV_EPS).sum()

    def spec(self) -> str:
        return f"tv:{self.weight:g}"


@IMAGE_PRIORS.register("red", options=(
    Option("red_weight", float, DEFAULT_RED_WEIGHT, "red: the weight lam of the denoiser's "
           "pull, the gradient -lam (x - D(x))", check=positive_setting),
    Option("red_sigma", float, DEFAULT_RED_SIGMA, "red: the noise std the denoiser D is run for",
           check=positive_setting),
    Option("red_denoiser", str, "bm3d", "red: the classical denoiser D", choices=DENOISERS),
    Option("red_every", int, 50, "red: steps between two runs of the denoiser",
           check=positive_int),
))
class RegularizationByDenoising(ImagePrior):
    """RED: ``-weight / 2 ||x - D(x)||^2`` with D(x) (``denoiser`` at std ``sigma``) computed
    on the rendered image every ``every`` calls and held fixed between, so the gradient is
    RED's ``-weight (x - D(x))``. The denoised image and the call count (a Python int, so a
    step does not wait for the device to read it) are the module's extra state: a checkpoint
    keeps them, a resumed fit runs D when the uninterrupted one would."""

    batchable = False

    def __init__(self, weight: float, sigma: float, denoiser: str = "bm3d",
                 every: int = 50) -> None:
        super().__init__()
        self.weight = positive("red_weight", weight)
        self.sigma = positive("red_sigma", sigma)
        self.denoiser = str(choice("red_denoiser", denoiser, DENOISERS))
        self.every = positive_int("red_every", every)
        self.denoised: Tensor | None = None
        self.calls = 0

    @classmethod
    def from_settings(cls, settings: Any) -> RegularizationByDenoising:
        return cls(settings.red_weight, settings.red_sigma, settings.red_denoiser,
                   settings.red_every)

    def log_density(self, image: Tensor) -> Tensor:
        if self.denoised is None or self.denoised.shape != image.shape or \
                self.calls % self.every == 0:
            clean = DENOISERS[self.denoiser](image[0].detach().cpu().numpy(), self.sigma)
            self.denoised = torch.from_numpy(clean)[None]
        self.denoised = self.denoised.to(image)  # a no-op once it is on the image's device
        self.calls += 1
        return -0.5 * self.weight * ((image - self.denoised) ** 2).sum()

    def spec(self) -> str:
        return f"red:{self.weight:g}:{self.denoiser}:{self.sigma:g}"

    def get_extra_state(self) -> dict:
        return {"calls": self.calls, "denoised": self.denoised}

    def set_extra_state(self, state: dict) -> None:
        self.calls, self.denoised = int(state["calls"]), state["denoised"]


def make_image_prior(name: str, settings: Any) -> ImagePrior | None:
    """The image prior ``name`` (:data:`IMAGE_PRIORS`) built from the run ``settings`` (a
    :class:`~pyrodip.run.config.RunConfig` or any object with the settings it declares as
    attributes); None for ``none``.

    >>> from types import SimpleNamespace
    >>> make_image_prior("tv", SimpleNamespace(tv_weight=0.5)).spec()
    'tv:0.5'
    """
    return IMAGE_PRIORS[name].from_settings(settings)
