"""What was observed: the observation y, the operator A and the noise model that produced it,
and the truth x when the observation was simulated from a clean image.

>>> truth = torch.rand(1, 32, 32)
>>> obs = Observation.simulate(truth, noise=0.1, seed=0)
>>> obs.observation.shape, obs.has_truth
(torch.Size([1, 32, 32]), True)
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field, replace

import torch
from torch import Tensor, nn

from ..bayes.networks import NetConfig
from ..errors import InvalidInputError
from ..io.images import center_crop, load_image
from ..studies.resources import check_memory
from .noise import GaussianNoise, NoiseModel, make_noise
from .operators import (
    Downsample,
    Identity,
    Mask,
    Radon,
    default_ct_angles,
    names_a_mask_file,
    parse_mask,
)


@dataclass
class Observation:
    """An inverse problem instance: y = noise(A(x)).

    Attributes:
        observation: y, shaped (C, H', W') as A produces it.
        truth: x, shaped (C, H, W), or None for a real observation (no truth metrics then).
        image_shape: (C, H, W) of the image to reconstruct.
        noise: the noise model (its level is taken as known by the likelihood).
        operator: the forward operator A.
        name: where it came from (a path or ``sample:NAME``).
        observation_range: the data range for PSNR/SSIM against y (1 for images in [0, 1]).
    """

    observation: Tensor
    truth: Tensor | None
    image_shape: tuple[int, int, int]
    noise: NoiseModel = field(default_factory=lambda: GaussianNoise(0.1))
    operator: nn.Module = field(default_factory=Identity)
    name: str = ""
    observation_range: float = 1.0

    @property
    def has_truth(self) -> bool:
        return self.truth is not None

    @classmethod
    def simulate(
        cls,
        truth: Tensor,
        noise: NoiseModel | float = 0.1,
        seed: int = 0,
        operator: nn.Module | None = None,
        name: str = "",
    ) -> Observation:
        """y = noise(A(truth)), drawn from a generator seeded by ``seed``; a float ``noise``
        is the std of Gaussian noise."""
        noise = _as_noise_model(noise)
        operator = operator if operator is not None else Identity()
        generator = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            clean = operator(truth.unsqueeze(0))[0]
        observation = noise.sample(clean, generator=generator)
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


def prepare_observation(config) -> Observation:
    """The observation ``config`` describes: load ``config.image`` and crop it to the network's
    multiple; then simulate y = noise(A(x)) for ``config.task`` (keeping x as the truth), or,
    with ``config.observed``, take the image as y itself.

    The noise generator is seeded from ``config.seed``, independently of the network.
    """
    min_side = NetConfig.preset(config.net).min_side
    image = torch.from_numpy(load_image(config.image, slice_index=config.slice_index))
    channels, height, width = image.shape
    if config.size is not None:
        height, width = longer_side_shape((height, width), config.size)
    _check_min_side(config, (height, width), tuple(image.shape[-2:]))
    # Before resizing and building the operator: both may take much memory.
    scale = config.factor if config.observed and config.task == "superres" else 1
    check_memory(config, (channels, height * scale, width * scale))
    mask = _mask_file(config, tuple(image.shape[-2:]))  # checked against the loaded image
    if config.size is not None:
        image = resize_longer_side(image, config.size)
        mask = None if mask is None else resize_mask(mask, tuple(image.shape[-2:]))
    if config.observed:
        return _observed(config, image, min_side, mask)
    if config.task == "ct":
        image = _square(image)
    truth = center_crop(image, min_side)
    if mask is not None:
        operator = Mask(center_crop(mask, min_side))
    else:
        operator = _operator(config, truth.shape)
    if config.task == "ct":
        # The scanner sees only the inscribed circle: what lies outside cannot be reconstructed.
        truth = truth * operator.circle.to(truth.dtype).reshape(truth.shape[-2:])
        clean = operator(truth[None])[0]
        scale = float(clean.abs().max())
        noise = _noise(config, relative_to=scale)
        observation = noise.sample(clean, torch.Generator().manual_seed(config.seed))
        return Observation(
            observation, truth, tuple(truth.shape), noise, operator, config.image, scale
        )
    return Observation.simulate(truth, _noise(config), config.seed, operator, config.image)


def hold_out(
    observation: Observation, fraction: float = 0.1, seed: int = 0
) -> tuple[Observation, Tensor]:
    """Hide a random ``fraction`` of the observed pixels from the fit (all channels of each).

    Returns the observation to fit, whose operator is a
    :class:`~pyrodip.physics.operators.Mask` that
    leaves the hidden pixels out of the likelihood, and the hidden pixels (bool, (1, H, W),
    True = held out). Only pixel observations can be split so: denoising and inpainting.

    >>> obs = Observation.simulate(torch.rand(1, 32, 32), noise=0.1, seed=0)
    >>> fit_obs, held = hold_out(obs, 0.1, seed=0)
    >>> int(held.sum()), int(fit_obs.operator.observed_mask.sum())
    (102, 922)
    """
    operator = observation.operator
    if isinstance(operator, Identity):
        observed = torch.ones((1, *observation.image_shape[-2:]), dtype=torch.bool)
    elif isinstance(operator, Mask):
        observed = operator.observed_mask[0].cpu()
    else:
        raise InvalidInputError(
            f"held-out pixels need an observation of the image's own pixels (denoise or "
            f"inpaint), not through {type(operator).__name__}: use a truth-based objective"
        )
    if not 0 < fraction < 1:
        raise InvalidInputError(f"the held-out fraction must be in (0, 1), got {fraction!r}")
    known = observed.all(0, keepdim=True)
    candidates = known.flatten().nonzero()[:, 0]
    count = max(1, round(fraction * len(candidates)))
    order = torch.randperm(len(candidates), generator=torch.Generator().manual_seed(seed))
    held = torch.zeros(known.numel(), dtype=torch.bool)
    held[candidates[order[:count]]] = True
    held = held.reshape(known.shape)
    return replace(observation, operator=Mask(observed & ~held)), held


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


def _mask_file(config, shape: tuple[int, int]) -> Tensor | None:
    """The inpainting mask read from a file, at the loaded image's ``shape``; None when the
    mask is not a file (random, strokes and text masks are drawn at the final size)."""
    if config.task != "inpaint" or not names_a_mask_file(config.mask):
        return None
    return parse_mask(config.mask, shape, seed=config.seed)


def longer_side_shape(shape: tuple[int, int], size: int) -> tuple[int, int]:
    """(H, W) scaled so that the longer side is ``size``.

    >>> longer_side_shape((256, 128), 64)
    (64, 32)
    """
    height, width = shape
    factor = size / max(height, width)
    return max(1, round(height * factor)), max(1, round(width * factor))


def _check_min_side(config, shape: tuple[int, int], loaded: tuple[int, int]) -> None:
    """Refuse an image (``shape``, after --size; ``loaded`` before) smaller than the network
    needs, naming the --size or net that would do."""

    def needed(net: str) -> int:  # an observed super-resolution input is smaller by the factor
        side = 2 * NetConfig.preset(net).min_side  # the deepest level's padded 3x3 convs need 2 px
        return side // config.factor if config.observed and config.task == "superres" else side

    need = needed(config.net)
    if min(shape) >= need:
        return
    fixes = [f"--size {math.ceil(need * max(loaded) / min(loaded))}"]
    if config.net != "small" and min(shape) >= needed("small"):
        fixes.append("--net small")
    raise InvalidInputError(
        f"the image is {shape[0]}x{shape[1]} but the {config.net} network needs sides of at "
        f"least {need} pixels: use a larger image or {' or '.join(fixes)}"
    )


def _noise(config, relative_to: float = 1.0) -> NoiseModel:
    """The noise model; for CT, Gaussian std and Poisson counts are relative to the largest
    projection ``relative_to`` (speckle is multiplicative and needs no scale)."""
    if config.noise == "poisson":
        return make_noise("poisson", config.photons / relative_to)
    if config.noise == "gaussian":
        return make_noise("gaussian", config.noise_std * relative_to)
    return make_noise(config.noise, config.noise_std)


def _operator(config, shape: tuple[int, ...]) -> nn.Module:
    height, width = shape[-2:]
    if config.task == "superres":
        return Downsample(config.factor)
    if config.task == "inpaint":
        return Mask(parse_mask(config.mask, (height, width), seed=config.seed))
    if config.task == "ct":
        return Radon(default_ct_angles(config.angles), image_size=height)
    return Identity()


def _square(image: Tensor) -> Tensor:
    height, width = image.shape[-2:]
    if height == width:
        return image
    side = min(height, width)
    warnings.warn(
        f"center-cropping the image from {height}x{width} to {side}x{side}: "
        "the CT operator needs a square image",
        stacklevel=3,
    )
    top, left = (height - side) // 2, (width - side) // 2
    return image[..., top : top + side, left : left + side]


def _observed(config, image: Tensor, min_side: int, mask: Tensor | None) -> Observation:
    """The image is the observation: crop it so that the image to reconstruct fits the net."""
    noise = _noise(config)
    if config.task == "denoise":
        y = center_crop(image, min_side)
        return Observation.observed(y, noise, name=config.image)
    if config.task == "superres":
        if min_side % config.factor:
            raise InvalidInputError(
                f"the network's minimum side {min_side} is not a multiple of the factor "
                f"{config.factor}: use a smaller --factor"
            )
        y = center_crop(image, min_side // config.factor)
        channels, height, width = y.shape
        shape = (channels, height * config.factor, width * config.factor)
        return Observation.observed(y, noise, Downsample(config.factor), shape, config.image)
    if config.task == "inpaint":
        y = center_crop(image, min_side)
        if mask is None:
            mask = parse_mask(config.mask, tuple(image.shape[-2:]), config.seed)
        mask = center_crop(mask, min_side)
        return Observation.observed(y, noise, Mask(mask), tuple(y.shape), config.image)
    raise InvalidInputError(
        "--observed is not supported for the ct task: pass a clean image, and pyrodip "
        "simulates its sinogram"
    )
