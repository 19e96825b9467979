"""Forward operators A of the inverse problem y ~ noise(A(x)), and inpainting masks.

Operators are differentiable ``nn.Module``s acting on images shaped (B, C, H, W); their
kernels and sampling grids are buffers, so ``.to(device)`` moves them. Every
:class:`LinearOperator` has an exact :meth:`~LinearOperator.adjoint` (by autograd unless the
subclass gives a closed form), checked by :meth:`~LinearOperator.adjointness_error`.

* :class:`Identity`: denoising.
* :class:`Downsample`: super-resolution (anti-aliased Lanczos-2 downsampling).
* :class:`Mask`: inpainting (known pixels kept, missing ones zeroed), with the mask makers
  :func:`random_mask`, :func:`stroke_mask`, :func:`text_mask`, :func:`load_mask` and
  :func:`parse_mask`.
* :class:`Radon`: sparse-view CT (parallel-beam projection), with :meth:`Radon.fbp`.

>>> A = Identity()
>>> x = torch.rand(1, 1, 4, 4)
>>> bool(torch.equal(A(x), x))
True
>>> Downsample(4)(torch.rand(2, 3, 32, 48)).shape
torch.Size([2, 3, 8, 12])
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import InvalidInputError

__all__ = [
    "SUPERRESOLUTION_FACTORS",
    "Downsample",
    "Identity",
    "LinearOperator",
    "Mask",
    "Radon",
    "default_ct_angles",
    "load_mask",
    "parse_mask",
    "random_mask",
    "stroke_mask",
    "text_mask",
]

SUPERRESOLUTION_FACTORS = (2, 4, 8)
"""The downsampling factors :class:`Downsample` accepts."""

Seed = int | torch.Generator


def _check_image(x: Tensor, operator: str) -> None:
    """Refuse anything but a 4-D floating-point (B, C, H, W) tensor (metadata only, no sync)."""
    if not isinstance(x, Tensor):
        raise InvalidInputError(
            f"{operator} needs a torch.Tensor image, got {type(x).__name__}: convert it with "
            "torch.as_tensor"
        )
    if x.ndim != 4:
        raise InvalidInputError(
            f"{operator} needs an image batch shaped (B, C, H, W), got shape {tuple(x.shape)}: "
            "add the missing axes with x[None] or x.unsqueeze(0)"
        )
    if not torch.is_floating_point(x):
        raise InvalidInputError(
            f"{operator} needs a floating-point image, got {x.dtype}: convert it with .float()"
        )


class LinearOperator(nn.Module):
    """A linear forward operator A with an exact adjoint A^T.

    The default :meth:`adjoint` is the vector-Jacobian product of A (at zero, which is exact
    for a linear map) computed by autograd; a subclass may override it with a closed form.
    For the adjoint to know the shape of A's input, a subclass whose output shape differs from
    its input's implements :meth:`input_shape` (or the caller passes ``x_shape``).

    >>> class Double(LinearOperator):
    ...     def forward(self, x):
    ...         return 2 * x
    >>> Double().adjoint(torch.ones(1, 1, 2, 2))[0, 0]
    tensor([[2., 2.],
            [2., 2.]])
    """

    def input_shape(self, output_shape: Sequence[int]) -> tuple[int, ...]:
        """The shape of an input x whose image A(x) has ``output_shape``.

        The default assumes a shape-preserving operator.
        """
        return tuple(output_shape)

    def adjoint(self, y: Tensor, x_shape: Sequence[int] | None = None) -> Tensor:
        """A^T y, shaped like A's input (``x_shape``, default :meth:`input_shape` of y's).

        Differentiable with respect to ``y`` when ``y`` requires grad.
        """
        shape = tuple(x_shape) if x_shape is not None else self.input_shape(y.shape)
        create_graph = torch.is_grad_enabled() and y.requires_grad
        with torch.enable_grad():
            x0 = torch.zeros(shape, dtype=y.dtype, device=y.device, requires_grad=True)
            out = self(x0)
            if out.shape != y.shape:
                raise InvalidInputError(
                    f"{type(self).__name__} maps inputs of shape {shape} to {tuple(out.shape)}, "
                    f"but the adjoint got shape {tuple(y.shape)}: pass y shaped like A(x)"
                )
            (grad,) = torch.autograd.grad(
                out, x0, grad_outputs=y, create_graph=create_graph, allow_unused=True
            )
        return torch.zeros_like(x0, requires_grad=False) if grad is None else grad

    def adjointness_error(
        self,
        x_shape: tuple[int, ...],
        generator: torch.Generator | None = None,
        dtype: torch.dtype | None = None,
    ) -> float:
        """Relative gap between <A x, y> and <x, A^T y> for random x, y (0 for a true adjoint).

        x and y are drawn on the CPU (from ``generator``) in ``dtype`` (default: torch's
        default dtype) and moved to the device of the operator's buffers.

        >>> Identity().adjointness_error((1, 1, 4, 4))
        0.0
        """
        device = next((b.device for b in self.buffers()), torch.device("cpu"))
        x = torch.randn(x_shape, generator=generator, dtype=dtype).to(device)
        with torch.no_grad():
            ax = self(x)
            y = torch.randn(ax.shape, generator=generator, dtype=x.dtype).to(device)
            aty = self.adjoint(y, x_shape=x.shape)
        lhs = (ax.double() * y.double()).sum()
        rhs = (x.double() * aty.double()).sum()
        return float((lhs - rhs).abs() / lhs.abs().clamp_min(1e-12))


class Identity(LinearOperator):
    """Denoising: A(x) = x."""

    def forward(self, x: Tensor) -> Tensor:
        return x

    def adjoint(self, y: Tensor, x_shape: Sequence[int] | None = None) -> Tensor:
        return y


# --- super-resolution ------------------------------------------------------------------------


def _lanczos2_kernel(factor: int) -> Tensor:
    """The 1-D Lanczos-2 taps of DIP's ``Downsampler(kernel_type='lanczos2', phase=0.5)``.

    ``4 * factor`` taps at half-pixel offsets ``(k - (4 factor - 1) / 2) / factor`` (never 0),
    normalised to sum 1 (float64). The 2-D kernel is the outer product of these taps.
    """
    width = 4 * factor
    d = (torch.arange(width, dtype=torch.float64) - (width - 1) / 2) / factor
    taps = 2 * torch.sin(math.pi * d) * torch.sin(math.pi * d / 2) / (math.pi**2 * d**2)
    return taps / taps.sum()


class Downsample(LinearOperator):
    """Super-resolution: anti-aliased Lanczos-2 downsampling by ``factor`` (2, 4 or 8).

    As in the Deep Image Prior code (``Downsampler(kernel_type='lanczos2', phase=0.5,
    preserve_size=True)``): a separable kernel of ``4 * factor`` taps sampled at half-pixel
    phase and normalised to sum 1, applied per channel with stride ``factor`` after replicate
    padding of ``3 * factor / 2`` pixels, so an H x W image becomes (H/factor) x (W/factor)
    and a constant image stays the same constant.

    Args:
        factor: the super-resolution factor, one of :data:`SUPERRESOLUTION_FACTORS`.
        channels: when given, the number of channels inputs must have.

    >>> A = Downsample(2)
    >>> y = A(torch.full((1, 1, 8, 8), 0.25))
    >>> y.shape, bool(torch.allclose(y, torch.tensor(0.25)))
    (torch.Size([1, 1, 4, 4]), True)
    >>> Downsample(3)
    Traceback (most recent call last):
    ...
    pyrodip.errors.InvalidInputError: super-resolution factor must be one of 2, 4, 8, got 3
    """

    def __init__(self, factor: int, channels: int | None = None) -> None:
        super().__init__()
        if (
            isinstance(factor, bool)
            or not isinstance(factor, int | np.integer)
            or factor not in SUPERRESOLUTION_FACTORS
        ):
            valid = ", ".join(map(str, SUPERRESOLUTION_FACTORS))
            raise InvalidInputError(
                f"super-resolution factor must be one of {valid}, got {factor!r}"
            )
        if channels is not None and (
            isinstance(channels, bool) or not isinstance(channels, int) or channels < 1
        ):
            raise InvalidInputError(
                f"channels must be a positive integer or None, got {channels!r}"
            )
        self.factor = int(factor)
        self.channels = channels
        self.padding = 3 * self.factor // 2
        self.register_buffer("kernel", _lanczos2_kernel(self.factor).float())

    def extra_repr(self) -> str:
        return f"factor={self.factor}, channels={self.channels}"

    def _check(self, x: Tensor) -> None:
        _check_image(x, "Downsample")
        if self.channels is not None and x.shape[1] != self.channels:
            raise InvalidInputError(
                f"Downsample was built for {self.channels} channels but the image has "
                f"{x.shape[1]}: build it with channels={x.shape[1]} (or None)"
            )
        for side in x.shape[-2:]:
            if side % self.factor:
                raise InvalidInputError(
                    f"image side {side} is not divisible by the super-resolution factor "
                    f"{self.factor}: crop it to a multiple of {self.factor}"
                )

    def forward(self, x: Tensor) -> Tensor:
        self._check(x)
        batch, channels, height, width = x.shape
        f, p = self.factor, self.padding
        kernel = self.kernel.to(x.dtype)
        z = F.pad(x.reshape(batch * channels, 1, height, width), (p, p, p, p), mode="replicate")
        z = F.conv2d(z, kernel.view(1, 1, -1, 1), stride=(f, 1))
        z = F.conv2d(z, kernel.view(1, 1, 1, -1), stride=(1, f))
        return z.reshape(batch, channels, height // f, width // f)

    def input_shape(self, output_shape: Sequence[int]) -> tuple[int, ...]:
        *lead, height, width = output_shape
        return (*lead, height * self.factor, width * self.factor)


# --- inpainting ------------------------------------------------------------------------------


class Mask(LinearOperator):
    """Inpainting: A(x) = m * x, with m = 1 at known pixels and 0 at missing ones.

    The output keeps the image's shape; its missing pixels carry no information, and
    :attr:`observed_mask` (bool, shaped (1, 1 or C, H, W)) tells the likelihood which pixels
    to use.

    Args:
        mask: bool tensor (H, W) or (1 or C, H, W), True = known pixel.

    >>> A = Mask(torch.tensor([[True, False], [True, True]]))
    >>> A(torch.ones(1, 3, 2, 2))[0, 0]
    tensor([[1., 0.],
            [1., 1.]])
    >>> int(A.observed_mask.sum())
    3
    """

    observed_mask: Tensor

    def __init__(self, mask: Tensor) -> None:
        super().__init__()
        mask = torch.as_tensor(mask)
        if mask.dtype != torch.bool:
            raise InvalidInputError(
                f"mask must be a bool tensor (True = known pixel), got {mask.dtype}: "
                "convert it with mask > 0.5"
            )
        if mask.ndim == 2:
            mask = mask[None]
        if mask.ndim != 3 or 0 in mask.shape:
            raise InvalidInputError(
                f"mask must be shaped (H, W) or (C, H, W), got {tuple(mask.shape)}: "
                "pass one mask for the image"
            )
        if not bool(mask.any()):
            raise InvalidInputError(
                "the mask has no known pixel (all False): mark the observed pixels True"
            )
        self.register_buffer("observed_mask", mask[None].clone())

    def extra_repr(self) -> str:
        known = float(self.observed_mask.float().mean())
        return f"shape={tuple(self.observed_mask.shape[1:])}, known={known:.1%}"

    def _check(self, x: Tensor) -> None:
        _check_image(x, "Mask")
        _, mask_channels, height, width = self.observed_mask.shape
        if tuple(x.shape[-2:]) != (height, width):
            raise InvalidInputError(
                f"the mask is {height}x{width} but the image is {x.shape[-2]}x{x.shape[-1]}: "
                "use a mask of the image's size"
            )
        if mask_channels not in (1, x.shape[1]):
            raise InvalidInputError(
                f"the mask has {mask_channels} channels but the image has {x.shape[1]}: "
                "use a one-channel mask or one per image channel"
            )

    def forward(self, x: Tensor) -> Tensor:
        self._check(x)
        return x * self.observed_mask

    def adjoint(self, y: Tensor, x_shape: Sequence[int] | None = None) -> Tensor:
        return self(y)


def _generator(seed: Seed) -> torch.Generator:
    if isinstance(seed, torch.Generator):
        return seed
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer):
        raise InvalidInputError(
            f"seed must be an integer or a torch.Generator, got {type(seed).__name__}"
        )
    return torch.Generator().manual_seed(int(seed))


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


# --- sparse-view CT --------------------------------------------------------------------------


def default_ct_angles(count: int = 45) -> Tensor:
    """``count`` angles evenly over [0, 180) degrees; the default 45 are the POTOBIM paper's
    sparse-view CT angles, 0 to 176 degrees in 4-degree steps.

    >>> angles = default_ct_angles()
    >>> len(angles), float(angles[0]), float(angles[-1])
    (45, 0.0, 176.0)
    """
    return torch.arange(count, dtype=torch.float64) * (180.0 / count)


def _ramp_filter(size: int) -> Tensor:
    """Ramp filter for ``size`` (even) padded detector samples, as the real half-spectrum of
    the band-limited spatial ramp kernel (Kak & Slaney, eq. 61), float64."""
    n = torch.arange(size, dtype=torch.float64)
    n = torch.minimum(n, size - n)  # circular distance to 0
    kernel = torch.where(n % 2 == 1, -1 / (math.pi * n.clamp_min(1)) ** 2, torch.zeros_like(n))
    kernel[0] = 0.25
    return 2 * torch.fft.rfft(kernel).real


class Radon(LinearOperator):
    """Sparse-view CT: the parallel-beam projection (Radon transform) of square images.

    For each angle, the image is rotated about its centre pixel (``image_size // 2``) by
    bilinear sampling (zeros outside) and summed along its rows: the sinogram is shaped
    (B, C, image_size detectors, n_angles), with the layout, orientation and angle
    convention of ``skimage.transform.radon(image, theta=angles, circle=True)``.

    Args:
        angles: projection angles in degrees (default :func:`default_ct_angles`).
        image_size: the side of the (square) images.

    >>> A = Radon(default_ct_angles(), 32)
    >>> A(torch.rand(2, 1, 32, 32)).shape
    torch.Size([2, 1, 32, 45])
    """

    grid: Tensor
    ramp: Tensor
    circle: Tensor

    def __init__(self, angles: Sequence[float] | Tensor | None = None, image_size: int = 128):
        super().__init__()
        if isinstance(image_size, bool) or not isinstance(image_size, int | np.integer):
            raise InvalidInputError(f"image_size must be an integer, got {image_size!r}")
        if image_size < 2:
            raise InvalidInputError(f"image_size must be at least 2, got {image_size}")
        size = int(image_size)
        if angles is None:
            angles = default_ct_angles()
        try:
            degrees = torch.as_tensor(np.asarray(angles, dtype=np.float64)).reshape(-1)
        except (TypeError, ValueError):
            raise InvalidInputError(
                f"angles must be a sequence of numbers (degrees), got {angles!r}"
            ) from None
        if degrees.numel() == 0 or not bool(torch.isfinite(degrees).all()):
            raise InvalidInputError(
                "angles must be a non-empty list of finite numbers (degrees), e.g. "
                "default_ct_angles()"
            )
        self.image_size = size
        self.angles = tuple(float(a) for a in degrees)

        # Rotation about the centre pixel, in grid_sample's normalised coordinates
        # (align_corners=False), where both axes have the same scale for a square image.
        radians = torch.deg2rad(degrees)
        cos, sin = torch.cos(radians), torch.sin(radians)
        centre = (2 * (size // 2) + 1) / size - 1
        theta = torch.stack(
            [
                torch.stack([cos, sin, centre * (1 - cos - sin)], dim=-1),
                torch.stack([-sin, cos, centre * (1 + sin - cos)], dim=-1),
            ],
            dim=-2,
        )
        grid = F.affine_grid(theta, [len(degrees), 1, size, size], align_corners=False)
        self.register_buffer("grid", grid.float(), persistent=False)

        padded = max(64, 2 ** math.ceil(math.log2(2 * size)))
        self.padded_detectors = padded
        self.register_buffer("ramp", _ramp_filter(padded).float(), persistent=False)
        offsets = torch.arange(size, dtype=torch.float64) - size // 2
        inside = offsets[:, None] ** 2 + offsets[None, :] ** 2 <= (size // 2) ** 2
        self.register_buffer("circle", inside, persistent=False)

    @property
    def n_angles(self) -> int:
        return len(self.angles)

    def extra_repr(self) -> str:
        return f"n_angles={self.n_angles}, image_size={self.image_size}"

    def _check(self, x: Tensor) -> None:
        _check_image(x, "Radon")
        height, width = x.shape[-2:]
        if height != width:
            raise InvalidInputError(
                f"the Radon transform needs a square image, got {height}x{width}: crop it to "
                "a square"
            )
        if height != self.image_size:
            raise InvalidInputError(
                f"Radon was built for {self.image_size}x{self.image_size} images but got "
                f"{height}x{width}: build it with image_size={height}"
            )

    def forward(self, x: Tensor) -> Tensor:
        self._check(x)
        batch, channels, size, _ = x.shape
        n_angles = self.n_angles
        planes = x.reshape(1, batch * channels, size, size).expand(n_angles, -1, -1, -1)
        rotated = F.grid_sample(
            planes,
            self.grid.to(x.dtype),
            mode="bilinear",
            padding_mode="zeros",
            align_corners=False,
        )  # (n_angles, B * C, size, size)
        projections = rotated.sum(dim=2)  # (n_angles, B * C, detectors)
        return projections.permute(1, 2, 0).reshape(batch, channels, size, n_angles)

    def input_shape(self, output_shape: Sequence[int]) -> tuple[int, ...]:
        *lead, _, _ = output_shape
        return (*lead, self.image_size, self.image_size)

    def _check_sinogram(self, sinogram: Tensor) -> None:
        _check_image(sinogram, "Radon.fbp")
        expected = (self.image_size, self.n_angles)
        if tuple(sinogram.shape[-2:]) != expected:
            raise InvalidInputError(
                f"the sinogram must be shaped (B, C, {expected[0]} detectors, {expected[1]} "
                f"angles), got {tuple(sinogram.shape)}: use this operator's output layout"
            )

    def fbp(self, sinogram: Tensor) -> Tensor:
        """Filtered back projection, the classical CT reconstruction.

        Ramp-filters each projection in the Fourier domain (zero-padded along the detectors),
        back-projects with the adjoint, scales by pi / (2 n_angles) and zeroes the pixels
        outside the reconstruction circle. Returns (B, C, image_size, image_size).
        """
        self._check_sinogram(sinogram)
        size = self.image_size
        spectrum = torch.fft.rfft(sinogram, n=self.padded_detectors, dim=-2)
        spectrum = spectrum * self.ramp.to(sinogram.dtype)[:, None]
        filtered = torch.fft.irfft(spectrum, n=self.padded_detectors, dim=-2)[..., :size, :]
        image = self.adjoint(filtered) * (math.pi / (2 * self.n_angles))
        return image * self.circle
