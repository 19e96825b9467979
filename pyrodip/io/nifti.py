"""NIfTI files (``.nii``, ``.nii.gz``, read with nibabel) as oriented slices, and slices
written back with the input's header (see :mod:`pyrodip.io.volumes` for the scaling rules).

Slice ``k`` runs along the third voxel axis, shown as radiologists view it (see
:func:`orient`).

>>> is_nifti(Path("scan.NII.GZ")), is_nifti(Path("scan.png"))
(True, False)
"""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InvalidInputError
from .files import atomic_path
from .pixels import check_size, first_line, quiet_libraries, value_span

__all__ = ["NIFTI_SUFFIXES", "is_nifti", "orient", "read_nifti", "volume_number", "write_nifti"]

NIFTI_SUFFIXES = (".nii", ".nii.gz")


def is_nifti(path: Path) -> bool:
    """Whether the file name ends in ``.nii`` or ``.nii.gz`` (any case)."""
    return path.name.lower().endswith(NIFTI_SUFFIXES)


def volume_number(volume_index: int | None, count: int, path: Path) -> int:
    """Check ``volume_index`` against a file of ``count`` volumes (None: the only one).

    >>> volume_number(None, 1, Path("scan.nii")), volume_number(2, 3, Path("scan.nii"))
    (0, 2)
    """
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


def orient(data: np.ndarray, axcodes: tuple[str, ...]) -> np.ndarray:
    """Voxels ``(X, Y, Z)`` as slices ``(Z, H, W)``, shown as radiologists view them.

    Rows run along the second voxel axis and columns along the first, without resampling,
    each reversed where the affine says so: anterior (or superior) at the top and the
    patient's right (or anterior, in a sagittal slice) on the image's left. For RAS+ voxels
    (an identity affine) slice ``k`` is ``data[:, :, k].T[::-1, ::-1]``.

    >>> data = np.arange(6).reshape(3, 2, 1)
    >>> orient(data, ("R", "A", "S"))[0].tolist() == data[:, :, 0].T[::-1, ::-1].tolist()
    True
    """
    flip_rows, flip_cols = _flips(axcodes)
    slices = data.transpose(2, 1, 0)
    return slices[:, ::-1 if flip_rows else 1, ::-1 if flip_cols else 1]


def _unorient(slices: np.ndarray, axcodes: tuple[str, ...]) -> np.ndarray:
    """The inverse of :func:`orient`: slices ``(Z, H, W)`` as voxels ``(X, Y, Z)``."""
    flip_rows, flip_cols = _flips(axcodes)
    return slices[:, ::-1 if flip_rows else 1, ::-1 if flip_cols else 1].transpose(2, 1, 0)


def read_nifti(path: Path, volume_index: int | None) -> dict[str, Any]:
    """The fields of a :class:`~pyrodip.io.volumes.Volume` read from NIfTI file ``path``:
    ``images`` scaled over the volume, ``low``, ``high``, ``header``, ``affine``,
    ``volume_index`` (a 4-D file's, else None) and ``axcodes``."""
    nibabel = _nibabel(path)
    try:
        with quiet_libraries():
            nifti = nibabel.load(path)
            full_shape = tuple(int(n) for n in nifti.shape)
            axcodes = tuple(nibabel.orientations.aff2axcodes(nifti.affine))
    except Exception as exc:  # nibabel raises many different types
        raise InvalidInputError(
            f"cannot read NIfTI file {path} ({first_line(exc)}): use a valid NIfTI file"
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
    index = volume_number(volume_index, count, path)
    key: tuple[slice | int, ...] = (slice(None),) * min(len(shape), 3)
    key += ((index,) if len(shape) == 4 else ()) + (0,) * (len(full_shape) - len(shape))
    check_size(shape[:3], f"NIfTI file {path}")
    try:
        with quiet_libraries():
            raw = np.asanyarray(nifti.dataobj[key])
    except Exception as exc:
        raise InvalidInputError(
            f"cannot read the voxels of NIfTI file {path} ({first_line(exc)}): use a valid "
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
    images = (values - low) / value_span(low, high, f"NIfTI file {path}")
    return {
        "images": np.ascontiguousarray(orient(images, axcodes), dtype=np.float32),
        "low": low,
        "high": high,
        "header": nifti.header.copy(),
        "affine": np.array(nifti.affine),
        "volume_index": index if len(shape) == 4 else None,
        "axcodes": axcodes,
    }


def write_nifti(
    values: np.ndarray,
    path: Path,
    *,
    header: Any,
    axcodes: tuple[str, ...],
    shown_shape: tuple[int, int],
    first_slice: int,
    crop: tuple[int, int],
    std: bool,
    description: str,
) -> Path:
    """Write slices ``(Z', h, w)`` of float32 source values to ``path``, with the input's
    ``header`` and ``axcodes`` and an affine moved to the block at ``first_slice`` and
    ``crop = (top, left)`` of the input's ``shown_shape = (H, W)`` slices."""
    import nibabel  # installed: the header is nibabel's

    image_class = (
        nibabel.Nifti2Image if isinstance(header, nibabel.Nifti2Header) else nibabel.Nifti1Image
    )
    header = image_class.header_class.from_header(header)
    header.set_data_dtype(np.float32)
    header.set_slope_inter(None, None)  # the values are literal
    header["descrip"] = description.encode("ascii", "replace")[:79]
    if std:
        header["cal_min"] = header["cal_max"] = 0  # the input's display range is wrong for a std

    # Voxel (0, 0, 0) of the output is the input voxel shown at the block's first corner.
    flip_rows, flip_cols = _flips(axcodes)
    (top, left), (height, width) = crop, values.shape[1:]
    full_height, full_width = shown_shape
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

    data = np.ascontiguousarray(_unorient(values, axcodes), dtype=np.float32)
    nifti = image_class(data, header.get_best_affine(), header)
    with atomic_path(path) as tmp:
        tmp.write_bytes(gzip.compress(nifti.to_bytes(), compresslevel=6))
    return path
