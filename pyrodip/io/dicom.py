"""DICOM files and series: detection, pixels decoded and rescaled, one slice read as an image,
a series read as a volume, and a derived series written (see :mod:`pyrodip.io.volumes` for
the rules).

>>> from pydicom.data import get_testdata_file
>>> path = Path(get_testdata_file("CT_small.dcm"))
>>> is_dicom(path), read_dicom(path).shape
(True, (128, 128))
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom.dataset import FileMetaDataset
from pydicom.multival import MultiValue
from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid
from pydicom.valuerep import DSfloat

from ..errors import InvalidInputError
from .files import atomic_folder, atomic_path
from .pixels import (
    SUPPORTED_FORMATS,
    check_size,
    first_line,
    min_max,
    quiet_libraries,
    to_unit_range,
)

__all__ = [
    "DICOM_SUFFIXES", "is_dicom", "read_dicom", "read_dicom_series", "write_dicom_series",
]

DICOM_SUFFIXES = {".dcm", ".dicom"}
_STORED_MAX = 65535  # written DICOM pixels are uint16
#: Tags that describe the input's stored pixels and would be wrong for the written ones.
_STALE_PIXEL_TAGS = (
    "LargestImagePixelValue",
    "SmallestImagePixelValue",
    "LargestPixelValueInSeries",
    "SmallestPixelValueInSeries",
    "PixelPaddingValue",
    "PixelPaddingRangeLimit",
    "ModalityLUTSequence",
    "VOILUTSequence",
    "RealWorldValueMappingSequence",
    "NumberOfFrames",
)
_WINDOW_TAGS = ("WindowCenter", "WindowWidth", "WindowCenterWidthExplanation", "VOILUTFunction")


def is_dicom(path: Path) -> bool:
    """Whether the file starts with the DICOM preamble and the ``DICM`` marker."""
    try:
        with open(path, "rb") as handle:
            return handle.read(132)[128:] == b"DICM"
    except OSError:
        return False


def _dicom_number(dataset: pydicom.Dataset, keyword: str) -> float | None:
    """The (first) value of a numeric DICOM attribute, or None when absent or empty; a value
    that is no finite number is refused, naming the file."""
    value = dataset.get(keyword)
    if isinstance(value, MultiValue | list | tuple):
        value = value[0] if len(value) else None
    if value is None or value == "":
        return None
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        number = float("nan")
    if not np.isfinite(number):
        raise InvalidInputError(
            f"DICOM file {dataset.get('filename', '(in memory)')} has {keyword} {str(value)!r}, "
            "not a finite number: fix or remove it"
        )
    return number


def _dicom_pixels(path: Path, dataset: pydicom.Dataset) -> np.ndarray:
    """A DICOM dataset's decoded pixels (their declared size checked first), or an error."""
    sizes = ("NumberOfFrames", "Rows", "Columns", "SamplesPerPixel")
    check_size([_dicom_number(dataset, key) or 1 for key in sizes], f"DICOM file {path}")
    try:
        with quiet_libraries():
            return np.asarray(dataset.pixel_array)
    except Exception as exc:
        raise InvalidInputError(
            f"cannot decode the pixels of DICOM file {path} ({first_line(exc)}): convert it "
            "to uncompressed DICOM or to PNG/TIFF"
        ) from exc


def _rescaled(path: Path, pixels: np.ndarray, dataset: pydicom.Dataset) -> np.ndarray:
    """Gray pixels with the dataset's RescaleSlope and RescaleIntercept applied (float64)."""
    slope = _dicom_number(dataset, "RescaleSlope")
    intercept = _dicom_number(dataset, "RescaleIntercept")
    with np.errstate(over="ignore", invalid="ignore"):
        values = (pixels * (1.0 if slope is None else slope)
                  + (0.0 if intercept is None else intercept))
    if not np.isfinite(values).all():
        raise InvalidInputError(
            f"DICOM file {path}: its pixels, RescaleSlope {slope} and RescaleIntercept "
            f"{intercept} give values beyond floating point: fix the rescale attributes"
        )
    return values


