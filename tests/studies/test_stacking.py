"""Stacking a study's runs (pyrodip.studies.stacking): padding, scalars, status per run."""

import numpy as np
import xarray as xr

from pyrodip.studies.stacking import stack, with_status


def run(side: int, steps: int, **attrs) -> xr.Dataset:
    return xr.Dataset(
        {"mean": (("channel", "y", "x"), np.ones((1, side, side))),
         "psnr": ("step", np.arange(steps, dtype=float))},
        coords={"step": np.arange(1, steps + 1)}, attrs={"task": "denoise", **attrs},
    )


def test_images_of_other_sizes_stack_padded_with_nan():
    study = stack({("dip", "ct", 0): run(64, 3), ("dip", "mr", 0): run(32, 5)})
    assert study["mean"].sizes["y"] == 64 and study.sizes["step"] == 5
    small = study["mean"].sel({"image": "mr", "method": "dip", "seed": 0})
    assert int(small.notnull().sum()) == 32 * 32
    assert float(study["psnr"].sel({"image": "ct", "method": "dip", "seed": 0}).isnull().sum()) == 2


def test_scalar_attributes_become_variables():
    study = stack({("mfvi", "ct", 0): run(8, 2, mean_psnr=25.0, loss_is_elbo=1),
                   ("dip", "ct", 0): run(8, 2, wall_time_s=3.0)})
    assert float(study["mean_psnr"].sel({"method": "mfvi"}).item()) == 25.0
    assert np.isnan(study["mean_psnr"].sel({"method": "dip"}).item())
    assert study["loss_is_elbo"].sel({"method": "mfvi"}).item() == 1
    assert np.isnan(study["loss_is_elbo"].sel({"method": "dip"}).item())


def test_status_error_and_fitted_method_per_run():
    study = stack({("cold", "ct", 0): run(8, 2)})
    keys = {("cold", "ct", 0): "mfvi", ("cold", "ct", 1): "mfvi", ("dip", "ct", 0): "dip"}
    done = with_status(study, keys, {("dip", "ct", 0): "MemoryError: out of memory"})
    assert list(done["method"].values) == ["cold", "dip"] and list(done["seed"].values) == [0, 1]
    assert done["status"].sel({"method": "dip", "seed": 0}).item() == "failed"
    assert done["error"].sel({"method": "dip", "seed": 0}).item() == "MemoryError: out of memory"
    assert done["run_method"].sel({"method": "cold", "seed": 1}).item() == "mfvi"
    assert np.isnan(done["mean"].sel({"method": "cold", "seed": 1})).all()
