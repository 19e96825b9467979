"""A fit's result as an ``xarray.Dataset``, and files written whole or not at all.

The schema (documented in ``docs/results.md``):

- images over (``channel``, ``y``, ``x``): ``truth`` (when known), ``mean``,
  ``std_epistemic``, ``std_aleatoric`` (heteroscedastic likelihood only), ``std_total`` (the
  recalibrated std), ``std_total_raw`` (before recalibration, when recalibrated),
  ``std_between`` (an ensemble's spread of member means, with its mean ``mean_std_between``
  and, over ``member``, each member's ``ensemble_member_psnr`` when the truth is known),
  ``smoothed``, the mean images of the readouts not returned (``readout_final``,
  ``readout_renders``, ``readout_params``: :data:`pyrodip.infer.averaging.READOUTS`, where the
  fit averaged its last steps); ``observation`` over (``channel``, ``obs_y``, ``obs_x``) (the
  same size as the image for denoising);
- curves over ``step`` (1-based): ``loss``, ``psnr``, ``ssim``, ``psnr_current``,
  ``ssim_current`` (against the truth, when known), ``psnr_observation``, ``ssim_observation``,
  ``psnr_current_observation``, ``ssim_current_observation``;
- coordinates on every axis: ``y`` and ``x`` (pixel indices), ``obs_y``, ``obs_x``,
  ``channel``, ``step``; every variable and coordinate has a CF-style ``long_name`` and
  ``units`` (:mod:`pyrodip.run.schema`);
- attributes: ``method``, ``task``, ``config`` (JSON: the settings as given), ``settings``
  (JSON: every setting with the defaults it ran with, :func:`effective_settings`),
  ``engine``, ``readout`` (the returned predictive; none for a sampler or a stop rule),
  ``mean_psnr``, ``mean_ssim`` (of ``mean`` against the truth, when known),
  ``psnr_input`` (of the observation, when comparable), ``wall_time_s``,
  ``pyrodip_version``, ``torch_version``, ``pyro_version``, ``seed``, ``ensemble`` (K, the
  fits combined: :mod:`pyrodip.run.ensemble`), ``noise``,
  ``likelihood_noise`` (the likelihood's level), ``noise_estimate`` (estimated from an
  observed y, in the units of ``noise_std`` or ``photons``), ``observed_scale`` (a measured
  sinogram was divided by it), ``baseline_method``, ...;
- calibration of ``mean`` +- ``std_total`` against the truth (when known,
  :mod:`pyrodip.evaluate.calibration`): ``reliability_*`` over ``calibration_bin``,
  ``sparsification_error`` and ``sparsification_oracle`` over ``sparsification_fraction``;
  attributes ``uce``, ``coverage_50``, ``coverage_68``, ``coverage_90``, ``coverage_95``,
  ``ause``, and the same with ``_raw`` for ``std_total_raw``; ``uce_observation`` (against y,
  the paper's convention: denoising and inpainting, Gaussian or Poisson noise);
- recalibration (:mod:`pyrodip.infer.recalibration`): ``calibration`` (none, scale or
  conformal), ``calibration_scale``, ``calibration_coverage``, ``calibration_heldout`` and the
  coverage of the held-out values before and after (``heldout_coverage_68_raw``, ...), and
  their proper scores under the recalibrated predictive, without ground truth
  (:mod:`pyrodip.evaluate.proper_scores`): ``heldout_lpd`` (nats per value),
  ``heldout_crps`` and ``heldout_score_form`` (``gaussian`` or ``mixture``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyro
import torch
import xarray as xr

from ..evaluate.calibration import calibrate, calibration_attrs, calibration_variables
from ..evaluate.metrics import psnr, ssim
from ..infer.fitting import FitResult
from ..infer.methods import METHODS
from ..io.files import atomic_path
from ..physics.tasks import TASKS, classical_baselines
from ..version import __version__
from .config import METHOD_DEFAULTS, RunConfig
from .schema import described

if TYPE_CHECKING:
    from ..io.volumes import Volume

IMAGE_DIMS = ("channel", "y", "x")


def to_dataset(result: FitResult, baseline: bool = True) -> xr.Dataset:
    """Collect images, curves and settings of ``result`` into one dataset, with the task's
    classical baselines (:func:`pyrodip.physics.tasks.classical_baselines`) unless ``baseline``
    is False: all of them in ``baselines`` (dimension ``classical``), their PSNR and SSIM in
    ``classical_psnr`` and ``classical_ssim``, and the best of them by PSNR (the task's default
    without a truth) as ``baseline`` with its ``baseline_*`` metrics."""
    obs = result.observation
    pred = result.prediction
    images = {
        "mean": pred.mean,
        "std_epistemic": pred.std_epistemic,
        "std_aleatoric": pred.std_aleatoric,
        "std_total": pred.std_total,
        "std_total_raw": pred.std_total_raw,
        "std_between": pred.std_between,
        "smoothed": result.smoothed,
        "truth": obs.truth,
        **{f"readout_{name}": image for name, image in result.readouts.items()
           if name != result.readout},
    }
    data_vars = {
        name: (IMAGE_DIMS, _numpy(value)) for name, value in images.items() if value is not None
    }
    data_vars["observation"] = (("channel", "obs_y", "obs_x"), _numpy(obs.observation))
    channels, height, width = obs.image_shape
    _, obs_height, obs_width = obs.observation.shape
    data_vars.update({name: ("step", values) for name, values in result.history.curves.items()})
    image_prior = getattr(result.model, "image_prior", None)
    attrs = {
        "method": result.config.method,
        "loss_is_elbo": int(METHODS[result.config.method].loss_is_elbo),
        "task": result.config.task,
        "image": obs.name,
        "guide": result.config.resolved("guide"),
        "prior": result.model.prior.spec(),
        "image_prior": "none" if image_prior is None else image_prior.spec(),
        "data_term": "likelihood" if getattr(result.model, "sure", None) is None else "sure",
        "config": result.config.to_json(),
        "settings": json.dumps(effective_settings(result), sort_keys=True),
        "engine": result.engine,
        "seed": result.config.seed,
        "ensemble": result.config.ensemble,
        "steps": result.config.steps,
        "samples": pred.num_samples,
        "wall_time_s": result.wall_time_s,
        "pyrodip_version": __version__,
        "torch_version": str(torch.__version__),  # a str subclass, which h5py refuses
        "pyro_version": pyro.__version__,
        "mean_std_epistemic": float(pred.std_epistemic.mean()),
        "mean_std_total": float(pred.std_total.mean()),
        "temperature": result.model.temperature,
        "status": result.status,
        "readout": result.readout,
        "stop_rule": result.config.resolved("stop_rule"),
        "divergences": json.dumps(result.events),
        "resumed_at": json.dumps(result.resumed_at),
    }
    if result.chosen_step is not None:
        attrs["chosen_step"] = result.chosen_step
    attrs["noise"] = obs.noise.name
    attrs["likelihood_noise"] = obs.noise.level
    censored = getattr(result.model.likelihood, "censored", None)
    attrs["censored"] = "none" if censored is None else f"[{censored[0]:g}, {censored[1]:g}]"
    if obs.noise_estimate is not None:
        attrs["noise_estimate"] = obs.noise_estimate
    if obs.observed_scale != 1:
        attrs["observed_scale"] = obs.observed_scale
    attrs.update(result.calibration.attrs() if result.calibration else {"calibration": "none"})
    uce_observation = observation_uce(result)
    if uce_observation is not None:
        attrs["uce_observation"] = uce_observation
    coords = {"step": result.history.steps, "channel": np.arange(channels),
              "y": np.arange(height), "x": np.arange(width), "obs_y": np.arange(obs_height),
              "obs_x": np.arange(obs_width)}
    if baseline:
        baselines = classical_baselines(obs)
        coords["classical"] = list(baselines)
        data_vars["baselines"] = (
            ("classical", *IMAGE_DIMS), np.stack([_numpy(b) for b in baselines.values()])
        )
        name = next(iter(baselines))
        if obs.has_truth:
            qualities = {key: _quality(image, obs) for key, image in baselines.items()}
            name = max(qualities, key=lambda key: qualities[key]["psnr"])
            for metric in ("psnr", "ssim"):
                values = [quality[metric] for quality in qualities.values()]
                data_vars[f"classical_{metric}"] = ("classical", values)
            attrs.update({f"baseline_{k}": v for k, v in qualities[name].items()})
        image = baselines[name]
        data_vars["baseline"] = (IMAGE_DIMS, _numpy(image), {"method": name})
        attrs["baseline_method"] = name
    if pred.std_between is not None:
        attrs["mean_std_between"] = float(pred.std_between.mean())
    if obs.has_truth:
        attrs.update(_quality(pred.mean, obs, MEAN_RENAMED))
        if result.member_means is not None:
            coords["member"] = np.arange(len(result.member_means))
            data_vars["ensemble_member_psnr"] = (
                "member", [_quality(mean, obs)["psnr"] for mean in result.member_means])
        calibration_vars, calibration_attributes = calibration_variables(
            calibrate(pred.mean, pred.std_total, obs.truth)
        )
        data_vars.update(calibration_vars)
        attrs.update(calibration_attributes)
        if pred.std_total_raw is not None:
            raw = calibrate(pred.mean, pred.std_total_raw, obs.truth)
            attrs.update(calibration_attrs(raw, suffix="_raw"))
        if obs.observation.shape == obs.truth.shape:
            attrs.update(_quality(obs.observation.clamp(0, 1), obs, suffix="_input"))
    return described(xr.Dataset(data_vars, coords=coords, attrs=attrs))


def effective_settings(result: FitResult) -> dict:
    """Every setting of ``result``'s run with the defaults it ran with filled in: those its
    method gives, the temperature its model ran at (for ``mfvi-paper``: the one its beta
    implies) and the engine that ran. ``RunConfig(**effective_settings(result))`` fits the same
    run again, bit for bit (on the same device and versions). ``noise_std`` and ``photons``
    stay as given: None is the task's default level when simulated, the estimate
    (``noise_estimate``) when observed."""
    config = result.config
    settings = {**config.settings(), **{key: config.resolved(key) for key in METHOD_DEFAULTS}}
    settings.update(temperature=result.model.temperature, engine=result.engine)
    return settings


def worse_than_input(dataset: xr.Dataset) -> str | None:
    """Why the reconstruction in ``dataset`` is worse than its observation, and what to try;
    None when it is not, or when they do not compare (no truth, or an observation on another
    grid). Inpainting compares the observed pixels (``psnr_known``), where the observation
    holds values.

    >>> worse_than_input(xr.Dataset(attrs={"mean_psnr": 16.8, "psnr_input": 20.5,
    ...     "method": "mfvi", "steps": 100}))  # doctest: +NORMALIZE_WHITESPACE
    'the reconstruction (PSNR 16.80 dB) is worse than the observation (20.50 dB): likely too
    few steps for mfvi (100): try more, e.g. `steps=1000`'
    """
    a = dataset.attrs
    key = "psnr_known" if "psnr_known_input" in a else "mean_psnr"
    given = "psnr_known_input" if key == "psnr_known" else "psnr_input"
    if key not in a or given not in a or not a[key] < a[given]:
        return None
    where = " on the observed pixels" if key == "psnr_known" else ""
    return (
        f"the reconstruction (PSNR {a[key]:.2f} dB) is worse than the observation "
        f"({a[given]:.2f} dB){where}: likely too few steps for {a['method']} ({a['steps']}): "
        f"try more, e.g. `steps={max(1000, 10 * a['steps'])}`"
    )


def observation_uce(result: FitResult) -> float | None:
    """UCE of the predictive against the observation, as the paper's code scored it: the
    squared error of the mean against y beside the predicted variance of y (the std plus the
    noise's variance), over the observed pixels. Only for an observation of the image's own
    pixels with noise that adds in the image (Gaussian, Poisson), else None; NaN without
    uncertainty."""
    obs, pred = result.observation, result.prediction
    if obs.observation.shape != pred.mean.shape or obs.noise.name == "speckle":
        return None
    likelihood = result.model.likelihood
    y = obs.observation.to(pred.mean.device)
    variance = pred.std_total.square()
    if pred.std_aleatoric is None:
        variance = variance + likelihood.noise_variance(pred.mean)
    if not bool((pred.std_total > 0).any()):
        return float("nan")
    known = getattr(obs.operator, "observed_mask", None)
    keep = torch.ones_like(y, dtype=torch.bool) if known is None else known[0].expand_as(y)
    cal = calibrate(pred.mean[keep], variance.sqrt()[keep], y[keep])
    return cal.uce


def write_dataset(dataset: xr.Dataset, path: str | os.PathLike) -> Path:
    """Write ``dataset`` as NetCDF4 (h5netcdf), atomically. It is encoded in memory first: HDF5
    writing straight to a disk that fills up can crash the process (measured: a segmentation
    fault on a full tmpfs), where a plain write raises a clear error. The encoding runs under
    dask's local scheduler: on a Dask worker, xarray would otherwise guard the in-memory file
    with a cluster-wide lock named after it, which the scheduler refuses ("Semaphore or Lock
    ... not known")."""
    import dask

    with dask.config.set(scheduler="synchronous"):
        data = dataset.to_netcdf(engine="h5netcdf")
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_result(dataset: xr.Dataset, out: str | os.PathLike, config: RunConfig,
                 volume: Volume | None = None, first_slice: int | None = None) -> str:
    """Write what a run gives into ``out`` together or not at all
    (:func:`~pyrodip.io.files.result_set`): ``result.nc``, ``panel.png`` (a volume's middle
    slice) and, when the input is a volume or series, the reconstruction and its std in its
    format (the slices from ``first_slice`` on, default the run's own). Returns a line on that
    format's output (what was written, or why not), ``""`` for an image input."""
    from ..io.files import result_set
    from ..io.scanner_outputs import scanner_output_note, write_scanner_outputs
    from ..io.volumes import is_volume_source, read_volume
    from ..plots import plot_panel

    line = ""
    if volume is None and is_volume_source(config.image):
        volume = read_volume(config.image, config.volume_index)
    with result_set(out) as staging:
        write_dataset(dataset, staging / "result.nc")
        middle = dataset.isel(slice=dataset.sizes["slice"] // 2) if "slice" in dataset.dims \
            else dataset
        plot_panel(middle, staging / "panel.png")
        if volume is not None:
            if first_slice is None:  # load_image's slice: the given one, else the middle
                first_slice = (volume.slice_count // 2 if config.slice_index is None
                               else config.slice_index)
            note = scanner_output_note(tuple(volume.images.shape[-2:]), task=TASKS[config.task],
                                       observed=config.observed, size=config.size)
            kind = {"nifti": "NIfTI", "dicom": "DICOM"}[volume.kind]
            if note is not None:
                line = f"  no {kind} output: {note}"
            else:
                written = write_scanner_outputs(dataset, volume, staging, first_slice)
                line = (f"  wrote {' and '.join(path.name for path in written)} ({kind}, the "
                        "input's geometry)")
    return line


def read_dataset(path: str | os.PathLike) -> xr.Dataset:
    """Load a result written by :func:`write_dataset` fully into memory."""
    with xr.open_dataset(path, engine="h5netcdf") as dataset:
        return dataset.load()


#: The keys of :func:`_quality` renamed for the predictive mean: ``psnr`` and ``ssim`` are the
#: smoothed image's curves.
MEAN_RENAMED = {"psnr": "mean_psnr", "ssim": "mean_ssim"}


def _quality(image, obs, renamed: dict[str, str] | None = None, prefix: str = "",
             suffix: str = "") -> dict[str, float]:
    """PSNR and SSIM of ``image`` against the truth; for inpainting also the PSNR over the
    missing pixels alone (``psnr_missing``) and over the known ones (``psnr_known``: where the
    truth under the mask is not known, as for real hair, only these are scored)."""
    truth = obs.truth.to(image.device)
    quality = {"psnr": float(psnr(image, truth)), "ssim": float(ssim(image, truth))}
    known = getattr(obs.operator, "observed_mask", None)
    if known is not None and not bool(known.all()):
        missing = ~known[0].to(image.device).expand_as(truth)
        for key, pixels in (("psnr_missing", missing), ("psnr_known", ~missing)):
            mse = float(((image - truth)[pixels] ** 2).mean())
            quality[key] = float(10 * np.log10(1 / mse)) if mse > 0 else float("inf")
    renamed = renamed or {}
    return {f"{prefix}{renamed.get(key, key)}{suffix}": value for key, value in quality.items()}


def _numpy(tensor) -> np.ndarray:
    return tensor.detach().cpu().numpy().astype(np.float32)
