"""Pixel arrays as pyrodip's images, float32 ``(C, H, W)`` in ``[0, 1]``, and what every
format's reader shares: the scaling rules (see :mod:`pyrodip.io.images`) and the wording of
a read error.

>>> to_chw(np.array([[0, 128], [255, 64]], dtype=np.uint8), "tiny").shape
(1, 2, 2)
>>> min_max(np.array([2.0, 4.0, 6.0]), "tiny").tolist()
[0.0, 0.5, 1.0]
"""

from __future__ import annotations

import contextlib
import logging
import math
import warnings
from collections.abc import Iterator, Sequence

import numpy as np

from ..errors import InvalidInputError

__all__ = ["CHANNEL_COUNTS", "MAX_VALUES", "SUPPORTED_FORMATS", "check_size", "first_line",
           "min_max", "quiet_libraries", "to_chw", "to_unit_range", "value_span"]

SUPPORTED_FORMATS = "PNG, JPEG, TIFF, DICOM (.dcm), NIfTI (.nii, .nii.gz) or NumPy (.npy)"
CHANNEL_COUNTS = (1, 2, 3, 4)
"""Channels last: gray, gray + alpha, RGB, RGBA."""
_CHANNELS_FIRST_COUNTS = (1, 3, 4)  # channels first: gray, RGB, RGBA


#: The most values (pixels times channels, or voxels) a reader decodes: a file that declares
#: more (a decompression bomb, or an image far beyond memory) is refused before it is decoded.
MAX_VALUES = 2**29


def check_size(shape: Sequence[int], name: str) -> None:
    """Refuse a file (``name``) whose header declares more than :data:`MAX_VALUES` values.

    >>> check_size((512, 512, 300), "scan.nii")
    >>> check_size((65535, 65535), "bomb.png")
    Traceback (most recent call last):
    ...
    pyrodip.errors.InvalidInputError: bomb.png declares 65535 x 65535 values (4.29e+09), more than pyrodip reads (5.37e+08): crop or downsample it first
    """  # noqa: E501
    count = math.prod(int(n) for n in shape)
    if count > MAX_VALUES:
        raise InvalidInputError(
            f"{name} declares {' x '.join(str(int(n)) for n in shape)} values ({count:.3g}), "
            f"more than pyrodip reads ({MAX_VALUES:.3g}): crop or downsample it first"
        )


#: The libraries that read image files: what they log or warn about a malformed file.
READER_LIBRARIES = ("imageio", "tifffile", "PIL", "pydicom", "nibabel")


@contextlib.contextmanager
def quiet_libraries() -> Iterator[None]:
    """Hold back what the image libraries (:data:`READER_LIBRARIES`) log and warn while they
    read a file: pyrodip reports the outcome itself, the image or one line naming the problem.

    >>> with quiet_libraries():
    ...     logging.getLogger("tifffile").warning("not shown")
    """
    loggers = [logging.getLogger(name) for name in READER_LIBRARIES] + [
        logger for name, logger in logging.root.manager.loggerDict.items()
        if isinstance(logger, logging.Logger) and name.split(".")[0] in READER_LIBRARIES
    ]
    disabled = [logger.disabled for logger in loggers]
    for logger in loggers:
        logger.disabled = True
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for logger, was in zip(loggers, disabled, strict=True):
            logger.disabled = was


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
    return min_max(values, name)


def min_max(values: np.ndarray, name: str) -> np.ndarray:
    """Map the smallest value to 0 and the largest to 1 (a constant image becomes zeros);
    ``name`` labels the error of values too far apart to scale."""
    low, high = values.min(), values.max()
    if high == low:
        return np.zeros_like(values)
    return (values - low) / value_span(low, high, name)


def value_span(low: float, high: float, name: str) -> float:
    """``high - low``, refused unless a finite positive number (values near the limits of
    floating point); ``name`` labels the error.

    >>> value_span(-1.0, 1.0, "a")
    2.0
    >>> value_span(-1e308, 1e308, "huge.npy")
    Traceback (most recent call last):
    ...
    pyrodip.errors.InvalidInputError: huge.npy: its values run from -1e+308 to 1e+308, beyond what floating point can scale: rescale them
    """  # noqa: E501
    with np.errstate(over="ignore"):
        span = high - low
    if not (np.isfinite(span) and span > 0):
        raise InvalidInputError(
            f"{name}: its values run from {low:g} to {high:g}, beyond what floating point can "
            "scale: rescale them"
        )
    return span


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
