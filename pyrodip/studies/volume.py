"""A volume reconstructed slice by slice (``pyrodip run --slices``): a NIfTI volume or a DICOM
series, each chosen slice an independent fit of one run config.

:func:`reconstruct_volume` writes each slice's result to ``OUT/slices/slice-NNNN.nc`` as it
finishes (an interrupted volume continues with the slices not yet written), then assembles
them into one dataset with the dimension ``slice`` (the slice's index in the volume), which
:func:`pyrodip.run.results.write_result` writes to ``OUT/result.nc`` together with the
reconstruction and its std in the input's format (:func:`write_scanner_outputs`):
``reconstruction.nii.gz`` and ``std.nii.gz`` beside a NIfTI input, DICOM series folders
``reconstruction/`` and ``std/`` beside a DICOM one.

>>> slice_range("all", 16), slice_range("4:8", 16), slice_range("5", 16)
(range(0, 16), range(4, 8), range(5, 6))
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import xarray as xr

from ..errors import InvalidInputError, PyrodipError
from ..io.volumes import Volume, read_volume, write_volume
from ..physics.noise_estimate import estimate_noise_level
from ..physics.tasks import given_noise_level, noise_level_setting
from ..run.config import RunConfig
from .execution import Executor

__all__ = [
    "VOLUME_FILE", "reconstruct_volume", "slice_range", "volume_config",
    "write_scanner_outputs",
]

#: The settings and slices of a volume run, written first: ``--resume`` reads them.
VOLUME_FILE = "volume.json"



def slice_range(text: str, count: int) -> range:
    """``--slices``: ``all``, ``A:B`` (A up to, not including, B; either may be left out) or
    one index ``K``, checked against a volume of ``count`` slices."""
    text = str(text).strip()
    try:
        if text == "all":
            start, stop = 0, count
        elif ":" in text:
            first, _, last = text.partition(":")
            start = int(first) if first.strip() else 0
            stop = int(last) if last.strip() else count
        else:
            start = int(text)
            stop = start + 1
    except ValueError:
        raise InvalidInputError(
            f"--slices takes all, A:B or K, got {text!r}: e.g. --slices 0:16"
        ) from None
    if not 0 <= start < stop <= count:
        raise InvalidInputError(
            f"--slices {text} lie outside the volume of {count} slices: choose within 0:{count}"
        )
    return range(start, stop)


def volume_config(config: RunConfig, volume: Volume, slices: range) -> RunConfig:
    """``config`` for every slice: an observed volume's noise level, when not given, is
    estimated once over the chosen slices (more values than one slice, and one level for
    all of them)."""
    if config.observed and given_noise_level(config) is None and config.task != "ct":
        level = estimate_noise_level(config.noise, volume.images[slices.start : slices.stop])
        config = config.replace(**{noise_level_setting(config.noise): level})
    return config.replace(slice_index=None)


def reconstruct_volume(
    config: RunConfig,
    slices: range,
    out: Path,
    *,
    volume: Volume | None = None,
    progress: bool = True,
    executor: Executor | None = None,
    batch: int = 1,
    stop: threading.Event | None = None,
) -> xr.Dataset:
    """Fit every slice in ``slices`` of the volume ``config.image`` with ``config`` (see the
    module docstring), ``batch`` slices at a time as one batched fit where the method allows
    it, on ``executor`` (default: in this process, where ``stop`` interrupts a fit as in
    :func:`pyrodip.fit`); returns the assembled dataset. Slices already in ``out/slices`` are
    kept when they were fitted with the same settings; a slice's fit cut short resumes from its
    checkpoint."""
    from ..run.fit import batchable
    from ..run.results import read_dataset
    from .compare import run_tasks

    volume = volume or read_volume(config.image, config.volume_index)
    given = config
    config = volume_config(config, volume, slices)
    folder = Path(out).absolute() / "slices"  # workers may run in another folder
    folder.mkdir(parents=True, exist_ok=True)
    configs = [config.replace(slice_index=k) for k in slices]
    paths = [folder / f"slice-{k:04d}.nc" for k in slices]
    for slice_config, path in zip(configs, paths, strict=True):
        if path.exists() and read_dataset(path).attrs.get("config") != slice_config.to_json():
            raise InvalidInputError(
                f"{path} was fitted with other settings: use another `out` folder, or delete "
                "it to fit the slice again"
            )
    missing = [(c, p) for c, p in zip(configs, paths, strict=True) if not p.exists()]
    size = batch if batchable(config) is None else 1
    tasks = [
        ([c for c, _ in missing[i : i + size]], [p for _, p in missing[i : i + size]])
        for i in range(0, len(missing), size)
    ]
    failures = run_tasks(tasks, executor, progress, total=len(configs), desc="volume",
                         unit="slice", stop=stop)
    if failures:
        path, failed = next(iter(failures.items()))
        raise PyrodipError(
            f"{len(failures)} of {len(configs)} slices failed ({path.stem}: {failed.error}, "
            f"after {failed.attempts} attempts); the others are kept in {folder}: fit the "
            f"failed ones again with pyrodip run --resume {out}"
        )
    datasets = [read_dataset(path) for path in paths]
    dataset = assemble(datasets, list(slices), config)
    if given_noise_level(given) is None and given_noise_level(config) is not None:
        dataset.attrs["volume_noise_estimate"] = given_noise_level(config)
    return dataset


def assemble(datasets: list[xr.Dataset], slices: list[int], config: RunConfig) -> xr.Dataset:
    """The slices' results stacked over the dimension ``slice``; their scalar attributes
    (:func:`slice_scalars`) become variables over it, the shared ones stay attributes."""
    scalars = {
        name: ("slice", [float(d.attrs.get(key, np.nan)) for d in datasets])
        for key, name in slice_scalars().items() if any(key in d.attrs for d in datasets)
    }
    stacked = xr.concat(
        datasets, dim="slice", join="outer", combine_attrs="drop_conflicts",
        data_vars="all", coords="different", compat="equals",
    )
    stacked = stacked.assign_coords(slice=slices).assign(scalars)
    stacked.attrs.update(config=config.to_json(), slices=f"{slices[0]}:{slices[-1] + 1}",
                         image=config.image)
    return stacked


def slice_scalars() -> dict[str, str]:
    """The attributes of a slice's result that become variables over ``slice``, by the name
    they take there: a comparison's (:data:`~pyrodip.studies.compare.RUN_SCALARS`: the
    predictive mean's ``psnr`` becomes ``mean_psnr``, beside the ``psnr`` curve), the
    observation's PSNR and SSIM, and the estimated noise level."""
    from .compare import RUN_SCALARS

    extra = ("psnr_input", "ssim_input", "noise_estimate")
    return {**RUN_SCALARS, **{key: key for key in extra}}


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


