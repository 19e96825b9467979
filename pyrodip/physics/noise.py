"""Noise models: simulate an observation y from a clean A(x).

* :class:`GaussianNoise`: y = x + std * N(0, 1), additive (X-ray, OCT in the paper).
* :class:`SpeckleNoise`: y = exp(log(max(x, LOG_FLOOR)) + std * N(0, 1)), multiplicative
  log-normal speckle (ultrasound), with ``LOG_FLOOR`` = 1e-3.
* :class:`PoissonNoise`: y = Poisson(peak * max(x, 0)) / peak, photon counts (X-ray, CT).

Every model draws its randomness from an optional ``torch.Generator`` (on the generator's
device, then moved to the clean image's, so a seeded CPU generator gives the same noise on
any device) and is also callable: ``noise(clean, generator)``. The likelihood that matches a
noise model is built by :func:`pyrodip.bayes.noise_likelihoods.noise_likelihood`.

>>> noise = make_noise("speckle", 0.2)
>>> g = torch.Generator().manual_seed(0)
>>> noisy = noise.sample(torch.full((1, 64, 64), 0.5), generator=g)
>>> bool((noisy > 0).all()), noise.level, noise.level_setting
(True, 0.2, 'noise_std')
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from ..errors import InvalidInputError
from ..registry import Registry
from ..validation import positive

__all__ = [
    "LOG_FLOOR",
    "NOISE_MODELS",
    "GaussianNoise",
    "NoiseModel",
    "PoissonNoise",
    "SpeckleNoise",
    "make_noise",
]

LOG_FLOOR = 1e-3
"""Smallest image value taken to the log domain (speckle): A(x) is clamped to it."""


def _check_clean(clean: Tensor) -> None:
    if not isinstance(clean, Tensor) or not torch.is_floating_point(clean):
        kind = clean.dtype if isinstance(clean, Tensor) else type(clean).__name__
        raise InvalidInputError(
            f"the clean image must be a floating-point tensor, got {kind}: convert it with .float()"
        )


def _device(clean: Tensor, generator: torch.Generator | None) -> torch.device:
    """Where to draw: the generator's device, else the clean image's."""
    return generator.device if generator is not None else clean.device


class NoiseModel:
    """Base class: ``sample`` simulates y from A(x); ``level`` is the noise level, given by the
    run setting :attr:`level_setting`.

    ``noise(clean, generator)`` (or ``sample``) takes A(x), a tensor of any shape such as
    `(C, H, W)` or `(B, C, H, W)`, and returns y, a tensor of the same shape.
    """

    name: ClassVar[str]
    #: The run setting (:class:`pyrodip.run.config.RunConfig`) that gives the level.
    level_setting: ClassVar[str] = "noise_std"
    #: The level a simulation takes when the settings give none.
    default_level: ClassVar[float] = 0.1

    @classmethod
    def scaled_level(cls, level: float, scale: float) -> float:
        """The level, given for images in [0, 1], for images ``scale`` times larger (CT
        sinograms: their largest projection); unchanged here (multiplicative noise)."""
        return level

    @property
    def level(self) -> float:
        """The noise level: the std (Gaussian, speckle) or the peak (Poisson)."""
        raise NotImplementedError

    def sample(self, clean: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """A noisy observation of ``clean``, e.g. a `(C, H, W)` tensor: same shape, dtype and
        device."""
        raise NotImplementedError

    def __call__(self, clean: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """:meth:`sample`: y, shaped like ``clean`` (e.g. `(C, H, W)`)."""
        return self.sample(clean, generator)


@dataclass(frozen=True)
class GaussianNoise(NoiseModel):
    """y = x + std * N(0, 1), independent per pixel; not clipped. x and y: tensors of one
    shape, e.g. `(C, H, W)`.

    >>> GaussianNoise(0.1).level, GaussianNoise.level_setting
    (0.1, 'noise_std')
    """

    std: float
    name: ClassVar[str] = "gaussian"

    def __post_init__(self) -> None:
        object.__setattr__(self, "std", positive("noise_std", self.std))

    @property
    def level(self) -> float:
        return self.std

    @classmethod
    def scaled_level(cls, level: float, scale: float) -> float:
        """The std scales with the image: ``level * scale``."""
        return level * scale

    def sample(self, clean: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """``clean + std * N(0, 1)``, not clipped (it may leave [0, 1]: that is the
        measurement model); see the module docstring for where the noise is drawn.

        >>> g = torch.Generator().manual_seed(0)
        >>> noisy = GaussianNoise(0.1).sample(torch.zeros(1, 64, 64), generator=g)
        >>> round(float(noisy.std()), 2)
        0.1
        """
        _check_clean(clean)
        device = _device(clean, generator)
        noise = torch.randn(clean.shape, generator=generator, dtype=clean.dtype, device=device)
        return clean + self.std * noise.to(clean.device)


@dataclass(frozen=True)
class SpeckleNoise(NoiseModel):
    """y = exp(log(max(x, LOG_FLOOR)) + std * N(0, 1)): log-normal speckle, y > 0. x and y:
    tensors of one shape, e.g. `(C, H, W)`.

    ``std`` is the std of the noise in the log domain; ``LOG_FLOOR`` (1e-3) keeps black pixels
    finite there.
    """

    std: float
    name: ClassVar[str] = "speckle"

    def __post_init__(self) -> None:
        object.__setattr__(self, "std", positive("noise_std", self.std))

    @property
    def level(self) -> float:
        return self.std

    def sample(self, clean: Tensor, generator: torch.Generator | None = None) -> Tensor:
        _check_clean(clean)
        device = _device(clean, generator)
        noise = torch.randn(clean.shape, generator=generator, dtype=clean.dtype, device=device)
        log_clean = torch.log(clean.clamp_min(LOG_FLOOR))
        return torch.exp(log_clean + self.std * noise.to(clean.device))


@dataclass(frozen=True)
class PoissonNoise(NoiseModel):
    """y = Poisson(peak * max(x, 0)) / peak: photon counts, mean x and variance x / peak. x and
    y: tensors of one shape, e.g. `(C, H, W)`.

    ``peak`` is the mean photon count of an image value of 1 (larger = less noise).

    >>> g = torch.Generator().manual_seed(0)
    >>> counts = PoissonNoise(10.0).sample(torch.full((64,), 0.5), generator=g) * 10
    >>> bool(((counts - counts.round()).abs() < 1e-4).all())
    True
    """

    peak: float
    name: ClassVar[str] = "poisson"
    level_setting: ClassVar[str] = "photons"
    default_level: ClassVar[float] = 1000.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "peak", positive("peak", self.peak))

    @property
    def level(self) -> float:
        return self.peak

    @classmethod
    def scaled_level(cls, level: float, scale: float) -> float:
        """Counts per unit intensity shrink as the image grows: ``level / scale``."""
        return level / scale

    def sample(self, clean: Tensor, generator: torch.Generator | None = None) -> Tensor:
        _check_clean(clean)
        rate = (self.peak * clean.clamp_min(0.0)).to(_device(clean, generator))
        counts = torch.poisson(rate, generator=generator)
        return (counts / self.peak).to(clean.device)


NOISE_MODELS: Registry[type[NoiseModel]] = Registry("noise model")
"""Noise model classes by name, each built from its level: ``NOISE_MODELS[name](level)``.
Add one with ``NOISE_MODELS.register("name", cls)``."""
NOISE_MODELS.register("gaussian", GaussianNoise)
NOISE_MODELS.register("speckle", SpeckleNoise)
NOISE_MODELS.register("poisson", PoissonNoise)


def make_noise(name: str, level: float) -> NoiseModel:
    """The noise model ``name`` at ``level`` (its std, or its peak for Poisson).

    >>> make_noise("poisson", 1000)
    PoissonNoise(peak=1000.0)
    >>> try:
    ...     make_noise("salt", 0.1)
    ... except InvalidInputError as error:
    ...     print(error)
    unknown noise model 'salt': choose one of gaussian, speckle, poisson
    """
    return NOISE_MODELS[name](level)
