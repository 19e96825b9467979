"""Plain image files: PNG, JPEG and TIFF (read with imageio) and NumPy ``.npy`` arrays, read
as they are stored (scaling to ``[0, 1]`` is :func:`pyrodip.io.pixels.to_chw`'s).

>>> import tempfile
>>> path = Path(tempfile.mkdtemp()) / "zeros.npy"
>>> np.save(path, np.zeros((4, 5), np.uint8))
>>> read_npy(path).shape
(4, 5)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import InvalidInputError
from .pixels import CHANNEL_COUNTS, SUPPORTED_FORMATS, check_size, first_line, quiet_libraries

__all__ = ["RASTER_PLUGINS", "read_npy", "read_raster"]

RASTER_PLUGINS = {
    ".png": "pillow",
    ".jpg": "pillow",
    ".jpeg": "pillow",
    ".tif": "tifffile",
    ".tiff": "tifffile",
}
"""The imageio plugin for each raster suffix (naming it stops imageio trying legacy plugins)."""


def read_raster(path: Path) -> np.ndarray:
    """Read a PNG, JPEG or TIFF file (its suffix one of :data:`RASTER_PLUGINS`) with imageio
    (a dependency of scikit-image); a file of several images is refused."""
    import imageio.v3 as iio

    plugin = RASTER_PLUGINS[path.suffix.lower()]
    try:
        with quiet_libraries():
            shape = iio.improps(path, plugin=plugin).shape  # the header only
    except Exception as exc:  # imageio and its plugins raise many different types
        raise _unreadable(path, exc) from exc
    check_size(shape, f"image file {path}")
    try:
        with quiet_libraries():
            array = np.asarray(iio.imread(path, plugin=plugin))
    except Exception as exc:
        raise _unreadable(path, exc) from exc
    if array.ndim > 3 or (array.ndim == 3 and array.shape[-1] not in CHANNEL_COUNTS):
        raise InvalidInputError(
            f"{path} holds several images (array shape {array.shape}): save a single 2-D image"
        )
    return array


def _unreadable(path: Path, exc: Exception) -> InvalidInputError:
    return InvalidInputError(
        f"cannot read image file {path} ({first_line(exc)}): use a valid {SUPPORTED_FORMATS} "
        "file"
    )


def read_npy(path: Path) -> np.ndarray:
    """Read a NumPy ``.npy`` array (pickles are refused; its header is checked first, see
    :func:`~pyrodip.io.pixels.check_size`)."""
    try:
        with quiet_libraries():  # numpy warns of a header's sizes that overflow
            mapped = np.load(path, mmap_mode="r", allow_pickle=False)  # the header only
    except Exception as exc:
        raise InvalidInputError(
            f"cannot read NumPy file {path} ({first_line(exc)}): save a numeric array with "
            "numpy.save"
        ) from exc
    check_size(mapped.shape, f"NumPy file {path}")
    return np.array(mapped)
