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
import pydicom
from pydicom.multival import MultiValue
from torch import Tensor

from ..errors import InvalidInputError, MissingFileError
from .samples import SAMPLES

__all__ = [
    "SUPPORTED_FORMATS",
    "center_crop",
    "load_image",
]

SUPPORTED_FORMATS = "PNG, JPEG, TIFF, DICOM (.dcm), NIfTI (.nii, .nii.gz) or NumPy (.npy)"
# imageio plugin for each raster suffix (naming it stops imageio from trying legacy plugins)
_RASTER_PLUGINS = {
    ".png": "pillow",
    ".jpg": "pillow",
    ".jpeg": "pillow",
    ".tif": "tifffile",
    ".tiff": "tifffile",
}
_DICOM_SUFFIXES = {".dcm", ".dicom"}
_NIFTI_SUFFIXES = (".nii", ".nii.gz")
_CHANNEL_COUNTS = (1, 2, 3, 4)  # channels last: gray, gray + alpha, RGB, RGBA
_CHANNELS_FIRST_COUNTS = (1, 3, 4)  # channels first: gray, RGB, RGBA

ImageT = TypeVar("ImageT", np.ndarray, Tensor)


def _first_line(exc: BaseException) -> str:
    """The first line of an exception's message (or its type name when it has none)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _to_unit_range(array: np.ndarray, name: str) -> np.ndarray:
    """Scale pixel values to [0, 1] by the rules in the module docstring (float64 result)."""
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
    return _min_max(values)


def _min_max(values: np.ndarray) -> np.ndarray:
    """Map the smallest value to 0 and the largest to 1 (a constant image becomes zeros)."""
    low, high = values.min(), values.max()
    if high == low:
        return np.zeros_like(values)
    return (values - low) / (high - low)


def _to_chw(array: np.ndarray, name: str) -> np.ndarray:
    """Turn a 2-D, channels-last or channels-first image into float32 (C, H, W) in [0, 1].

    A 3-D array is read as channels-last when its last axis has 1 to 4 entries (2 being gray
    and alpha), else as channels-first when its first axis has 1, 3 or 4.
    """
    array = np.asarray(array)
    if array.ndim == 2:
        array = array[:, :, np.newaxis]
    elif array.ndim == 3 and array.shape[-1] in _CHANNEL_COUNTS:
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
    array = _to_unit_range(array, name)
    if array.shape[-1] == 3 and (array[..., :1] == array[..., 1:]).all():
        array = array[..., :1]
    chw = np.moveaxis(np.clip(array, 0.0, 1.0), -1, 0)
    return np.ascontiguousarray(chw, dtype=np.float32)


def _read_raster(path: Path) -> np.ndarray:
    """Read a PNG, JPEG or TIFF file with imageio (a dependency of scikit-image)."""
    import imageio.v3 as iio

    try:
        array = np.asarray(iio.imread(path, plugin=_RASTER_PLUGINS[path.suffix.lower()]))
    except Exception as exc:  # imageio and its plugins raise many different types
        raise InvalidInputError(
            f"cannot read image file {path} ({_first_line(exc)}): use a valid "
            f"{SUPPORTED_FORMATS} file"
        ) from exc
    if array.ndim > 3 or (array.ndim == 3 and array.shape[-1] not in _CHANNEL_COUNTS):
        raise InvalidInputError(
            f"{path} holds several images (array shape {array.shape}): save a single 2-D image"
        )
    return array


def _read_npy(path: Path) -> np.ndarray:
    """Read a NumPy ``.npy`` array (pickles are refused)."""
    try:
        return np.load(path, allow_pickle=False)
    except Exception as exc:
        raise InvalidInputError(
            f"cannot read NumPy file {path} ({_first_line(exc)}): save a numeric array with "
            "numpy.save"
        ) from exc


def _read_dicom(path: Path, force: bool = True) -> np.ndarray:
    """Read one DICOM slice and scale it to [0, 1] (window when present, else min-max)."""
    try:
        dataset = pydicom.dcmread(path, force=force)
    except Exception as exc:
        raise InvalidInputError(
            f"cannot read DICOM file {path} ({_first_line(exc)}): use a valid "
            f"{SUPPORTED_FORMATS} file"
        ) from exc
    if "PixelData" not in dataset:
        raise InvalidInputError(
            f"DICOM file {path} has no pixel data: use a DICOM image, not a report or other "
            "non-image object"
        )
    pixels = _dicom_pixels(path, dataset)
    samples_per_pixel = int(dataset.get("SamplesPerPixel", 1))
    if pixels.ndim != (2 if samples_per_pixel == 1 else 3):
        raise InvalidInputError(
            f"DICOM file {path} holds pixel data of shape {pixels.shape}, not a single slice: "
            "export one slice"
        )
    if samples_per_pixel != 1:  # colour: no rescale or window
        return _to_unit_range(pixels, str(path))

    values = _rescaled(pixels, dataset)

    center = _dicom_number(dataset, "WindowCenter")
    width = _dicom_number(dataset, "WindowWidth")
    if center is not None and width is not None and width > 0:
        low = center - width / 2
        scaled = np.clip((values - low) / width, 0.0, 1.0)
    else:
        scaled = _min_max(values)
    if dataset.get("PhotometricInterpretation") == "MONOCHROME1":
        scaled = 1.0 - scaled
    return scaled


def _dicom_pixels(path: Path, dataset: pydicom.Dataset) -> np.ndarray:
    """A DICOM dataset's decoded pixels, or an error naming the file."""
    try:
        return np.asarray(dataset.pixel_array)
    except Exception as exc:
        raise InvalidInputError(
            f"cannot decode the pixels of DICOM file {path} ({_first_line(exc)}): convert it "
            "to uncompressed DICOM or to PNG/TIFF"
        ) from exc


