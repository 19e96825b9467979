"""Inpainting masks, bool (H, W) tensors with True = known pixel, for
:class:`~pyrodip.physics.operators.Mask`: drawn at random (:func:`random_mask`), as thin
strokes (:func:`stroke_mask`) or text (:func:`text_mask`), or read from an image file
(:func:`load_mask`); :func:`parse_mask` picks one from a spec such as ``"random:0.2"``.

>>> mask = random_mask((8, 8), 0.25, seed=0)
>>> mask.dtype, int((~mask).sum())
(torch.bool, 16)
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ..errors import InvalidInputError
from ..seeding import generator

__all__ = [
    "load_mask",
    "names_a_mask_file",
    "parse_mask",
    "random_mask",
    "stroke_mask",
    "text_mask",
]

Seed = int | torch.Generator


def _generator(seed: Seed) -> torch.Generator:
    if isinstance(seed, torch.Generator):
        return seed
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer):
        raise InvalidInputError(
            f"seed must be an integer or a torch.Generator, got {type(seed).__name__}"
        )
    return generator(int(seed), "mask")


def _uniform(generator: torch.Generator, *size: int) -> Tensor:
    """U(0, 1) float64 draws on the CPU from ``generator`` (whatever its device)."""
    return torch.rand(size, generator=generator, device=generator.device, dtype=torch.float64).cpu()


def _mask_shape(shape: Sequence[int]) -> tuple[int, int]:
    """(H, W) from an image shape (H, W) or (C, H, W)."""
    dims = tuple(shape) if isinstance(shape, Sequence | torch.Size) else ()
    if len(dims) not in (2, 3) or not all(
        isinstance(d, int | np.integer) and not isinstance(d, bool) and d > 0 for d in dims
    ):
        raise InvalidInputError(
            f"mask shape must be (H, W) or (C, H, W) with positive integer sides, got {shape!r}"
        )
    return int(dims[-2]), int(dims[-1])


def random_mask(shape: Sequence[int], missing_fraction: float, seed: Seed = 0) -> Tensor:
    """Bool (H, W) mask, True = known, with ``round(missing_fraction * H * W)`` pixels missing,
    chosen uniformly at random.

    >>> mask = random_mask((1, 10, 10), 0.25, seed=0)
    >>> mask.shape, int((~mask).sum())
    (torch.Size([10, 10]), 25)
    """
    height, width = _mask_shape(shape)
    try:
        fraction = float(missing_fraction)
    except (TypeError, ValueError):
        fraction = math.nan
    if not (0 <= fraction < 1):
        raise InvalidInputError(
            f"missing fraction must be a number in [0, 1), got {missing_fraction!r}"
        )
    generator = _generator(seed)
    size = height * width
    n_missing = min(round(fraction * size), size - 1)
    order = torch.argsort(_uniform(generator, size))
    known = torch.ones(size, dtype=torch.bool)
    known[order[:n_missing]] = False
    return known.reshape(height, width)


def _quadratic_bezier_stroke(
    height: int, width: int, generator: torch.Generator, scale: float
) -> Tensor:
    """One random curved stroke (a quadratic Bezier curve 1-3 px wide at 128 px), as the
    sorted flat indices (row * W + col) of the pixels it covers."""
    u = _uniform(generator, 8)
    start = torch.stack([u[0] * height, u[1] * width])
    angle = 2 * math.pi * u[2]
    length = (0.2 + 0.4 * u[3]) * math.sqrt(height * width)
    direction = torch.stack([torch.sin(angle), torch.cos(angle)])
    normal = torch.stack([-direction[1], direction[0]])
    end = start + length * direction
    control = (start + end) / 2 + (u[4] - 0.5) * 0.8 * length * normal
    radius = max(0.5, float(1 + 2 * u[5]) * scale / 2)

    n_points = int(2 * length + 2)
    t = torch.linspace(0, 1, n_points, dtype=torch.float64)[:, None]
    points = (1 - t) ** 2 * start + 2 * (1 - t) * t * control + t**2 * end  # (n, 2), rows/cols
    reach = math.ceil(radius) + 1
    steps = torch.arange(-reach, reach + 1)
    offsets = torch.stack(torch.meshgrid(steps, steps, indexing="ij"), dim=-1).reshape(-1, 2)
    pixels = points.floor().long()[:, None, :] + offsets[None]  # (n, k, 2) candidate pixels
    inside = (
        ((pixels + 0.5 - points[:, None, :]).pow(2).sum(-1) <= radius**2)
        & ((pixels[..., 0] >= 0) & (pixels[..., 0] < height) & (pixels[..., 1] >= 0))
        & (pixels[..., 1] < width)
    )
    hit = pixels[inside]
    return torch.unique(hit[:, 0] * width + hit[:, 1])


def stroke_mask(shape: Sequence[int], seed: Seed = 0) -> Tensor:
    """Bool (H, W) mask, True = known, missing thin random curved strokes like hair on a
    dermoscopy image.

    Quadratic Bezier curves 1-3 px wide (at 128 px; widths scale with the image side) are
    added until a target drawn uniformly in [6 %, 14 %] of the pixels is missing (a curve that
    would push it past 15 % is skipped): typically 10-30 curves, 5-15 % missing for sides of
    32 px or more.

    >>> mask = stroke_mask((128, 128), seed=0)
    >>> 0.05 <= float((~mask).float().mean()) <= 0.15
    True
    """
    height, width = _mask_shape(shape)
    generator = _generator(seed)
    target = 0.06 + 0.08 * float(_uniform(generator, 1))
    scale = max(1.0, math.sqrt(height * width) / 128)
    limit = 0.15 * height * width
    missing = torch.zeros(height * width, dtype=torch.bool)
    count = 0
    for _ in range(200):  # small tensors only: no whole-image work per stroke
        stroke = _quadratic_bezier_stroke(height, width, generator, scale)
        added = int((~missing[stroke]).sum())
        if count + added > limit:
            continue
        missing[stroke] = True
        count += added
        if count >= target * height * width:
            break
    missing = missing.reshape(height, width)
    if bool(missing.all()):  # only for a 1-pixel image
        missing.view(-1)[0] = False
    return ~missing


def text_mask(shape: Sequence[int], seed: Seed = 0) -> Tensor:
    """Bool (H, W) mask, True = known, missing lines of random text (as in the Deep Image
    Prior's inpainting examples), drawn with Pillow's built-in font (no font files needed).

    >>> mask = text_mask((128, 128), seed=0)
    >>> 0.05 < float((~mask).float().mean()) < 0.4
    True
    """
    from PIL import Image, ImageDraw, ImageFont

    height, width = _mask_shape(shape)
    generator = _generator(seed)
    size = max(8, round(min(height, width) / 10))
    try:
        font = ImageFont.load_default(size=size)
    except (TypeError, ImportError, OSError) as exc:  # old Pillow or no FreeType
        raise InvalidInputError(
            "text masks need Pillow >= 10.1 with FreeType: use a 'strokes' or 'random:F' mask"
        ) from exc
    canvas = Image.new("L", (width, height), 255)
    draw = ImageDraw.Draw(canvas)
    letters = "abcdefghijklmnopqrstuvwxyz    "
    line_height = round(1.6 * size)
    n_chars = max(1, round(2 * width / size))
    for top in range(-size // 2, height, line_height):
        u = _uniform(generator, n_chars + 2)
        text = "".join(letters[int(v * len(letters))] for v in u[2:])
        left = -float(u[0]) * size
        draw.text((left, top + float(u[1]) * size / 3), text, fill=0, font=font)
    known = torch.from_numpy(np.asarray(canvas) >= 128)
    if not bool(known.any()):
        known.view(-1)[0] = True
    return known


def load_mask(path: str | os.PathLike, shape: Sequence[int]) -> Tensor:
    """Bool (H, W) mask read from an image file: bright (255) = known, black (0) = missing.

    The image is loaded with :func:`pyrodip.io.images.load_image` (so any of its formats work),
    averaged over channels and thresholded at 0.5. ``shape`` is the image's (H, W) or
    (C, H, W); a mask of another size is refused.
    """
    from ..io.images import load_image

    height, width = _mask_shape(shape)
    known = torch.from_numpy(load_image(path).mean(axis=0) > 0.5)
    if tuple(known.shape) != (height, width):
        raise InvalidInputError(
            f"mask {path} is {known.shape[0]}x{known.shape[1]} but the image is "
            f"{height}x{width}: use a mask of the image's size"
        )
    if not bool(known.any()):
        raise InvalidInputError(
            f"mask {path} has no known pixel (all black): known pixels must be white (255)"
        )
    return known


def names_a_mask_file(spec: str) -> bool:
    """Whether a mask spec names a file rather than a drawn mask (strokes, text, random:F).

    >>> names_a_mask_file("masks/hair.png"), names_a_mask_file("random:0.2")
    (True, False)
    """
    name = spec.strip()
    return name not in ("strokes", "text") and not name.startswith("random")


def parse_mask(spec: str, shape: Sequence[int], seed: Seed = 0) -> Tensor:
    """The mask named by ``spec``: ``"random:FRACTION"``, ``"strokes"``, ``"text"`` or the
    path of a mask image (see :func:`load_mask`).

    >>> int((~parse_mask("random:0.5", (4, 4), seed=1)).sum())
    8
    >>> parse_mask("holes", (4, 4))
    Traceback (most recent call last):
    ...
    pyrodip.errors.InvalidInputError: unknown mask 'holes' (and no such file): use 'random:FRACTION' (e.g. 'random:0.2'), 'strokes', 'text' or the path of a mask image
    """  # noqa: E501
    if not isinstance(spec, str | os.PathLike):
        raise InvalidInputError(
            f"mask must be a string such as 'random:0.2', 'strokes' or a path, got {spec!r}"
        )
    if isinstance(spec, os.PathLike):
        return load_mask(spec, shape)
    name = spec.strip()
    if name == "strokes":
        return stroke_mask(shape, seed)
    if name == "text":
        return text_mask(shape, seed)
    if name == "random" or name.startswith("random:"):
        value = name.partition(":")[2]
        try:
            fraction = float(value)
        except ValueError:
            raise InvalidInputError(
                f"mask {spec!r} needs a missing fraction: write random:FRACTION with FRACTION "
                "in [0, 1), e.g. random:0.2"
            ) from None
        return random_mask(shape, fraction, seed)
    if Path(name).is_file():
        return load_mask(name, shape)
    raise InvalidInputError(
        f"unknown mask {spec!r} (and no such file): use 'random:FRACTION' (e.g. 'random:0.2'), "
        "'strokes', 'text' or the path of a mask image"
    )
