"""Volumes: a NIfTI file or a DICOM series read as oriented 2-D slices, and per-slice results
(a reconstruction, its std) written back in the same format and geometry.

Reading (:func:`read_volume`) maps the whole volume to ``[0, 1]`` by one rule, so that every
slice shares one scale (``value = low + x * (high - low)``):

* NIfTI (2-D, 3-D ``(X, Y, Z)`` or 4-D ``(X, Y, Z, T)`` with ``volume_index`` choosing ``T``):
  the header's ``scl_slope``/``scl_inter`` applied; on-disk ``uint8`` is divided by 255, floats
  already within ``[0, 1]`` are kept, anything else is min-max scaled over the volume. Slice
  ``k`` runs along the third voxel axis, shown as radiologists view it (see :func:`_orient`).
* DICOM series (a folder's DICOM files, or one file as a series of one): RescaleSlope and
  RescaleIntercept applied per file; the window ``[center - width/2, center + width/2]`` when
  every file has the same WindowCenter/WindowWidth (values outside clipped), else min-max
  over the series; MONOCHROME1 inverted so that bright means high. Slices are sorted by
  ImagePositionPatient along the slice normal, else by InstanceNumber, else by file name.

Writing (:func:`write_volume`) puts results at their place in patient space beside the input:
a NIfTI file with the input's header and an affine moved to the written block, or a folder of
DICOM files derived from the input's (new UIDs, ``DERIVED\\SECONDARY``, series number
+1000 for a reconstruction and +2000 for a std, 16-bit pixels with RescaleSlope/Intercept).

>>> from pydicom.data import get_testdata_file
>>> volume = read_volume(get_testdata_file("CT_small.dcm"))
>>> volume.kind, volume.images.shape, volume.low, volume.high
('dicom', (1, 128, 128), -896.0, 1167.0)
"""

from __future__ import annotations

import contextlib
import copy
import gzip
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom.dataset import FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid
from pydicom.valuerep import DSfloat

from ..errors import InvalidInputError, MissingFileError, OutputError
from .files import _output_error, atomic_path
from .images import (
    _DICOM_SUFFIXES,
    _RASTER_PLUGINS,
    _dicom_number,
    _dicom_pixels,
    _first_line,
    _is_dicom,
    _is_nifti,
    _rescaled,
)

__all__ = ["Volume", "is_volume_source", "read_volume", "write_volume"]

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


