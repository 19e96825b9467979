import json

import numpy as np
import pytest
import xarray as xr
from scipy.stats import norm

from pyrodip import RunConfig, __version__, fit
from pyrodip.plots import plot_panel
from pyrodip.run.results import atomic_path, read_dataset, to_dataset, write_dataset


@pytest.fixture(scope="module")
def dataset(phantom64):
    from pyrodip import Observation

    observation = Observation.simulate(phantom64, noise=0.1, seed=0, name="phantom64")
    return to_dataset(fit(observation, RunConfig(steps=4, samples=3), progress=False))


def test_schema(dataset):
    for name in ("truth", "observation", "mean", "std_epistemic", "std_total", "smoothed"):
        assert dataset[name].dims[0] == "channel" and dataset[name].shape == (1, 64, 64)
    assert "std_aleatoric" not in dataset
    for name in ("loss", "psnr", "ssim", "psnr_observation"):
        assert dataset[name].dims == ("step",) and dataset.sizes["step"] == 4
    attrs = dataset.attrs
    assert attrs["method"] == "mfvi" and attrs["task"] == "denoise"
    assert json.loads(attrs["config"])["steps"] == 4
    assert attrs["pyrodip_version"] == __version__ and attrs["seed"] == 0
    for key in ("mean_psnr", "mean_ssim", "wall_time_s", "psnr_input"):
        assert np.isfinite(attrs[key])


def test_every_variable_and_coordinate_says_what_it_is_in_which_units(dataset):
    for name in [*dataset.data_vars, *dataset.coords]:
        assert dataset[name].attrs["long_name"], name
        assert "units" in dataset[name].attrs or dataset[name].dtype.kind in "OU", name
    assert dataset["psnr"].attrs["units"] == "dB" and dataset["mean"].attrs["units"] == "1"
    for axis, size in (("y", 64), ("x", 64), ("obs_y", 64), ("step", 4)):
        assert dataset[axis].values.tolist() == list(range(axis == "step", size + (axis == "step")))


def test_one_name_per_meaning(dataset):
    attrs = dataset.attrs
    assert not {"psnr", "ssim", "baseline", "noise_level"} & set(attrs)
    assert attrs["baseline_method"] == dataset["baseline"].attrs["method"]
    assert attrs["likelihood_noise"] == 0.1
    assert attrs["mean_psnr"] != float(dataset["psnr"][-1])  # the mean's, not the curve's


def test_the_file_records_every_default_the_run_took(dataset):
    import pyro
    import torch

    settings = json.loads(dataset.attrs["settings"])
    assert {key: settings[key] for key in ("method", "guide", "temperature", "lr", "optimizer",
                                           "init_scale", "lr_decay", "average", "readout",
                                           "steps", "seed", "engine")} == {
        "method": "mfvi", "guide": "meanfield", "temperature": 0.1, "lr": 0.01,
        "optimizer": "adam", "init_scale": 0.01, "lr_decay": 0.3, "average": 0.2,
        "readout": "renders", "steps": 4, "seed": 0, "engine": "fast"}
    assert (settings["prior"], settings["prior_scale"]) == ("normal", 0.1)
    assert json.loads(dataset.attrs["config"])["temperature"] is None  # as given
    assert dataset.attrs["torch_version"] == torch.__version__
    assert dataset.attrs["pyro_version"] == pyro.__version__


@pytest.mark.parametrize("method", ["mfvi", "mfvi-paper"])
def test_the_settings_read_back_from_a_file_refit_the_run_bit_for_bit(method, tmp_path):
    from pyrodip import prepare_observation

    config = RunConfig(image="sample:phantom", size=32, steps=3, samples=2, method=method,
                       seed=5)
    first = to_dataset(fit(prepare_observation(config), config, progress=False), baseline=False)
    settings = json.loads(read_dataset(write_dataset(first, tmp_path / "a.nc")).attrs["settings"])
    again_config = RunConfig(**settings)
    again = to_dataset(fit(prepare_observation(again_config), again_config, progress=False),
                       baseline=False)
    for name in ("mean", "std_total", "smoothed", "loss", "observation"):
        assert np.array_equal(first[name].values, again[name].values), name
    assert again.attrs["settings"] == first.attrs["settings"]


