"""Image-quality metrics in torch: peak signal-to-noise ratio and structural similarity.

Both functions take images shaped ``(C, H, W)`` (returning a 0-d tensor) or batches shaped
``(B, C, H, W)`` (returning a tensor of shape ``(B,)``), work on whatever device the inputs
live on, and never move data to the host, so they are cheap to call inside a training loop.
They reproduce :func:`skimage.metrics.peak_signal_noise_ratio` and
:func:`skimage.metrics.structural_similarity` (with ``channel_axis=0`` and skimage's
default settings).

>>> import torch
>>> ref = torch.linspace(0, 1, 64).reshape(1, 8, 8)
>>> round(float(psnr(ref + 0.1, ref)), 4)
20.0
>>> float(ssim(ref, ref))
1.0
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from pyrodip.errors import InvalidInputError

__all__ = ["psnr", "ssim"]

#: Side of skimage's default uniform SSIM window.
SSIM_WINDOW = 7
#: skimage's default stabilising constants.
SSIM_K1 = 0.01
SSIM_K2 = 0.03


def _check_pair(x: Tensor, ref: Tensor, name: str) -> None:
    """Raise InvalidInputError unless ``x`` and ``ref`` are equal-shaped (C,H,W) or (B,C,H,W)."""
    if x.shape != ref.shape:
        raise InvalidInputError(
            f"{name}: image shapes differ, {tuple(x.shape)} vs {tuple(ref.shape)}: "
            "compare images of the same shape"
        )
    if x.ndim not in (3, 4):
        raise InvalidInputError(
            f"{name}: expected images shaped (C, H, W) or (B, C, H, W), got {tuple(x.shape)}: "
            "add the missing channel axis"
        )


def _work_dtype(x: Tensor, ref: Tensor) -> torch.dtype:
    """The input dtype when it is float32 or float64, else float32."""
    dtype = torch.promote_types(x.dtype, ref.dtype)
    return dtype if dtype in (torch.float32, torch.float64) else torch.float32


def psnr(x: Tensor, ref: Tensor, data_range: float = 1.0) -> Tensor:
    """Peak signal-to-noise ratio of ``x`` against ``ref`` in dB.

    Computed as ``10 * log10(data_range**2 / mse)`` over each image's channels and pixels;
    ``x`` is not clamped (clamp it first if it should be). Identical images give ``inf``.

    >>> import torch
    >>> ref = torch.zeros(2, 1, 4, 4)
    >>> values = psnr(ref + torch.tensor([0.1, 0.01]).reshape(2, 1, 1, 1), ref)
    >>> tuple(round(v, 4) for v in values.tolist())
    (20.0, 40.0)
    """
    _check_pair(x, ref, "psnr")
    dtype = _work_dtype(x, ref)
    mse = (x.to(dtype) - ref.to(dtype)).square().mean(dim=(-3, -2, -1))
    return 10 * torch.log10(data_range**2 / mse)


def ssim(x: Tensor, ref: Tensor, data_range: float = 1.0) -> Tensor:
    """Mean structural similarity of ``x`` and ``ref``, as skimage computes it.

    Uses a 7x7 uniform window, ``K1=0.01``, ``K2=0.03`` and sample covariances
    (``use_sample_covariance=True``). The SSIM map is evaluated only where the window fits
    inside the image (skimage filters the whole image and then crops 3 pixels on each side,
    which leaves exactly these positions) and averaged over positions and channels.
    Images must be at least 7x7.

    >>> import torch
    >>> ref = torch.rand(3, 16, 24, generator=torch.Generator().manual_seed(0))
    >>> float(ssim(ref, ref))
    1.0
    >>> ssim(ref.expand(2, 3, 16, 24), ref.expand(2, 3, 16, 24)).shape
    torch.Size([2])
    """
    _check_pair(x, ref, "ssim")
    height, width = x.shape[-2:]
    if height < SSIM_WINDOW or width < SSIM_WINDOW:
        raise InvalidInputError(
            f"ssim needs images of at least {SSIM_WINDOW}x{SSIM_WINDOW} pixels, got "
            f"{height}x{width}: use a larger image"
        )
    dtype = _work_dtype(x, ref)
    a = x.to(dtype)
    b = ref.to(dtype)
    batched = a.ndim == 4
    if not batched:
        a, b = a.unsqueeze(0), b.unsqueeze(0)

    # Local means of a, b, a², b², ab in one pass of a separable box filter (a row, then a
    # column: 4x faster than a 7x7 pooling); no padding keeps only the positions where the
    # whole window lies inside the image.
    stacked = torch.cat([a, b, a * a, b * b, a * b], dim=1)
    groups = stacked.shape[1]
    row = torch.full((groups, 1, 1, SSIM_WINDOW), 1 / SSIM_WINDOW, dtype=dtype, device=a.device)
    means = F.conv2d(F.conv2d(stacked, row, groups=groups), row.transpose(2, 3), groups=groups)
    ux, uy, uxx, uyy, uxy = means.chunk(5, dim=1)

    n = SSIM_WINDOW * SSIM_WINDOW
    cov_norm = n / (n - 1)
    vx = cov_norm * (uxx - ux * ux)
    vy = cov_norm * (uyy - uy * uy)
    vxy = cov_norm * (uxy - ux * uy)

    c1 = (SSIM_K1 * data_range) ** 2
    c2 = (SSIM_K2 * data_range) ** 2
    numerator = (2 * ux * uy + c1) * (2 * vxy + c2)
    denominator = (ux * ux + uy * uy + c1) * (vx + vy + c2)
    # Every channel's map has the same size, so the mean over all of them is the mean over
    # channels of the per-channel means.
    result = (numerator / denominator).mean(dim=(-3, -2, -1))
    return result if batched else result[0]
