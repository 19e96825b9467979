"""Loading a measured CT sinogram (``pyrodip run --task ct --observed``).

Unlike an image, a sinogram keeps its values: a ``.npy`` array is taken as it is (any scale:
the CT task rescales it), so that y = A x stays linear; another format is read as an image
(:func:`~pyrodip.io.images.load_image`, values in [0, 1]). The layout is
``skimage.transform.radon``'s: detectors along the rows, one column per angle.

>>> import tempfile, pathlib
>>> path = pathlib.Path(tempfile.mkdtemp()) / "sinogram.npy"
>>> np.save(path, np.full((64, 45), 30.0))
>>> load_sinogram(path).shape
torch.Size([1, 64, 45])
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from ..errors import InvalidInputError, MissingFileError
from .images import load_image
from .raster import read_npy

__all__ = ["load_sinogram"]


def load_sinogram(source: str | os.PathLike) -> torch.Tensor:
    """A sinogram file as a float32 tensor (1, detectors, angles)."""
    path = Path(source)
    if str(source).startswith("sample:") or path.suffix.lower() != ".npy":
        return torch.from_numpy(load_image(source)[:1])
    if not path.is_file():
        raise MissingFileError(f"sinogram file not found: {path} (check the path)")
    array = read_npy(path)
    if array.ndim == 3 and array.shape[0] == 1:
        array = array[0]
    if array.ndim != 2 or array.dtype.kind not in "iuf" or 0 in array.shape:
        raise InvalidInputError(
            f"{path} holds an array of shape {array.shape} ({array.dtype}): save the sinogram "
            "as a 2-D numeric array (real numbers), detectors x angles"
        )
    with np.errstate(over="ignore", invalid="ignore"):
        values = np.ascontiguousarray(array, dtype=np.float32)
    if not np.isfinite(values).all():
        raise InvalidInputError(
            f"{path}: the sinogram holds NaN or infinite values, or values beyond float32: fix "
            "them"
        )
    return torch.from_numpy(values)[None]
