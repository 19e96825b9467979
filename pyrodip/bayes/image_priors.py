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
================  =============================================================

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

from ..registry import Registry
from ..settings import Option
from ..validation import positive, positive_setting

__all__ = ["IMAGE_PRIORS", "ImagePrior", "TotalVariation", "make_image_prior"]

IMAGE_PRIORS: Registry[type[ImagePrior]] = Registry("image prior")
"""Image-prior classes by name; the run setting ``image_prior`` names one."""

#: Added under the square root of the total variation, so that its gradient stays finite where
#: the image is flat.
TV_EPS = 1e-8


class ImagePrior(nn.Module):
    """An unnormalised log-density of the image; :meth:`from_settings` builds it from a run's
    settings (None: no image prior)."""

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
    Option("tv_weight", float, 3.0, "tv: the weight lam of the image's total variation "
           "(-lam TV(x) in the log joint, beside the likelihood)", check=positive_setting),
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


def make_image_prior(name: str, settings: Any) -> ImagePrior | None:
    """The image prior ``name`` (:data:`IMAGE_PRIORS`) built from the run ``settings`` (a
    :class:`~pyrodip.run.config.RunConfig` or any object with the settings it declares as
    attributes); None for ``none``.

    >>> from types import SimpleNamespace
    >>> make_image_prior("tv", SimpleNamespace(tv_weight=0.5)).spec()
    'tv:0.5'
    """
    return IMAGE_PRIORS[name].from_settings(settings)
