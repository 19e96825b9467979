"""The observation a run's settings describe: load the image, then simulate y = noise(A(x))
for the settings' task (:data:`pyrodip.physics.tasks.TASKS`), or take the image as y (its noise
level estimated when the settings give none).

>>> from pyrodip.run.config import RunConfig
>>> obs = prepare_observation(RunConfig(task="superres", factor=2, image="sample:phantom"))
>>> tuple(obs.observation.shape), obs.has_truth
((1, 64, 64), True)
"""

from __future__ import annotations

import math
from dataclasses import replace

import torch

from ..bayes.networks import NetConfig
from ..errors import InvalidInputError
from ..io.images import load_image
from ..physics.noise_estimate import NOISE_ESTIMATE_FACTOR
from ..physics.observation import (
    Observation,
    longer_side_shape,
    resize_longer_side,
    resize_mask,
)
from ..physics.tasks import TASKS, Task, given_noise_level, noise_level_setting, noise_model
from .config import RunConfig
from .resources import check_memory

__all__ = ["prepare_observation"]


def prepare_observation(config: RunConfig) -> Observation:
    """The observation ``config`` describes: load ``config.image`` and crop it to the network's
    multiple; then simulate y = noise(A(x)) for ``config.task`` (keeping x as the truth), or,
    with ``config.observed``, take the image (or the task's own file, a CT sinogram) as y
    itself, with the noise level :func:`observed_noise` sets.

    The noise generator is seeded from ``config.seed``, independently of the network.
    """
    task = TASKS[config.task]
    min_side = NetConfig.preset(config.net).min_side
    measured = task.load_observed(config) if config.observed else None
    if measured is not None:
        if config.size is not None:
            raise InvalidInputError(f"`size` cannot resize a {config.task} measurement: drop it")
        observation = task.observe(config, measured, min_side, None, config.image)
        check_memory(config, observation.image_shape)
        return observed_noise(config, task, observation)
    image = load_image(config.image, config.slice_index, config.volume_index)
    image = torch.from_numpy(image)
    channels, height, width = image.shape
    if config.size is not None:
        height, width = longer_side_shape((height, width), config.size)
    _check_min_side(config, task, (height, width), tuple(image.shape[-2:]))
    # Before resizing and building the operator: both may take much memory.
    scale = task.observed_downscale(config) if config.observed else 1
    check_memory(config, (channels, height * scale, width * scale))
    mask = task.mask_file(config, tuple(image.shape[-2:]))  # checked against the loaded image
    if config.size is not None:
        image = resize_longer_side(image, config.size)
        mask = None if mask is None else resize_mask(mask, tuple(image.shape[-2:]))
    if config.observed:
        return observed_noise(config, task, task.observe(config, image, min_side, mask,
                                                         config.image))
    observation = task.simulate(config, image, min_side, mask, config.image)
    if config.clip:
        return replace(observation, observation=observation.observation.clamp(0, 1))
    return observation


#: An estimated noise std below this (half an 8-bit grey level) is no measurable noise.
MEASURABLE_NOISE_STD = 0.002


def observed_noise(config: RunConfig, task: Task, observation: Observation) -> Observation:
    """``observation`` with its noise model at the level ``config`` gives, or else at the
    level estimated from y; the estimate is kept as ``noise_estimate``. Refuses a given level
    more than :data:`~pyrodip.physics.noise_estimate.NOISE_ESTIMATE_FACTOR` times above or
    below the estimate (a fit at that level would smooth the image away or fit its noise),
    and an image with no measurable noise, or a noise the task cannot estimate, and no level
    given."""
    estimate = task.estimate_noise(config, observation)
    given = given_noise_level(config)
    key = noise_level_setting(config.noise)
    name = observation.name or "the image"
    if estimate is None:
        if given is None:
            raise InvalidInputError(
                f"cannot estimate the level of {config.noise} noise in {name} ({config.task}): "
                f"give it (`{key}`)"
            )
        noise = noise_model(config, relative_to=observation.observation_range, level=given)
        return replace(observation, noise=noise)
    estimated_std = _as_std(config.noise, estimate)
    if given is None and not estimated_std >= MEASURABLE_NOISE_STD:
        raise InvalidInputError(
            f"{name} shows no measurable noise (estimated std {estimated_std:.2g}): give its "
            f"noise level (`{key}`)"
        )
    if given is not None and estimated_std >= MEASURABLE_NOISE_STD:
        ratio = _as_std(config.noise, given) / estimated_std
        if not 1 / NOISE_ESTIMATE_FACTOR <= ratio <= NOISE_ESTIMATE_FACTOR:
            side = "above" if ratio > 1 else "below"
            raise InvalidInputError(
                f"the given noise level {key}={given:g} is far {side} what {name} shows "
                f"(estimated {estimate:.3g}, a factor {max(ratio, 1 / ratio):.1f}): leave "
                f"`{key}` out to use the estimate"
            )
    level = estimate if given is None else given
    noise = noise_model(config, relative_to=observation.observation_range, level=level)
    return replace(observation, noise=noise, noise_estimate=estimate)


def _as_std(noise: str, level: float) -> float:
    """A noise level as a std (Poisson's peak count as the std of 2 sqrt(y))."""
    return level ** -0.5 if noise == "poisson" else level


def _check_min_side(
    config: RunConfig, task: Task, shape: tuple[int, int], loaded: tuple[int, int]
) -> None:
    """Refuse an image (``shape``, after --size; ``loaded`` before) smaller than the network
    needs, naming the --size or net that would do."""

    def needed(net: str) -> int:  # an observed super-resolution input is smaller by the factor
        side = 2 * NetConfig.preset(net).min_side  # the deepest level's padded 3x3 convs need 2 px
        return side // task.observed_downscale(config) if config.observed else side

    need = needed(config.net)
    if min(shape) >= need:
        return
    fixes = [f"`size={math.ceil(need * max(loaded) / min(loaded))}`"]
    if config.net != "small" and min(shape) >= needed("small"):
        fixes.append("`net=small`")
    raise InvalidInputError(
        f"the image is {shape[0]}x{shape[1]} but the {config.net} network needs sides of at "
        f"least {need} pixels: use a larger image or {' or '.join(fixes)}"
    )