def _rescaled(pixels: np.ndarray, dataset: pydicom.Dataset) -> np.ndarray:
    """Gray pixels with the dataset's RescaleSlope and RescaleIntercept applied (float64)."""
    slope = _dicom_number(dataset, "RescaleSlope")
    intercept = _dicom_number(dataset, "RescaleIntercept")
    return pixels * (1.0 if slope is None else slope) + (0.0 if intercept is None else intercept)


def _dicom_number(dataset: pydicom.Dataset, keyword: str) -> float | None:
    """The (first) value of a numeric DICOM attribute, or None when absent or empty."""
    value = dataset.get(keyword)
    if isinstance(value, MultiValue | list | tuple):
        value = value[0] if len(value) else None
    if value is None or value == "":
        return None
    return float(value)


def _is_dicom(path: Path) -> bool:
    """Whether the file starts with the DICOM preamble and the ``DICM`` marker."""
    try:
        with open(path, "rb") as handle:
            return handle.read(132)[128:] == b"DICM"
    except OSError:
        return False


def _is_nifti(path: Path) -> bool:
    """Whether the file name ends in ``.nii`` or ``.nii.gz`` (any case)."""
    return path.name.lower().endswith(_NIFTI_SUFFIXES)


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
        return _to_chw(SAMPLES[source.removeprefix("sample:")](), source)

    path = Path(source)
    if not path.exists():
        raise MissingFileError(f"image file not found: {path} (check the path)")
    if path.is_dir() or (path.is_file() and _is_nifti(path)):
        from .volumes import read_volume  # volumes builds on this module

        return read_volume(path, volume_index).image(slice_index)
    if not path.is_file():
        raise InvalidInputError(f"image path {path} is not a file: name an image file")

    suffix = path.suffix.lower()
    if suffix == ".npy":
        array = _read_npy(path)
    elif suffix in _DICOM_SUFFIXES:
        array = _read_dicom(path)
    elif suffix in _RASTER_PLUGINS:
        array = _read_raster(path)
    elif _is_dicom(path):
        array = _read_dicom(path, force=False)
    else:
        raise InvalidInputError(
            f"unknown image format of {path} (suffix {suffix!r}, no DICOM marker): use a "
            f"{SUPPORTED_FORMATS} file"
        )
    return _to_chw(array, str(path))


def center_crop(image: ImageT, multiple: int) -> ImageT:
    """Crop the last two axes centrally to the largest multiples of ``multiple``.

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

