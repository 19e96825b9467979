"""Forward operators A of the inverse problem y ~ noise(A(x)).

Operators are differentiable ``nn.Module``s acting on images shaped (B, C, H, W); their
kernels and sampling grids are buffers, so ``.to(device)`` moves them. Every
:class:`LinearOperator` has an exact :meth:`~LinearOperator.adjoint` (by autograd unless the
subclass gives a closed form), checked by :meth:`~LinearOperator.adjointness_error`.

* :class:`Identity`: denoising.
* :class:`Downsample`: super-resolution (anti-aliased Lanczos-2 downsampling).
* :class:`Mask`: inpainting (known pixels kept, missing ones zeroed); the masks are drawn or
  read by :mod:`pyrodip.physics.masks`.
* :class:`~pyrodip.physics.radon.Radon`: sparse-view CT (parallel-beam projection), in
  :mod:`pyrodip.physics.radon`.
* :class:`Subset`: any operator of which only some measured values reach the likelihood
  (held-out values, :func:`pyrodip.physics.observation.hold_out`).

>>> A = Identity()
>>> x = torch.rand(1, 1, 4, 4)
>>> bool(torch.equal(A(x), x))
True
>>> Downsample(4)(torch.rand(2, 3, 32, 48)).shape
torch.Size([2, 3, 8, 12])
"""

from __future__ import annotations

import math
from collections.abc import Sequence

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
    "Subset",
    "check_image_batch",
]

SUPERRESOLUTION_FACTORS = (2, 4, 8)
"""The downsampling factors :class:`Downsample` accepts."""


def check_image_batch(x: Tensor, operator: str) -> None:
    """Refuse anything but a floating-point `(B, C, H, W)` tensor as the input of
    ``operator`` (the name its error names); reads metadata only, no device sync.

    >>> try:
    ...     check_image_batch(torch.zeros(1, 4, 4), "Mask")
    ... except InvalidInputError as error:
    ...     print(str(error)[:50])
    Mask needs an image batch shaped (B, C, H, W), got
    """
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
    """Denoising: A(x) = x, a `(B, C, H, W)` tensor to the same tensor."""

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

    Called on a `(B, C, H, W)` tensor, it returns a `(B, C, H / factor, W / factor)` tensor.

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
        check_image_batch(x, "Downsample")
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

    Called on a `(B, C, H, W)` tensor, it returns a `(B, C, H, W)` tensor.

    Args:
        mask: a bool `(H, W)` or `(1 or C, H, W)` tensor, True = known pixel.

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
        check_image_batch(x, "Mask")
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


class Subset(LinearOperator):
    """A(x) = operator(x), of which the likelihood sees only the values where
    :attr:`observed_mask` is True (the others are held out of the fit).

    Args:
        operator: the forward operator.
        observed: bool, shaped like one measurement without its channels, (1, H', W') or
            (H', W'): True = seen by the likelihood.

    >>> A = Subset(Downsample(2), torch.tensor([[True, False], [True, True]]))
    >>> A(torch.rand(1, 1, 4, 4)).shape, int(A.observed_mask.sum())
    (torch.Size([1, 1, 2, 2]), 3)
    """

    observed_mask: Tensor

    def __init__(self, operator: nn.Module, observed: Tensor) -> None:
        super().__init__()
        if not isinstance(observed, Tensor) or observed.dtype != torch.bool:
            raise InvalidInputError("Subset needs a bool tensor of the observed values")
        self.operator = operator
        self.register_buffer("observed_mask", observed.reshape(1, 1, *observed.shape[-2:]))

    def forward(self, x: Tensor) -> Tensor:
        return self.operator(x)

    def input_shape(self, output_shape: Sequence[int]) -> tuple[int, ...]:
        return self.operator.input_shape(output_shape)