def test_a_result_worse_than_its_observation_says_why_and_what_to_try(dataset):
    from pyrodip.run.results import worse_than_input

    assert dataset.attrs["mean_psnr"] < dataset.attrs["psnr_input"]  # 4 steps: far too few
    message = worse_than_input(dataset)
    assert message.startswith("the reconstruction (PSNR ")
    assert "too few steps for mfvi (4)" in message
    assert message.endswith("try more, e.g. `steps=1000`")
    inpainted = {"mean_psnr": 20.0, "psnr_input": 10.0, "psnr_known": 25.0,
                 "psnr_known_input": 30.0, "method": "dip", "steps": 300}
    assert "on the observed pixels" in worse_than_input(xr.Dataset(attrs=inpainted))
    assert worse_than_input(xr.Dataset(attrs={**inpainted, "psnr_known": 31.0})) is None
    assert worse_than_input(xr.Dataset(attrs={"method": "dip", "steps": 3})) is None  # no truth


def test_calibration_against_the_truth(dataset):
    for name in ("reliability_variance", "reliability_mse", "reliability_count"):
        assert dataset[name].dims == ("calibration_bin",) and dataset.sizes["calibration_bin"] == 10
    for name in ("sparsification_error", "sparsification_oracle"):
        assert dataset[name].dims == ("sparsification_fraction",)
    assert dataset["sparsification_fraction"].values[0] == 0
    assert dataset["sparsification_error"].values[0] == 1
    assert int(dataset["reliability_count"].sum()) == 64 * 64
    attrs = dataset.attrs
    assert attrs["calibration_reference"] == "truth" and attrs["calibration_bins"] == 10
    assert 0 <= attrs["coverage_68"] <= attrs["coverage_95"] <= 1
    assert attrs["uce"] >= 0 and attrs["ause"] >= -1e-12

    # The stored calibration is that of the stored mean and std_total against the truth,
    # checked from the dataset's own images (not by calling calibrate again).
    mean, std, truth = (dataset[name].values.astype(np.float64).ravel()
                        for name in ("mean", "std_total", "truth"))
    count = dataset["reliability_count"].values
    binned_mse = np.nansum(count * dataset["reliability_mse"].values) / count.sum()
    binned_variance = np.nansum(count * dataset["reliability_variance"].values) / count.sum()
    assert binned_mse == pytest.approx(np.mean((mean - truth) ** 2), rel=1e-5)
    assert binned_variance == pytest.approx(np.mean(std**2), rel=1e-5)
    gaps = abs(dataset["reliability_variance"].values - dataset["reliability_mse"].values)
    assert attrs["uce"] == pytest.approx(np.nansum(count / count.sum() * gaps), rel=1e-6)
    for key, level in (("coverage_68", 0.6827), ("coverage_95", 0.95)):
        covered = np.mean(abs(truth - mean) <= norm.ppf(0.5 + level / 2) * std)
        assert attrs[key] == pytest.approx(covered, abs=2 / truth.size), key


def test_netcdf_round_trip(dataset, tmp_path):
    path = write_dataset(dataset, tmp_path / "result.nc")
    back = read_dataset(path)
    assert np.array_equal(back["mean"].values, dataset["mean"].values)
    assert back.attrs["config"] == dataset.attrs["config"]
    assert [p.name for p in tmp_path.iterdir()] == ["result.nc"]


def test_a_failed_write_leaves_the_old_file_whole(tmp_path):
    target = tmp_path / "result.nc"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["result.nc"]


def test_panel_is_a_png(dataset, tmp_path):
    path = plot_panel(dataset, tmp_path / "panel.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_results_page_documents_every_name_of_a_real_file(dataset):
    from pathlib import Path

    from pyrodip.run.schema import VARIABLES

    page = (Path(__file__).resolve().parents[2] / "docs" / "results.md").read_text()
    names = {*dataset.data_vars, *dataset.coords, *dataset.attrs, *VARIABLES}
    assert not [name for name in sorted(names) if f"`{name}`" not in page]