@dataclass
class Volume:
    """A volume as ``(Z, H, W)`` float32 slices in ``[0, 1]``, with what writing back needs.

    ``images[k]`` is slice ``k`` exactly as ``load_image(source, slice_index=k)`` shows it;
    ``low`` and ``high`` are the source values of 0 and 1 (see :meth:`to_source_units`).
    """

    images: np.ndarray
    source: Path
    kind: str  # "nifti" or "dicom"
    low: float
    high: float
    inverted: bool = False  # MONOCHROME1: x = 1 - (value - low) / (high - low)
    # NIfTI: the header (a copy), its affine, the 4-D volume read, the voxel axes' codes
    header: Any = None
    affine: np.ndarray | None = None
    volume_index: int | None = None
    axcodes: tuple[str, ...] = ()
    # DICOM: the files sorted by position and their datasets, read without pixels
    files: tuple[Path, ...] = ()
    datasets: tuple[pydicom.Dataset, ...] = ()

    @property
    def slice_count(self) -> int:
        """The number of slices ``Z``."""
        return int(self.images.shape[0])

    def image(self, slice_index: int | None = None) -> np.ndarray:
        """Slice ``slice_index`` (default the middle one, ``Z // 2``) as ``(1, H, W)``."""
        label, count = ("NIfTI" if self.kind == "nifti" else "DICOM"), self.slice_count
        if slice_index is None:
            return self.images[count // 2][None].copy()
        if isinstance(slice_index, bool) or not isinstance(slice_index, int | np.integer):
            raise InvalidInputError(
                f"{label} slice must be an integer, got {slice_index!r}: choose `slice_index` "
                f"in 0-{count - 1}"
            )
        index = int(slice_index)
        if not 0 <= index < count:
            raise InvalidInputError(
                f"{label} slice {index} is out of range: the volume has {count} "
                f"slice{'s' if count != 1 else ''} (0-{count - 1}); choose `slice_index` in "
                "that range"
            )
        return self.images[index][None].copy()

    def to_source_units(self, image: np.ndarray, std: bool = False) -> np.ndarray:
        """Map ``[0, 1]`` values back to source units (float64); ``std=True`` scales only.

        >>> volume = Volume(np.zeros((1, 2, 2), np.float32), Path("v.nii"), "nifti", -1000, 1000)
        >>> volume.to_source_units(np.array([0.0, 0.5, 1.0])).tolist()
        [-1000.0, 0.0, 1000.0]
        >>> volume.to_source_units(np.array([0.1]), std=True).tolist()
        [200.0]
        """
        image = np.asarray(image, dtype=np.float64)
        span = self.high - self.low
        if std:
            return image * span
        if self.inverted:
            image = 1.0 - image
        return self.low + image * span


def is_volume_source(path: str | os.PathLike) -> bool:
    """Whether ``path`` names a volume: a NIfTI file, a DICOM file or a folder (a series).

    A missing path counts when its name ends in ``.nii``, ``.nii.gz``, ``.dcm`` or ``.dicom``.

    >>> is_volume_source("sample:ct"), is_volume_source("scan.nii.gz"), is_volume_source("a.png")
    (False, True, False)
    """
    if isinstance(path, str) and path.startswith("sample:"):
        return False
    path = Path(path)
    suffix = path.suffix.lower()
    if path.is_dir() or _is_nifti(path) or suffix in _DICOM_SUFFIXES:
        return True
    if suffix in _RASTER_PLUGINS or suffix == ".npy":
        return False
    return path.is_file() and _is_dicom(path)


def read_volume(path: str | os.PathLike, volume_index: int | None = None) -> Volume:
    """Read a NIfTI file, a DICOM series folder or one DICOM file (see the module docstring).

    ``volume_index`` chooses the volume of a 4-D NIfTI file (needed when it holds several).
    """
    path = Path(path)
    if not path.exists():
        raise MissingFileError(f"volume not found: {path} (check the path)")
    if path.is_dir():
        return _read_dicom_series(path, _series_files(path), volume_index)
    if _is_nifti(path):
        return _read_nifti(path, volume_index)
    if path.suffix.lower() in _DICOM_SUFFIXES or _is_dicom(path):
        return _read_dicom_series(path, [path], volume_index)
    raise InvalidInputError(
        f"{path} is not a volume: name a NIfTI file (.nii, .nii.gz), a DICOM file or a folder "
        "holding one DICOM series"
    )


def write_volume(
    volume: Volume,
    images: np.ndarray,
    out: Path,
    name: str,
    *,
    first_slice: int,
    crop: tuple[int, int] = (0, 0),
    std: bool = False,
    description: str = "",
) -> Path:
    """Write slices ``first_slice ..`` of ``volume`` (``images``: ``(Z', h, w)`` in ``[0, 1]``
    units, each cropped at ``crop = (top, left)``) beside the input, in its format.

    NIfTI: ``out / f"{name}.nii.gz"``, float32 in source units. DICOM: a folder ``out / name``
    with one file per slice, written whole or not at all (an existing one is replaced).
    ``std=True`` writes a standard deviation (scaled only, windowed ``[0, max]``). Returns the
    path written.

    >>> import tempfile
    >>> from pydicom.data import get_testdata_file
    >>> volume = read_volume(get_testdata_file("CT_small.dcm"))
    >>> out = Path(tempfile.mkdtemp())
    >>> write_volume(volume, volume.images[:, 32:96, 32:96], out, "crop", first_slice=0,
    ...              crop=(32, 32), description="centre").name
    'crop'
    >>> read_volume(out / "crop").images.shape
    (1, 64, 64)
    """
    images = np.asarray(images)
    _check_block(volume, images, first_slice, crop)
    if not name or Path(name).name != name or name in (".", ".."):
        raise InvalidInputError(f"output name {name!r} must be a plain file name, not a path")
    values = volume.to_source_units(images, std=std)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if volume.kind == "nifti":
        return _write_nifti(volume, values, out / f"{name}.nii.gz", first_slice, crop, std,
                            description)
    return _write_dicom(volume, values, out / name, first_slice, crop, std, description)


# --- NIfTI -----------------------------------------------------------------------------------


def _nibabel(path: Path) -> Any:
    """The nibabel module, or an error saying how to install it."""
    try:
        import nibabel
    except ImportError as exc:
        raise InvalidInputError(
            f"reading NIfTI file {path} needs nibabel, which is not installed: pip install nibabel"
        ) from exc
    return nibabel


def _flips(axcodes: tuple[str, ...]) -> tuple[bool, bool]:
    """Whether the shown rows and columns run against the second and first voxel axes."""
    return axcodes[1] in ("A", "S"), axcodes[0] in ("R", "A")


def _orient(data: np.ndarray, axcodes: tuple[str, ...]) -> np.ndarray:
    """Voxels ``(X, Y, Z)`` as slices ``(Z, H, W)``, shown as radiologists view them.

    Rows run along the second voxel axis and columns along the first, without resampling,
    each reversed where the affine says so: anterior (or superior) at the top and the
    patient's right (or anterior, in a sagittal slice) on the image's left. For RAS+ voxels
    (an identity affine) slice ``k`` is ``data[:, :, k].T[::-1, ::-1]``.
    """
    flip_rows, flip_cols = _flips(axcodes)
    slices = data.transpose(2, 1, 0)
    return slices[:, ::-1 if flip_rows else 1, ::-1 if flip_cols else 1]


def _unorient(slices: np.ndarray, axcodes: tuple[str, ...]) -> np.ndarray:
    """The inverse of :func:`_orient`: slices ``(Z, H, W)`` as voxels ``(X, Y, Z)``."""
    flip_rows, flip_cols = _flips(axcodes)
    return slices[:, ::-1 if flip_rows else 1, ::-1 if flip_cols else 1].transpose(2, 1, 0)


def _read_nifti(path: Path, volume_index: int | None) -> Volume:
    nibabel = _nibabel(path)
    try:
        nifti = nibabel.load(path)
        full_shape = tuple(int(n) for n in nifti.shape)
        axcodes = tuple(nibabel.orientations.aff2axcodes(nifti.affine))
    except Exception as exc:  # nibabel raises many different types
        raise InvalidInputError(
            f"cannot read NIfTI file {path} ({_first_line(exc)}): use a valid NIfTI file"
        ) from exc

    shape = full_shape
    while len(shape) > 3 and shape[-1] == 1:  # e.g. (X, Y, Z, 1): trailing unit axes
        shape = shape[:-1]
    if not 2 <= len(shape) <= 4:
        raise InvalidInputError(
            f"NIfTI file {path} holds an array of shape {full_shape}: save a 2-D image, a 3-D "
            "volume or a 4-D series of volumes"
        )
    count = shape[3] if len(shape) == 4 else 1
    index = _volume_number(volume_index, count, path)
    key: tuple[slice | int, ...] = (slice(None),) * min(len(shape), 3)
    key += ((index,) if len(shape) == 4 else ()) + (0,) * (len(full_shape) - len(shape))
    try:
        raw = np.asanyarray(nifti.dataobj[key])
    except Exception as exc:
        raise InvalidInputError(
            f"cannot read the voxels of NIfTI file {path} ({_first_line(exc)}): use a valid "
            "NIfTI file"
        ) from exc
    if raw.ndim == 2:
        raw = raw[:, :, np.newaxis]
    if 0 in raw.shape:
        raise InvalidInputError(f"NIfTI file {path} is empty (shape {full_shape}): use another")
    if not (np.issubdtype(raw.dtype, np.integer) or np.issubdtype(raw.dtype, np.floating)):
        raise InvalidInputError(
            f"NIfTI file {path} holds {raw.dtype} voxels: save real numbers (integers or floats)"
        )

    values = raw.astype(np.float64)
    if raw.dtype == np.uint8:
        low, high = 0.0, 255.0
    else:
        if not np.isfinite(values).all():
            raise InvalidInputError(
                f"NIfTI file {path} holds NaN or infinite voxels: replace them (e.g. with 0) "
                "before loading"
            )
        low, high = float(values.min()), float(values.max())
        if np.issubdtype(raw.dtype, np.floating) and low >= 0 and high <= 1:
            low, high = 0.0, 1.0
        elif high == low:
            high = low + 1.0
    images = (values - low) / (high - low)
    return Volume(
        images=np.ascontiguousarray(_orient(images, axcodes), dtype=np.float32),
        source=path,
        kind="nifti",
        low=low,
        high=high,
        header=nifti.header.copy(),
        affine=np.array(nifti.affine),
        volume_index=index if len(shape) == 4 else None,
        axcodes=axcodes,
    )


def _volume_number(volume_index: int | None, count: int, path: Path) -> int:
    """Check ``volume_index`` against a file of ``count`` volumes (None: the only one)."""
    if volume_index is None:
        if count > 1:
            raise InvalidInputError(
                f"NIfTI file {path} holds {count} volumes (4-D): choose one with "
                f"`volume_index=K` (0-{count - 1})"
            )
        return 0
    if isinstance(volume_index, bool) or not isinstance(volume_index, int | np.integer):
        raise InvalidInputError(
            f"volume must be an integer, got {volume_index!r}: choose `volume_index` in "
            f"0-{count - 1}"
        )
    if not 0 <= volume_index < count:
        raise InvalidInputError(
            f"volume {volume_index} is out of range: {path} holds {count} "
            f"volume{'s' if count != 1 else ''} (0-{count - 1}); choose `volume_index` in that "
            "range"
        )
    return int(volume_index)


def _write_nifti(
    volume: Volume,
    values: np.ndarray,
    path: Path,
    first_slice: int,
    crop: tuple[int, int],
    std: bool,
    description: str,
) -> Path:
    """Write float32 source values with the input's header, the affine moved to the block."""
    nibabel = _nibabel(volume.source)
    image_class = (
        nibabel.Nifti2Image if isinstance(volume.header, nibabel.Nifti2Header)
        else nibabel.Nifti1Image
    )
    header = image_class.header_class.from_header(volume.header)
    header.set_data_dtype(np.float32)
    header.set_slope_inter(None, None)  # the values are literal
    header["descrip"] = description.encode("ascii", "replace")[:79]
    if std:
        header["cal_min"] = header["cal_max"] = 0  # the input's display range is wrong for a std

    # Voxel (0, 0, 0) of the output is the input voxel shown at the block's first corner.
    flip_rows, flip_cols = _flips(volume.axcodes)
    (top, left), (height, width) = crop, values.shape[1:]
    full_height, full_width = volume.images.shape[1:]
    shift = np.eye(4)
    shift[:3, 3] = (
        full_width - left - width if flip_cols else left,
        full_height - top - height if flip_rows else top,
        first_slice,
    )
    for code_key, get, set_form in (
        ("qform_code", header.get_qform, header.set_qform),
        ("sform_code", header.get_sform, header.set_sform),
    ):
        set_form(get() @ shift, code=int(header[code_key]))

    data = np.ascontiguousarray(_unorient(values, volume.axcodes), dtype=np.float32)
    nifti = image_class(data, header.get_best_affine(), header)
    with atomic_path(path) as tmp:
        tmp.write_bytes(gzip.compress(nifti.to_bytes(), compresslevel=6))
    return path


# --- DICOM -----------------------------------------------------------------------------------


def _series_files(folder: Path) -> list[Path]:
    """The folder's top-level DICOM files (hidden files and DICOMDIR left out)."""
    files = [
        path
        for path in sorted(folder.iterdir())
        if path.is_file()
        and not path.name.startswith(".")
        and path.name.upper() != "DICOMDIR"
        and _is_dicom(path)
    ]
    if not files:
        raise InvalidInputError(
            f"folder {folder} holds no DICOM image (no file with the DICOM marker): put the "
            "series' DICOM files directly in it, or name a NIfTI or image file"
        )
    return files


def _read_dicom_series(where: Path, files: list[Path], volume_index: int | None) -> Volume:
    _volume_number(volume_index, 1, where)
    label = f"folder {where}" if where.is_dir() else f"DICOM file {where}"
    force = not where.is_dir() and where.suffix.lower() in _DICOM_SUFFIXES
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
        images = (values - low) / (high - low)
    inverted = datasets[0].get("PhotometricInterpretation") == "MONOCHROME1"
    if inverted:
        images = 1.0 - images
    return Volume(
        images=images.astype(np.float32),
        source=where,
        kind="dicom",
        low=low,
        high=high,
        inverted=inverted,
        files=tuple(files),
        datasets=tuple(datasets),
    )


def _read_dataset(path: Path, force: bool) -> pydicom.Dataset:
    try:
        return pydicom.dcmread(path, force=force)
    except Exception as exc:
        raise InvalidInputError(
            f"cannot read DICOM file {path} ({_first_line(exc)}): use a valid DICOM file"
        ) from exc


def _rescaled_pixels(path: Path, dataset: pydicom.Dataset) -> np.ndarray:
    """One file's pixels with RescaleSlope/RescaleIntercept applied (float64)."""
    pixels = _dicom_pixels(path, dataset)
    if pixels.ndim != 2:
        raise InvalidInputError(
            f"DICOM file {path} holds pixel data of shape {pixels.shape}, not a single slice: "
            "export single-frame slices"
        )
    return _rescaled(pixels, dataset)


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
    return center - width / 2, center + width / 2


def _ds(value: float) -> DSfloat:
    """A decimal string of at most 16 characters."""
    return DSfloat(float(value), auto_format=True)


def _as_written(value: float) -> float:
    """``value`` as a reader gets it back from its decimal string."""
    return float(str(_ds(value)))


def _write_dicom(
    volume: Volume,
    values: np.ndarray,
    folder: Path,
    first_slice: int,
    crop: tuple[int, int],
    std: bool,
    description: str,
) -> Path:
    """Write one derived DICOM file per slice into a new folder, then rename it into place."""
    low, high = float(values.min()), float(values.max())
    slope = _as_written((high - low) / _STORED_MAX if high > low else 1.0)
    intercept = _as_written(low)
    stored = np.clip(np.rint((values - intercept) / slope), 0, _STORED_MAX).astype(np.uint16)
    if std:
        window: tuple[float, float] | None = (0.0, high)
    elif _common_window(volume.datasets) is None:
        window = (low, high)
    else:
        window = None  # the input's window, kept
    series_uid = generate_uid()
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".tmp", dir=folder.parent))
    except OSError as error:
        raise _output_error(error, folder) from None
    try:
        for offset, pixels in enumerate(stored):
            index = first_slice + offset
            dataset = _derived_dataset(
                volume.datasets[index], pixels, crop=crop, series_uid=series_uid,
                instance=index + 1, slope=slope, intercept=intercept, window=window,
                monochrome1=volume.inverted and not std, std=std, description=description,
            )
            with atomic_path(tmp / f"IM{index:04d}.dcm") as file:
                _write_dicom_file(dataset, file)
        _replace(tmp, folder)
    except OutputError:
        raise
    except OSError as error:
        raise _output_error(error, folder) from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
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