def read_dicom(path: Path, force: bool = True) -> np.ndarray:
    """Read one DICOM slice scaled to ``[0, 1]``: rescaled, then its window when present, else
    min-max; MONOCHROME1 inverted; a colour slice scaled as a plain image. ``force=False``
    refuses a file without the DICOM marker."""
    try:
        with quiet_libraries():
            dataset = pydicom.dcmread(path, force=force)
    except Exception as exc:
        raise InvalidInputError(
            f"cannot read DICOM file {path} ({first_line(exc)}): use a valid "
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
        return to_unit_range(pixels, str(path))

    values = _rescaled(path, pixels, dataset)

    center = _dicom_number(dataset, "WindowCenter")
    width = _dicom_number(dataset, "WindowWidth")
    if center is not None and width is not None and width > 0:
        low = center - width / 2
        with np.errstate(over="ignore"):
            scaled = np.clip((values - low) / width, 0.0, 1.0)
    else:
        scaled = min_max(values, f"DICOM file {path}")
    if dataset.get("PhotometricInterpretation") == "MONOCHROME1":
        scaled = 1.0 - scaled
    return scaled


def read_dicom_series(where: Path, files: list[Path]) -> dict[str, Any]:
    """The fields of a :class:`~pyrodip.io.volumes.Volume` read from the DICOM ``files`` of
    ``where`` (a folder, or the one file): ``images`` sorted by position, ``low``, ``high``,
    ``inverted``, ``files`` and ``datasets`` (their headers, without pixels)."""
    label = f"folder {where}" if where.is_dir() else f"DICOM file {where}"
    force = not where.is_dir() and where.suffix.lower() in DICOM_SUFFIXES
    datasets = [_read_dataset(path, force) for path in files]

    for path, dataset in zip(files, datasets, strict=True):
        if "PixelData" not in dataset:
            raise InvalidInputError(
                f"DICOM file {path} has no pixel data: use DICOM images only, not reports or "
                "other non-image objects (move it out of the folder)"
            )
        samples = int(dataset.get("SamplesPerPixel", 1))
        if samples != 1:
            raise InvalidInputError(
                f"{label} holds colour images ({path.name}: SamplesPerPixel {samples}): use a "
                "gray series, or load one colour file as an image"
            )
    series = list(dict.fromkeys(str(ds.get("SeriesInstanceUID", "")) for ds in datasets))
    if len(series) > 1:
        shown = ", ".join(series[:3]) + (", ..." if len(series) > 3 else "")
        raise InvalidInputError(
            f"{label} holds {len(series)} series ({shown}): put each series in its own folder"
        )
    sizes = list(dict.fromkeys((ds.get("Rows"), ds.get("Columns")) for ds in datasets))
    if len(sizes) > 1:
        shown = ", ".join(f"{rows}x{columns}" for rows, columns in sizes)
        raise InvalidInputError(
            f"{label} holds slices of different sizes ({shown}): keep one series of one size "
            "in the folder"
        )

    check_size((len(files), *(int(n or 1) for n in sizes[0])), label)
    order = _slice_order(files, datasets)
    files = [files[i] for i in order]
    datasets = [datasets[i] for i in order]
    values = np.stack([_rescaled_pixels(p, ds) for p, ds in zip(files, datasets, strict=True)])
    for dataset in datasets:  # keep the headers only
        del dataset.PixelData

    window = _common_window(datasets)
    if window is not None:
        low, high = window
        images = np.clip((values - low) / (high - low), 0.0, 1.0)
    else:
        low, high = float(values.min()), float(values.max())
        high = high if high > low else low + 1.0
        images = min_max(values, label)
    inverted = datasets[0].get("PhotometricInterpretation") == "MONOCHROME1"
    if inverted:
        images = 1.0 - images
    return {
        "images": images.astype(np.float32),
        "low": low,
        "high": high,
        "inverted": inverted,
        "files": tuple(files),
        "datasets": tuple(datasets),
    }


def _read_dataset(path: Path, force: bool) -> pydicom.Dataset:
    try:
        with quiet_libraries():
            return pydicom.dcmread(path, force=force)
    except Exception as exc:
        raise InvalidInputError(
            f"cannot read DICOM file {path} ({first_line(exc)}): use a valid DICOM file"
        ) from exc


def _rescaled_pixels(path: Path, dataset: pydicom.Dataset) -> np.ndarray:
    """One file's pixels with RescaleSlope/RescaleIntercept applied (float64)."""
    pixels = _dicom_pixels(path, dataset)
    if pixels.ndim != 2:
        raise InvalidInputError(
            f"DICOM file {path} holds pixel data of shape {pixels.shape}, not a single slice: "
            "export single-frame slices"
        )
    return _rescaled(path, pixels, dataset)


def _vector(dataset: pydicom.Dataset, keyword: str, size: int) -> np.ndarray | None:
    """A numeric multi-valued attribute of ``size`` values, or None when absent or malformed."""
    try:
        vector = np.array([float(v) for v in dataset.get(keyword)], dtype=np.float64)
    except (TypeError, ValueError):
        return None
    return vector if vector.shape == (size,) else None


def _slice_order(files: list[Path], datasets: list[pydicom.Dataset]) -> list[int]:
    """Indices of the slices by position along the normal, else InstanceNumber, else name."""
    positions = [_vector(ds, "ImagePositionPatient", 3) for ds in datasets]
    orientation = _vector(datasets[0], "ImageOrientationPatient", 6)
    numbers = [_dicom_number(ds, "InstanceNumber") for ds in datasets]
    if orientation is not None and all(p is not None for p in positions):
        normal = np.cross(orientation[:3], orientation[3:])
        keys = [float(p @ normal) for p in positions]
    elif all(n is not None for n in numbers):
        keys = numbers
    else:
        keys = [0.0] * len(files)
    return sorted(range(len(files)), key=lambda i: (keys[i], files[i].name))


def _common_window(
    datasets: list[pydicom.Dataset] | tuple[pydicom.Dataset, ...],
) -> tuple[float, float] | None:
    """``(low, high)`` of the window every file shares (first values), or None."""
    windows = {(_dicom_number(ds, "WindowCenter"), _dicom_number(ds, "WindowWidth"))
               for ds in datasets}
    if len(windows) != 1:
        return None
    center, width = windows.pop()
    if center is None or width is None or width <= 0:
        return None
    low, high = center - width / 2, center + width / 2
    return (low, high) if np.isfinite(high - low) and high > low else None


def _ds(value: float) -> DSfloat:
    """A decimal string of at most 16 characters."""
    return DSfloat(float(value), auto_format=True)


def _as_written(value: float) -> float:
    """``value`` as a reader gets it back from its decimal string."""
    return float(str(_ds(value)))


def write_dicom_series(
    values: np.ndarray,
    folder: Path,
    *,
    datasets: tuple[pydicom.Dataset, ...],
    inverted: bool,
    first_slice: int,
    crop: tuple[int, int],
    std: bool,
    description: str,
) -> Path:
    """Write slices ``(Z', h, w)`` of source values as a series derived from ``datasets``
    (the input's, by slice; ``inverted``: MONOCHROME1), one file per slice, into ``folder``
    whole or not at all (:func:`~pyrodip.io.files.atomic_folder`)."""
    low, high = float(values.min()), float(values.max())
    slope = _as_written((high - low) / _STORED_MAX if high > low else 1.0)
    intercept = _as_written(low)
    stored = np.clip(np.rint((values - intercept) / slope), 0, _STORED_MAX).astype(np.uint16)
    if std:
        window: tuple[float, float] | None = (0.0, high)
    elif _common_window(datasets) is None:
        window = (low, high)
    else:
        window = None  # the input's window, kept
    series_uid = generate_uid()
    with atomic_folder(folder) as tmp:
        for offset, pixels in enumerate(stored):
            index = first_slice + offset
            dataset = _derived_dataset(
                datasets[index], pixels, crop=crop, series_uid=series_uid,
                instance=index + 1, slope=slope, intercept=intercept, window=window,
                monochrome1=inverted and not std, std=std, description=description,
            )
            with atomic_path(tmp / f"IM{index:04d}.dcm") as file:
                _write_dicom_file(dataset, file)
    return folder


def _derived_dataset(
    source: pydicom.Dataset,
    pixels: np.ndarray,
    *,
    crop: tuple[int, int],
    series_uid: str,
    instance: int,
    slope: float,
    intercept: float,
    window: tuple[float, float] | None,
    monochrome1: bool,
    std: bool,
    description: str,
) -> pydicom.Dataset:
    """A copy of ``source`` (geometry, patient and study kept) holding new uint16 pixels."""
    dataset = copy.deepcopy(source)
    for keyword in _STALE_PIXEL_TAGS + (_WINDOW_TAGS if window else ()):
        if keyword in dataset:
            delattr(dataset, keyword)
    sop_class = dataset.get("SOPClassUID") or SecondaryCaptureImageStorage
    sop_instance = generate_uid()
    dataset.file_meta = FileMetaDataset()
    dataset.file_meta.MediaStorageSOPClassUID = sop_class
    dataset.file_meta.MediaStorageSOPInstanceUID = sop_instance
    dataset.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    dataset.SOPClassUID = sop_class
    dataset.SOPInstanceUID = sop_instance
    dataset.SeriesInstanceUID = series_uid
    number = _dicom_number(source, "SeriesNumber")
    dataset.SeriesNumber = int(number or 0) + (2000 if std else 1000)
    dataset.SeriesDescription = description[:64]
    dataset.ImageType = ["DERIVED", "SECONDARY"]
    dataset.InstanceNumber = instance

    position = _vector(source, "ImagePositionPatient", 3)
    orientation = _vector(source, "ImageOrientationPatient", 6)
    spacing = _vector(source, "PixelSpacing", 2)
    if position is not None and orientation is not None and spacing is not None:
        # columns step along the row cosines by the column spacing, rows along the column ones
        top, left = crop
        position += left * spacing[1] * orientation[:3] + top * spacing[0] * orientation[3:]
        dataset.ImagePositionPatient = [_ds(v) for v in position]

    photometric = "MONOCHROME1" if monochrome1 else "MONOCHROME2"
    dataset.set_pixel_data(pixels, photometric, 16, generate_instance_uid=False)
    dataset.RescaleSlope = _ds(slope)
    dataset.RescaleIntercept = _ds(intercept)
    if window is not None:
        low, high = window
        width = high - low if high > low else 1.0
        dataset.WindowCenter = _ds(low + width / 2)
        dataset.WindowWidth = _ds(width)
    return dataset


def _write_dicom_file(dataset: pydicom.Dataset, path: Path) -> None:
    pydicom.dcmwrite(path, dataset, enforce_file_format=True)