def scanner_output_note(config: RunConfig, shape: tuple[int, int]) -> str | None:
    """Why a run of ``config`` on slices of ``shape`` writes no scanner-format output, or None
    when it does: its reconstruction must lie on the input slices' own pixel grid."""
    if config.size is not None:
        return "--size resamples the slices"
    if config.observed and config.task not in ("denoise", "inpaint"):
        return f"an observed {config.task} reconstruction lies on another grid than the input"
    if config.task == "ct" and shape[0] != shape[1]:
        return "the ct task crops the slices to a square"
    return None


def _slices(variable: xr.DataArray) -> np.ndarray:
    """(Z, H, W) of a (slice,) channel, y, x variable: its first channel."""
    values = variable.isel(channel=0).values
    return values if values.ndim == 3 else values[None]


def save_volume_settings(out: Path, config: RunConfig, slices: range) -> None:
    """Write :data:`VOLUME_FILE` (refusing a folder that holds another volume's run)."""
    from ..io.files import atomic_path

    record = {"config": json.loads(config.to_json()), "slices": [slices.start, slices.stop]}
    path = Path(out) / VOLUME_FILE
    if path.exists():
        if json.loads(path.read_text()) != record:
            raise InvalidInputError(
                f"{out} holds the run of other settings or slices: continue it with --resume "
                f"{out}, or choose another --out"
            )
        return
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(record, indent=1))


def load_volume_settings(out: Path) -> tuple[RunConfig, range]:
    """The settings and slices :func:`save_volume_settings` wrote in ``out``."""
    record = json.loads((Path(out) / VOLUME_FILE).read_text())
    return RunConfig(**record["config"]), range(*record["slices"])

