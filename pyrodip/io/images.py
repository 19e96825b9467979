"""Loading images and centre cropping.

:func:`load_image` turns a file (PNG, JPEG, TIFF, DICOM, NIfTI or NumPy ``.npy``) or an
embedded sample (``"sample:NAME"``, see :data:`pyrodip.io.samples.SAMPLES`) into a float32
array shaped ``(C, H, W)`` with ``C`` in ``{1, 3}`` and values in ``[0, 1]``. The rules, in order:

* integers: ``uint8`` is divided by 255 and ``uint16`` by 65535; other integer types are
  min-max scaled;
* floats already within ``[0, 1]`` are kept, other floats are min-max scaled (a constant
  image becomes all zeros);
* DICOM: RescaleSlope/RescaleIntercept are applied; then, if the file has
  WindowCenter/WindowWidth, the window ``[center - width/2, center + width/2]`` is mapped to
  ``[0, 1]`` with values outside it clipped, otherwise the slice is min-max scaled;
  MONOCHROME1 images are inverted so that bright means high;
* NIfTI (``.nii``, ``.nii.gz``, read with nibabel) and DICOM series (a folder of DICOM
  files) are read as volumes by :func:`pyrodip.io.volumes.read_volume`, scaled over the whole
  volume (NIfTI: on-disk ``uint8`` divided by 255, floats within ``[0, 1]`` kept, anything
  else min-max scaled over the volume; a DICOM series: the rules above with the window that
  every file shares, else min-max over the series), and one oriented slice is taken;
* an alpha channel is dropped; RGB images whose three channels are identical become one
  channel; a 2-D image gets one channel.

>>> image = load_image("sample:phantom")
>>> image.shape, image.dtype
((1, 128, 128), dtype('float32'))
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import TypeVar

import numpy as np
from torch import Tensor

from ..errors import InvalidInputError, MissingFileError
from .dicom import DICOM_SUFFIXES, is_dicom, read_dicom
from .nifti import is_nifti
from .pixels import SUPPORTED_FORMATS, to_chw
from .raster import RASTER_PLUGINS, read_npy, read_raster
from .samples import SAMPLES
from .volumes import read_volume

__all__ = [
    "SUPPORTED_FORMATS",
    "center_crop",
    "load_image",
]

ImageT = TypeVar("ImageT", np.ndarray, Tensor)


def load_image(
    source: str | os.PathLike,
    slice_index: int | None = None,
    volume_index: int | None = None,
) -> np.ndarray:
    """Load an image file or an embedded sample as float32 ``(C, H, W)`` in ``[0, 1]``.

    ``source`` is ``"sample:NAME"`` (one of :data:`pyrodip.io.samples.SAMPLES`), the path
    of a PNG, JPEG, TIFF, DICOM, NIfTI (``.nii``, ``.nii.gz``) or ``.npy`` file, told apart
    by suffix (a file with another suffix, or none, is read as DICOM when it has the DICOM
    marker), or a folder holding one DICOM series. See the module docstring for the scaling
    rules.

    A NIfTI file or a DICOM folder is read with :func:`pyrodip.io.volumes.read_volume` (NIfTI
    needs nibabel: ``pip install nibabel``) and gives slice ``slice_index`` (default ``Z // 2``,
    the middle one): a 2-D NIfTI image is one slice, a 3-D volume ``(X, Y, Z)`` is sliced
    along its last axis, a 4-D series ``(X, Y, Z, T)`` needs ``volume_index`` when ``T > 1``.
    A NIfTI slice is shown as radiologists view it, without resampling: rows run along the
    second voxel axis and columns along the first, each reversed where the header's affine
    says so, so that anterior (or superior) is at the top and the patient's right (or
    anterior, in a sagittal slice) on the image's left. For a volume stored in RAS+ order
    (e.g. an identity affine) the image is ``volume[:, :, k].T[::-1, ::-1]``. DICOM slices are
    sorted by position and shown as stored. ``slice_index`` and ``volume_index`` are ignored
    for the other formats (a single DICOM file is one slice).

    >>> load_image("sample:ct").shape
    (1, 128, 128)
    >>> load_image("sample:ctt")
    Traceback (most recent call last):
    ...
    pyrodip.errors.InvalidInputError: unknown sample 'ctt': choose one of ct, mr, phantom, retina
    """
    if isinstance(source, str) and source.startswith("sample:"):
        return to_chw(SAMPLES[source.removeprefix("sample:")](), source)

    path = Path(source)
    if not path.exists():
        raise MissingFileError(f"image file not found: {path} (check the path)")
    if path.is_dir() or (path.is_file() and is_nifti(path)):
        return read_volume(path, volume_index).image(slice_index)
    if not path.is_file():
        raise InvalidInputError(f"image path {path} is not a file: name an image file")

    suffix = path.suffix.lower()
    if suffix == ".npy":
        array = read_npy(path)
    elif suffix in DICOM_SUFFIXES:
        array = read_dicom(path)
    elif suffix in RASTER_PLUGINS:
        array = read_raster(path)
    elif is_dicom(path):
        array = read_dicom(path, force=False)
    else:
        raise InvalidInputError(
            f"unknown image format of {path} (suffix {suffix!r}, no DICOM marker): use a "
            f"{SUPPORTED_FORMATS} file"
        )
    return to_chw(array, str(path))


def center_crop(image: ImageT, multiple: int) -> ImageT:
    """Crop the last two axes centrally to the largest multiples of ``multiple``: an
    `(..., H, W)` image becomes `(..., H', W')`, H' and W' multiples of ``multiple``.

    Works on NumPy arrays and torch tensors alike and returns the same type (a view).
    Warns (UserWarning) only when it actually crops.

    >>> center_crop(np.zeros((1, 64, 48)), 16).shape
    (1, 64, 48)
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     center_crop(np.zeros((1, 70, 50)), 16).shape
    (1, 64, 48)
    >>> "from 70x50 to 64x48" in str(caught[0].message)
    True
    """
    if isinstance(multiple, bool) or not isinstance(multiple, int) or multiple < 1:
        raise InvalidInputError(f"crop multiple must be a positive integer, got {multiple!r}")
    if image.ndim < 2:
        raise InvalidInputError(
            f"cannot crop an array of shape {tuple(image.shape)}: it needs height and width axes"
        )
    height, width = image.shape[-2:]
    for side in (height, width):
        if side < multiple:
            raise InvalidInputError(
                f"image side {side} is smaller than the network's minimum side {multiple}: "
                "use a larger image or fewer scales"
            )
    new_height = height - height % multiple
    new_width = width - width % multiple
    if (new_height, new_width) == (height, width):
        return image
    warnings.warn(
        f"center-cropping the image from {height}x{width} to {new_height}x{new_width} so that "
        f"both sides are multiples of {multiple}, as the network's down-sampling requires",
        UserWarning,
        stacklevel=2,
    )
    top = (height - new_height) // 2
    left = (width - new_width) // 2
    return image[..., top : top + new_height, left : left + new_width]

