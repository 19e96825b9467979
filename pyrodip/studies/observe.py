"""The observation a run's settings describe: load the image, then simulate y = noise(A(x))
for the settings' task (:data:`pyrodip.physics.tasks.TASKS`), or take the image as y.

>>> from pyrodip.studies.config import RunConfig
>>> obs = prepare_observation(RunConfig(task="superres", factor=2, image="sample:phantom"))
>>> tuple(obs.observation.shape), obs.has_truth
((1, 64, 64), True)
"""

from __future__ import annotations

import math

import torch

from ..bayes.networks import NetConfig
from ..errors import InvalidInputError
from ..io.images import load_image
from ..physics.observation import (
    Observation,
    longer_side_shape,
    resize_longer_side,
    resize_mask,
)
from ..physics.tasks import TASKS, Task
from .config import RunConfig
from .resources import check_memory

__all__ = ["prepare_observation"]


def prepare_observation(config: RunConfig) -> Observation:
    """The observation ``config`` describes: load ``config.image`` and crop it to the network's
    multiple; then simulate y = noise(A(x)) for ``config.task`` (keeping x as the truth), or,
    with ``config.observed``, take the image as y itself.

    The noise generator is seeded from ``config.seed``, independently of the network.
    """
    task = TASKS[config.task]
    min_side = NetConfig.preset(config.net).min_side
    image = torch.from_numpy(load_image(config.image, slice_index=config.slice_index))
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
        return task.observe(config, image, min_side, mask, config.image)
    return task.simulate(config, image, min_side, mask, config.image)


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
