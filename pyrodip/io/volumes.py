"""Volumes: a NIfTI file or a DICOM series read as oriented 2-D slices, and per-slice results
(a reconstruction, its std) written back in the same format and geometry.

Reading (:func:`read_volume`) maps the whole volume to ``[0, 1]`` by one rule, so that every
slice shares one scale (``value = low + x * (high - low)``):

* NIfTI (2-D, 3-D ``(X, Y, Z)`` or 4-D ``(X, Y, Z, T)`` with ``volume_index`` choosing ``T``):
  the header's ``scl_slope``/``scl_inter`` applied; on-disk ``uint8`` is divided by 255, floats
  already within ``[0, 1]`` are kept, anything else is min-max scaled over the volume. Slice
  ``k`` runs along the third voxel axis, shown as radiologists view it (see
  :func:`~pyrodip.io.nifti.orient`).
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

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pydicom

from ..errors import InvalidInputError, MissingFileError
from .dicom import DICOM_SUFFIXES, is_dicom, read_dicom_series, write_dicom_series
from .nifti import is_nifti, read_nifti, volume_number, write_nifti
from .raster import RASTER_PLUGINS

__all__ = ["Volume", "is_volume_source", "read_volume", "series_files", "write_volume"]


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
    if path.is_dir() or is_nifti(path) or suffix in DICOM_SUFFIXES:
        return True
    if suffix in RASTER_PLUGINS or suffix == ".npy":
        return False
    return path.is_file() and is_dicom(path)


def series_files(folder: Path) -> list[Path]:
    """The folder's top-level DICOM files (hidden files and DICOMDIR left out)."""
    files = [
        path
        for path in sorted(folder.iterdir())
        if path.is_file()
        and not path.name.startswith(".")
        and path.name.upper() != "DICOMDIR"
        and is_dicom(path)
    ]
    if not files:
        raise InvalidInputError(
            f"folder {folder} holds no DICOM image (no file with the DICOM marker): put the "
            "series' DICOM files directly in it, or name a NIfTI or image file"
        )
    return files


def read_volume(path: str | os.PathLike, volume_index: int | None = None) -> Volume:
    """Read a NIfTI file, a DICOM series folder or one DICOM file (see the module docstring).

    ``volume_index`` chooses the volume of a 4-D NIfTI file (needed when it holds several).
    """
    if not is_volume_source(path) and (str(path).startswith("sample:") or Path(path).exists()):
        raise InvalidInputError(
            f"{path} is a single image, not a volume: `slices` needs a NIfTI volume (.nii, "
            ".nii.gz) or a DICOM series (a folder of DICOM files, or one DICOM file)"
        )
    path = Path(path)
    if not path.exists():
        raise MissingFileError(f"volume not found: {path} (check the path)")
    if path.is_dir():
        files = series_files(path)
    elif is_nifti(path):
        return Volume(source=path, kind="nifti", **read_nifti(path, volume_index))
    else:
        files = [path]
    volume_number(volume_index, 1, path)
    return Volume(source=path, kind="dicom", **read_dicom_series(path, files))


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
    block = {"first_slice": first_slice, "crop": crop, "std": std, "description": description}
    if volume.kind == "nifti":
        return write_nifti(values, out / f"{name}.nii.gz", header=volume.header,
                           axcodes=volume.axcodes, shown_shape=volume.images.shape[1:], **block)
    return write_dicom_series(values, out / name, datasets=volume.datasets,
                              inverted=volume.inverted, **block)


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
