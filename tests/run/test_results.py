import json

import numpy as np
import pytest
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
    for key in ("psnr", "ssim", "wall_time_s", "psnr_input"):
        assert np.isfinite(attrs[key])


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
