"""The noise level of an observed image, estimated from the image alone.

:func:`estimate_noise_std` is a patch-PCA estimator (Chen, Zhu & Heng, ICCV 2015): the noise
variance is the mean of the smallest eigenvalues of the covariance of all 7x7 patches, taken
where that mean is no larger than their median (image structure adds large eigenvalues;
noise alone gives a symmetric spread). Values clipped at the image's bounds (0 and 1 for a
loaded image) hide noise, so the estimate is refined on patches whose mean lies at least two
noise levels inside the bounds. :func:`estimate_noise_level` turns it into a noise model's
level: the std for Gaussian noise, the log-domain std for speckle, the peak count for Poisson
(through the Anscombe transform).

How close it comes, measured on the shared images at 128 px with known noise, clipped
(``experiments/noise_estimation.py``, table in docs/howto-real-scans.md): from std 0.05 to 0.2
within 15 % on every held-out image and seed (the CT image it was tuned on: 1.20 times the
truth at 0.05); below 0.05 it overestimates (1.3 times at 0.02, 1.9 at 0.01, on average),
where fine texture looks like noise.

>>> import torch
>>> g = torch.Generator().manual_seed(0)
>>> clean = torch.linspace(0.2, 0.8, 96).repeat(96, 1)
>>> noisy = clean + 0.05 * torch.randn(96, 96, generator=g)
>>> round(estimate_noise_std(noisy), 3)
0.05
"""

from __future__ import annotations

import math

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from torch import Tensor

from ..errors import InvalidInputError
from .noise import LOG_FLOOR

__all__ = ["NOISE_ESTIMATE_FACTOR", "estimate_noise_level", "estimate_noise_std"]

#: A given noise level more than this many times above or below the estimate is refused
#: (the estimate is within a factor 3.2 of the truth on every test image, also at std 0.01).
NOISE_ESTIMATE_FACTOR = 5.0
_PATCH = 7
_INSIDE = 2.0  # the refined patches' means lie this many noise levels inside the bounds


def estimate_noise_std(
    images: Tensor | np.ndarray, low: float = 0.0, high: float = 1.0
) -> float:
    """The std of additive white noise in ``images`` (H, W), (C, H, W) or a stack of slices
    (..., H, W), all pooled; ``low`` and ``high`` are where values may have been clipped.

    >>> round(estimate_noise_std(np.full((32, 32), 0.5)), 6)
    0.0
    """
    array = np.asarray(images.detach().cpu() if isinstance(images, Tensor) else images,
                       dtype=np.float64)
    if array.ndim < 2 or min(array.shape[-2:]) < _PATCH:
        raise InvalidInputError(
            f"cannot estimate the noise of an image of shape {array.shape}: it needs at least "
            f"{_PATCH}x{_PATCH} pixels; give the noise level (`noise_std`)"
        )
    if not np.isfinite(array).all():
        raise InvalidInputError("the image holds NaN or infinite values: replace them first")
    planes = array.reshape(-1, *array.shape[-2:])
    patches = np.concatenate(
        [sliding_window_view(plane, (_PATCH, _PATCH)).reshape(-1, _PATCH**2) for plane in planes]
    )
    std = _smallest_eigenvalues_std(patches)
    means = patches.mean(1)
    for _ in range(2):
        inside = (means > low + _INSIDE * std) & (means < high - _INSIDE * std)
        if inside.sum() < 10 * _PATCH**2:  # too few patches to refine on
            break
        std = _smallest_eigenvalues_std(patches[inside])
    return std


def _smallest_eigenvalues_std(patches: np.ndarray) -> float:
    """sqrt of the mean of the smallest patch-covariance eigenvalues whose mean is at most
    their median (Chen et al. 2015)."""
    centred = patches - patches.mean(0)
    eigenvalues = np.linalg.eigvalsh(centred.T @ centred / len(centred))[::-1]
    for start in range(len(eigenvalues)):
        tail = eigenvalues[start:]
        if tail.mean() <= np.median(tail):
            return math.sqrt(max(float(tail.mean()), 0.0))
    return math.sqrt(max(float(eigenvalues[-1]), 0.0))


def estimate_noise_level(noise: str, images: Tensor | np.ndarray) -> float | None:
    """The level of noise model ``noise`` in ``images`` (values in [0, 1]): the std for
    ``gaussian``, the std of log(y) for ``speckle``, the peak count for ``poisson`` (the
    Anscombe transform 2 sqrt(peak y) has unit variance, so peak = 1 / std(2 sqrt(y))^2);
    None for another noise model.

    >>> import torch
    >>> g = torch.Generator().manual_seed(0)
    >>> counts = torch.poisson(torch.full((96, 96), 0.5 * 400.0), generator=g)
    >>> round(estimate_noise_level("poisson", counts / 400) / 400, 1)
    1.0
    """
    array = np.asarray(images.detach().cpu() if isinstance(images, Tensor) else images,
                       dtype=np.float64)
    if noise == "gaussian":
        return estimate_noise_std(array)
    if noise == "speckle":
        return estimate_noise_std(np.log(np.maximum(array, LOG_FLOOR)), math.log(LOG_FLOOR), 0.0)
    if noise == "poisson":
        std = estimate_noise_std(2 * np.sqrt(np.clip(array, 0, None)), 0.0, 2.0)
        return math.inf if std == 0 else 1 / std**2
    return None
