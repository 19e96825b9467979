"""A run's reconstruction and its std written in the scanner's format, beside a volume input:
``reconstruction.nii.gz`` and ``std.nii.gz`` for NIfTI, DICOM series folders
``reconstruction/`` and ``std/`` for DICOM (see :func:`pyrodip.io.volumes.write_volume`).

>>> from pyrodip.physics.tasks import TASKS
>>> scanner_output_note((128, 128), task=TASKS["denoise"], observed=False, size=None) is None
True
>>> scanner_output_note((128, 96), task=TASKS["ct"], observed=False, size=None)
'the ct task crops the slices to a square'
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from .volumes import Volume, write_volume

__all__ = ["scanner_output_note", "write_scanner_outputs"]


def write_scanner_outputs(
    dataset: xr.Dataset, volume: Volume, out: Path, first_slice: int
) -> list[Path]:
    """The reconstruction (``mean``) and its std (``std_total``) of ``dataset`` (one slice, or
    a volume's with the dimension ``slice``), the slices from ``first_slice`` on, written in
    ``volume``'s format into ``out``, placed where they lie in the input (the network
    centre-cropped the slices). Returns the files (or folders) written."""
    mean = _slices(dataset["mean"])
    std = _slices(dataset["std_total"])
    height, width = volume.images.shape[-2:]
    crop = ((height - mean.shape[-2]) // 2, (width - mean.shape[-1]) // 2)
    name = Path(volume.source).name
    return [
        write_volume(volume, mean, out, "reconstruction", first_slice=first_slice, crop=crop,
                     description=f"pyrodip reconstruction of {name}"),
        write_volume(volume, std, out, "std", first_slice=first_slice, crop=crop, std=True,
                     description=f"pyrodip std of {name}"),
    ]


def scanner_output_note(
    shape: tuple[int, int], *, task: Any, observed: bool, size: int | None
) -> str | None:
    """Why a run (its ``task``, a :class:`pyrodip.physics.tasks.Task`; whether the observation
    was ``observed``; its resampling ``size``) on slices of ``shape`` writes no scanner-format
    output, or None when it does: its reconstruction must lie on the input slices' own pixel
    grid."""
    if size is not None:
        return "--size resamples the slices"
    if observed and not task.accepts_observed_slices:
        return f"an observed {task.name} reconstruction lies on another grid than the input"
    if task.needs_square_slices and shape[0] != shape[1]:
        return f"the {task.name} task crops the slices to a square"
    return None


def _slices(variable: xr.DataArray) -> np.ndarray:
    """(Z, H, W) of a (slice,) channel, y, x variable: its first channel."""
    values = variable.isel(channel=0).values
    return values if values.ndim == 3 else values[None]
