"""A volume reconstructed slice by slice (``pyrodip run --slices``): a NIfTI volume or a DICOM
series, each chosen slice an independent fit of one run config.

:func:`reconstruct_volume` writes each slice's result to ``OUT/slices/slice-NNNN.nc`` as it
finishes (an interrupted volume continues with the slices not yet written), then assembles
them into one dataset with the dimension ``slice`` (the slice's index in the volume), which
:func:`pyrodip.run.results.write_result` writes to ``OUT/result.nc`` together with the
reconstruction and its std in the input's format
(:func:`~pyrodip.io.scanner_outputs.write_scanner_outputs`):
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
from ..io.volumes import Volume, read_volume
from ..physics.noise_estimate import estimate_noise_level
from ..physics.tasks import TASKS, given_noise_level, noise_level_setting
from ..run.config import RunConfig
from .execution import RETRIES, Executor
from .grid import GridRun, run_grid
from .stacking import RUN_SCALARS

__all__ = ["VOLUME_FILE", "reconstruct_volume", "slice_range", "volume_config"]

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
    task = TASKS[config.task]
    if config.observed and given_noise_level(config) is None and task.estimates_noise_from_images:
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
    checkpoint. The slices are runs of :func:`pyrodip.studies.grid.run_grid`, named
    ``slice-NNNN``, in ``out/slices``; failed ones are fitted again on the next call."""
    volume = volume or read_volume(config.image, config.volume_index)
    given = config
    config = volume_config(config, volume, slices)
    runs = [GridRun(f"slice-{k:04d}", config.replace(slice_index=k)) for k in slices]
    outcome = run_grid(runs, out, executor=executor, batch=batch, retry_failed=True,
                       progress=progress, stop=stop, desc="volume", folder="slices")
    if outcome.failures:
        name, error = next(iter(outcome.failures.items()))
        raise PyrodipError(
            f"{len(outcome.failures)} of {len(runs)} slices failed ({name}: {error}, after "
            f"{RETRIES + 1} attempts); the others are kept in {Path(out).absolute() / 'slices'}"
            f": fit the failed ones again with pyrodip run --resume {out}"
        )
    dataset = assemble(list(outcome.datasets.values()), list(slices), config)
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
    they take there: a study's (:data:`~pyrodip.studies.stacking.RUN_SCALARS`: the
    predictive mean's ``psnr`` becomes ``mean_psnr``, beside the ``psnr`` curve), the
    observation's PSNR and SSIM, and the estimated noise level."""
    extra = ("psnr_input", "ssim_input", "noise_estimate")
    return {**RUN_SCALARS, **{key: key for key in extra}}


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

