"""What was observed: the observation y, the operator A and the noise model that produced it,
and the truth x when the observation was simulated from a clean image. (The observation a
run's settings describe is made by :func:`pyrodip.run.observe.prepare_observation`.)

>>> truth = torch.rand(1, 32, 32)
>>> obs = Observation.simulate(truth, noise=0.1, seed=0)
>>> obs.observation.shape, obs.has_truth
(torch.Size([1, 32, 32]), True)
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import torch
from torch import Tensor, nn

from ..errors import InvalidInputError
from ..seeding import generator
from .noise import GaussianNoise, NoiseModel
from .operators import Identity, Subset


@dataclass
class Observation:
    """An inverse problem instance: y = noise(A(x)).

    Attributes:
        observation: y, a `(C, H', W')` tensor as A produces it.
        truth: x, a `(C, H, W)` tensor, or None for a real observation (no truth metrics then).
        image_shape: `(C, H, W)` of the image to reconstruct.
        noise: the noise model (its level is taken as known by the likelihood).
        operator: the forward operator A.
        name: where it came from (a path or ``sample:NAME``).
        observation_range: the data range for PSNR/SSIM against y (1 for images in [0, 1]).
        observed_scale: the observed data were divided by this to fit (a measured CT sinogram,
            so that its back projection peaks at 1): the reconstruction times it is in the
            data's units.
        noise_estimate: the noise level estimated from y (an observed image), in the units of
            the settings' ``noise_std`` or ``photons``; None when not estimated.
    """

    observation: Tensor
    truth: Tensor | None
    image_shape: tuple[int, int, int]
    noise: NoiseModel = field(default_factory=lambda: GaussianNoise(0.1))
    operator: nn.Module = field(default_factory=Identity)
    name: str = ""
    observation_range: float = 1.0
    observed_scale: float = 1.0
    noise_estimate: float | None = None

    @property
    def has_truth(self) -> bool:
        return self.truth is not None

    @property
    def observed_values(self) -> int:
        """N, the values of y the likelihood sums over (all of them, or the known pixels of
        an inpainting mask in every channel).

        >>> Observation.simulate(torch.rand(3, 8, 8), noise=0.1).observed_values
        192
        """
        known = getattr(self.operator, "observed_mask", None)
        y = self.observation
        return y.numel() if known is None else int(known.expand(1, *y.shape).sum())

    @classmethod
    def simulate(
        cls,
        truth: Tensor,
        noise: NoiseModel | float = 0.1,
        seed: int = 0,
        operator: nn.Module | None = None,
        name: str = "",
    ) -> Observation:
        """y = noise(A(truth)), drawn from the noise stream of ``seed``
        (:func:`pyrodip.seeding.generator`); a float ``noise`` is the std of Gaussian noise."""
        noise = _as_noise_model(noise)
        operator = operator if operator is not None else Identity()
        with torch.no_grad():
            clean = operator(truth.unsqueeze(0))[0]
        observation = noise.sample(clean, generator=generator(seed, "noise"))
        return cls(observation, truth, tuple(truth.shape), noise, operator, name)

    @classmethod
    def observed(
        cls,
        observation: Tensor,
        noise: NoiseModel | float = 0.1,
        operator: nn.Module | None = None,
        image_shape: tuple[int, int, int] | None = None,
        name: str = "",
    ) -> Observation:
        """A real observation (no truth is known); ``noise`` is its assumed noise model."""
        noise = _as_noise_model(noise)
        operator = operator if operator is not None else Identity()
        shape = image_shape if image_shape is not None else tuple(observation.shape)
        return cls(observation, None, shape, noise, operator, name)


def _as_noise_model(noise: NoiseModel | float) -> NoiseModel:
    """A number stands for Gaussian noise of that std."""
    return GaussianNoise(noise) if isinstance(noise, int | float) else noise


def hold_out(
    observation: Observation, fraction: float = 0.1, seed: int = 0
) -> tuple[Observation, Tensor]:
    """Hide a random ``fraction`` of the observed values from the fit: pixels for denoising and
    inpainting, low-resolution pixels for super-resolution, sinogram bins for CT (all channels
    of each position).

    Returns the observation to fit, whose operator (a
    :class:`~pyrodip.physics.operators.Subset` of the observation's) leaves the hidden values
    out of the likelihood, and the hidden positions (bool, (1, H', W') like y without its
    channels, True = held out).

    >>> obs = Observation.simulate(torch.rand(1, 32, 32), noise=0.1, seed=0)
    >>> fit_obs, held = hold_out(obs, 0.1, seed=0)
    >>> int(held.sum()), int(fit_obs.operator.observed_mask.sum())
    (102, 922)
    """
    if not 0 < fraction < 1:
        raise InvalidInputError(f"the held-out fraction must be in (0, 1), got {fraction!r}")
    operator = observation.operator
    mask = getattr(operator, "observed_mask", None)
    if mask is None:
        observed = torch.ones((1, *observation.observation.shape[-2:]), dtype=torch.bool)
    else:
        observed = mask[0].cpu().all(0, keepdim=True)
    candidates = observed.flatten().nonzero()[:, 0]
    count = max(1, round(fraction * len(candidates)))
    if count >= len(candidates):
        raise InvalidInputError(
            f"holding out {fraction:.0%} of {len(candidates)} observed values leaves none to "
            "fit: use a larger image or a smaller held-out fraction"
        )
    order = torch.randperm(len(candidates), generator=generator(seed, "heldout"))
    held = torch.zeros(observed.numel(), dtype=torch.bool)
    held[candidates[order[:count]]] = True
    held = held.reshape(observed.shape)
    inner = operator.operator if isinstance(operator, Subset) else operator
    return replace(observation, operator=Subset(inner, observed & ~held)), held


def resize_longer_side(image: Tensor, size: int) -> Tensor:
    """``image`` (C, H, W) resized, anti-aliased, so that its longer side is ``size`` pixels.

    >>> resize_longer_side(torch.rand(1, 256, 128), 64).shape
    torch.Size([1, 64, 32])
    """
    from skimage.transform import resize

    shape = (image.shape[0], *longer_side_shape(image.shape[-2:], size))
    anti_aliasing = size < max(image.shape[-2:])
    resized = resize(image.numpy(), shape, anti_aliasing=anti_aliasing, preserve_range=True)
    return torch.from_numpy(resized.clip(0, 1).astype("float32"))


def resize_mask(known: Tensor, shape: tuple[int, int]) -> Tensor:
    """A bool (H, W) mask resized to ``shape``: a pixel is known only when all of the area it
    covers is known, so thin missing structures (hairs) stay missing.

    >>> known = torch.ones(4, 4, dtype=torch.bool); known[0, 0] = False
    >>> resize_mask(known, (2, 2)).tolist()
    [[False, True], [True, True]]
    """
    area = torch.nn.functional.interpolate(known[None, None].float(), size=shape, mode="area")
    return area[0, 0] > 1 - 1e-6


def longer_side_shape(shape: tuple[int, int], size: int) -> tuple[int, int]:
    """(H, W) scaled so that the longer side is ``size``.

    >>> longer_side_shape((256, 128), 64)
    (64, 32)
    """
    height, width = shape
    factor = size / max(height, width)
    return max(1, round(height * factor)), max(1, round(width * factor))
