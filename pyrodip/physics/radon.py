"""Sparse-view CT: the parallel-beam projection (Radon transform) as a linear operator, and
its filtered back projection.

>>> A = Radon(default_ct_angles(4), 16)
>>> A(torch.rand(1, 1, 16, 16)).shape, A.fbp(A(torch.rand(1, 1, 16, 16))).shape
(torch.Size([1, 1, 16, 4]), torch.Size([1, 1, 16, 16]))
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import InvalidInputError
from .operators import LinearOperator, check_image_batch

__all__ = ["Radon", "default_ct_angles"]


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
    bilinear sampling (zeros outside) and summed along its rows: a `(B, C, S, S)` image
    (S = ``image_size``) becomes a `(B, C, S, A)` sinogram (S detectors, A = ``len(angles)``),
    with the layout, orientation and angle convention of
    ``skimage.transform.radon(image, theta=angles, circle=True)``.

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
        check_image_batch(x, "Radon")
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
        check_image_batch(sinogram, "Radon.fbp")
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
