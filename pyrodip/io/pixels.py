"""Pixel arrays as pyrodip's images, float32 ``(C, H, W)`` in ``[0, 1]``, and what every
format's reader shares: the scaling rules (see :mod:`pyrodip.io.images`) and the wording of
a read error.

>>> to_chw(np.array([[0, 128], [255, 64]], dtype=np.uint8), "tiny").shape
(1, 2, 2)
>>> min_max(np.array([2.0, 4.0, 6.0])).tolist()
[0.0, 0.5, 1.0]
"""

from __future__ import annotations

import numpy as np

from ..errors import InvalidInputError

__all__ = ["CHANNEL_COUNTS", "SUPPORTED_FORMATS", "first_line", "min_max", "to_chw",
           "to_unit_range"]

SUPPORTED_FORMATS = "PNG, JPEG, TIFF, DICOM (.dcm), NIfTI (.nii, .nii.gz) or NumPy (.npy)"
CHANNEL_COUNTS = (1, 2, 3, 4)
"""Channels last: gray, gray + alpha, RGB, RGBA."""
_CHANNELS_FIRST_COUNTS = (1, 3, 4)  # channels first: gray, RGB, RGBA


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (or its type name when it has none).

    >>> first_line(ValueError("bad header\\nmore detail")), first_line(KeyError())
    ('bad header', 'KeyError')
    """
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def to_unit_range(array: np.ndarray, name: str) -> np.ndarray:
    """Scale pixel values to ``[0, 1]`` (float64): ``uint8`` / 255, ``uint16`` / 65535, floats
    within ``[0, 1]`` kept, anything else min-max scaled; ``name`` labels the errors.

    >>> to_unit_range(np.array([0, 65535], dtype=np.uint16), "a").tolist()
    [0.0, 1.0]
    >>> to_unit_range(np.array([-2.0, 2.0]), "b").tolist()
    [0.0, 1.0]
    """
    if array.dtype == np.bool_:
        return array.astype(np.float64)
    if array.dtype == np.uint8:
        return array / 255.0
    if array.dtype == np.uint16:
        return array / 65535.0
    if not (np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)):
        raise InvalidInputError(
            f"{name}: pixel type {array.dtype} is not numeric: store integers or floats"
        )
    values = array.astype(np.float64)
    if not np.isfinite(values).all():
        raise InvalidInputError(
            f"{name}: the image contains NaN or infinite pixels: replace them before loading"
        )
    low, high = values.min(), values.max()
    if np.issubdtype(array.dtype, np.floating) and low >= 0 and high <= 1:
        return values
    return min_max(values)


def min_max(values: np.ndarray) -> np.ndarray:
    """Map the smallest value to 0 and the largest to 1 (a constant image becomes zeros)."""
    low, high = values.min(), values.max()
    if high == low:
        return np.zeros_like(values)
    return (values - low) / (high - low)


def to_chw(array: np.ndarray, name: str) -> np.ndarray:
    """Turn a 2-D, channels-last or channels-first image into float32 (C, H, W) in [0, 1].

    A 3-D array is read as channels-last when its last axis has 1 to 4 entries (2 being gray
    and alpha), else as channels-first when its first axis has 1, 3 or 4. Alpha is dropped
    and RGB with three equal channels becomes gray.
    """
    array = np.asarray(array)
    if array.ndim == 2:
        array = array[:, :, np.newaxis]
    elif array.ndim == 3 and array.shape[-1] in CHANNEL_COUNTS:
        pass
    elif array.ndim == 3 and array.shape[0] in _CHANNELS_FIRST_COUNTS:
        array = np.moveaxis(array, 0, -1)
    else:
        raise InvalidInputError(
            f"{name}: cannot use an image of shape {array.shape}: expected a 2-D gray image or "
            "a gray/RGB(A) image with channels first or last"
        )
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise InvalidInputError(f"{name}: the image is empty (shape {array.shape}): use another")
    if array.shape[-1] in (2, 4):  # drop alpha
        array = array[..., :-1]
    array = to_unit_range(array, name)
    if array.shape[-1] == 3 and (array[..., :1] == array[..., 1:]).all():
        array = array[..., :1]
    chw = np.moveaxis(np.clip(array, 0.0, 1.0), -1, 0)
    return np.ascontiguousarray(chw, dtype=np.float32)
