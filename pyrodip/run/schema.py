"""What each variable and coordinate of a result file means: its CF-style ``long_name`` and
``units``, one entry per name (``docs/results.md`` is tested against this table and a file
written by a real fit).

Image values are dimensionless (images are scaled to [0, 1] on loading: ``units = "1"``),
PSNR is in ``dB``, the loss in nats (``nat``), pixel and step indices are counts (``1``).

>>> VARIABLES["mean"]
('posterior-predictive mean (the reconstruction)', '1')
>>> import xarray as xr
>>> described(xr.Dataset({"loss": ("step", [2.0, 1.0])}))["loss"].attrs["units"]
'nat'
"""

from __future__ import annotations

import xarray as xr

from ..errors import InvalidInputError

_IMAGE = "1"
_DB = "dB"

#: name -> (long_name, units) of every variable and coordinate a result file may hold (no
#: units: a label).
VARIABLES: dict[str, tuple[str, str | None]] = {
    # coordinates
    "channel": ("image channel", "1"),
    "y": ("pixel row (0 at the top)", "1"),
    "x": ("pixel column (0 at the left)", "1"),
    "obs_y": ("row of the observation (a sinogram's detector; the image's pixel row)", "1"),
    "obs_x": ("column of the observation (a sinogram's angle; the image's pixel column)", "1"),
    "step": ("fitting step (1-based)", "1"),
    "classical": ("classical reconstruction method", None),
    "calibration_bin": ("variance bin", "1"),
    "calibration_bin_low": ("lower edge of the variance bin", _IMAGE),
    "calibration_bin_high": ("upper edge of the variance bin", _IMAGE),
    "sparsification_fraction": ("fraction of pixels removed, largest first", "1"),
    "member": ("ensemble member (0: the fit of the run's own seed)", "1"),
    # images
    "truth": ("clean image (simulated observations only)", _IMAGE),
    "observation": ("observation y", _IMAGE),
    "mean": ("posterior-predictive mean (the reconstruction)", _IMAGE),
    "std_epistemic": ("standard deviation across weight samples", _IMAGE),
    "std_aleatoric": ("predicted noise standard deviation", _IMAGE),
    "std_total": ("total predictive standard deviation, calibrated", _IMAGE),
    "std_total_raw": ("total predictive standard deviation before calibration", _IMAGE),
    "std_between": ("standard deviation of the ensemble members' means, before calibration",
                    _IMAGE),
    "ensemble_member_psnr": ("PSNR of each ensemble member's mean against the truth", _DB),
    "smoothed": ("moving average of the images rendered while fitting", _IMAGE),
    "readout_final": ("predictive mean at the final parameters", _IMAGE),
    "readout_renders": ("mean of the images rendered over the last steps", _IMAGE),
    "readout_params": ("predictive mean at the parameters averaged over the last steps",
                       _IMAGE),
    "baseline": ("best classical reconstruction", _IMAGE),
    "baselines": ("classical reconstructions", _IMAGE),
    "classical_psnr": ("PSNR of each classical reconstruction against the truth", _DB),
    "classical_ssim": ("SSIM of each classical reconstruction against the truth", "1"),
    # curves
    "loss": ("training loss: negative ELBO with its KL times the temperature", "nat"),
    "psnr": ("PSNR of the smoothed image against the truth", _DB),
    "ssim": ("SSIM of the smoothed image against the truth", "1"),
    "psnr_current": ("PSNR of the step's image against the truth", _DB),
    "ssim_current": ("SSIM of the step's image against the truth", "1"),
    "psnr_observation": ("PSNR of A(smoothed image) against the observation", _DB),
    "ssim_observation": ("SSIM of A(smoothed image) against the observation", "1"),
    "psnr_current_observation": ("PSNR of A(step's image) against the observation", _DB),
    "ssim_current_observation": ("SSIM of A(step's image) against the observation", "1"),
    "mse_heldout": ("mean squared residual at the held-out observed values", _IMAGE),
    # proper scores of the held-out observed values (attributes of a run; variables of a study)
    "heldout_lpd": ("mean log predictive density of the held-out observed values, per value "
                    "(higher is better)", "nat"),
    "heldout_crps": ("mean CRPS of the held-out observed values (lower is better)", _IMAGE),
    "window_variance": ("ES-WMV window variance of the step images", _IMAGE),
    # calibration against the truth
    "reliability_variance": ("mean predicted variance of the pixels in the bin", _IMAGE),
    "reliability_mse": ("mean squared error of the pixels in the bin", _IMAGE),
    "reliability_count": ("number of pixels in the bin", "1"),
    "sparsification_error": ("relative mean squared error left, removed by std", "1"),
    "sparsification_oracle": ("relative mean squared error left, removed by error", "1"),
}


def described(dataset: xr.Dataset) -> xr.Dataset:
    """``dataset`` with the ``long_name`` and ``units`` of :data:`VARIABLES` on every variable
    and coordinate (in place; returned); a name missing from the table is refused (a new
    variable needs its meaning written down)."""
    for name in [*dataset.data_vars, *dataset.coords]:
        if name not in VARIABLES:
            raise InvalidInputError(
                f"result variable {name!r} has no long_name and units: add it to "
                "pyrodip.run.schema.VARIABLES"
            )
        long_name, units = VARIABLES[name]
        dataset[name].attrs["long_name"] = long_name
        if units is not None:
            dataset[name].attrs["units"] = units
    return dataset