def _replace(new: Path, path: Path) -> None:
    """Rename the folder ``new`` onto ``path``, replacing whatever is there."""
    old = new.with_name(new.name + ".old")
    had_old = path.exists() or path.is_symlink()
    if had_old:
        os.replace(path, old)
    try:
        os.replace(new, path)
    except OSError:
        if had_old:
            os.replace(old, path)
        raise
    if had_old:  # the new folder is in place: leaving the old one behind is no failure
        if old.is_dir() and not old.is_symlink():
            shutil.rmtree(old, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                old.unlink()


def _check_block(
    volume: Volume, images: np.ndarray, first_slice: int, crop: tuple[int, int]
) -> None:
    """Check that ``images`` is a block of consecutive cropped slices of ``volume``."""
    if images.ndim != 3 or 0 in images.shape:
        raise InvalidInputError(
            f"images to write must be shaped (slices, height, width), got {images.shape}"
        )
    count, height, width = images.shape
    full_height, full_width = volume.images.shape[1:]
    top, left = crop
    if not all(isinstance(n, int | np.integer) and not isinstance(n, bool)
               for n in (first_slice, top, left)):
        raise InvalidInputError(
            f"first_slice and crop must be integers, got {first_slice!r} and {crop!r}"
        )
    if not 0 <= first_slice <= volume.slice_count - count:
        raise InvalidInputError(
            f"cannot write {count} slices from slice {first_slice}: the volume has "
            f"{volume.slice_count}"
        )
    if not (0 <= top <= full_height - height and 0 <= left <= full_width - width):
        raise InvalidInputError(
            f"a {height}x{width} crop at {crop} does not fit the volume's "
            f"{full_height}x{full_width} slices"
        )
    if not np.isfinite(images).all():
        raise InvalidInputError("images to write hold NaN or infinite values: replace them")
