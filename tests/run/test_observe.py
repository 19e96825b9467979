"""pyrodip.run.observe: the observation a run's settings describe. A simulated one for each
task; an observed image or mask file, resized with the image; a measured CT sinogram
(``--task ct --observed``) checked against the angles, scaled so its back projection peaks at
1; the noise level of an observed image estimated, or a given one checked against the
estimate."""

import numpy as np
import pytest
import torch
from conftest import NOISE_ESTIMATE_TOLERANCE, exit_code, noisy_sample
from skimage.io import imsave

from pyrodip.errors import InvalidInputError
from pyrodip.physics.operators import Downsample, Mask
from pyrodip.physics.radon import Radon, default_ct_angles
from pyrodip.run.config import RunConfig
from pyrodip.run.observe import prepare_observation
from pyrodip.seeding import generator


@pytest.fixture
def sinogram(tmp_path, phantom64):
    """The 64 px phantom's sinogram over 30 angles, in other units (x 37), with Gaussian noise
    of 2 % of its largest projection: (path, clean sinogram)."""
    operator = Radon(default_ct_angles(30), 64)
    clean = 37 * operator(phantom64[None] * operator.circle.reshape(64, 64))[0]
    noise = torch.randn(clean.shape, generator=generator(0, "noise"))
    measured = clean + 0.02 * float(clean.max()) * noise
    path = tmp_path / "sinogram.npy"
    np.save(path, measured[0].numpy())
    return path, clean


def config(path, **settings) -> RunConfig:
    return RunConfig(image=str(path), task="ct", observed=True, angles=30, **settings)


def test_sinogram_is_observed_as_measured(sinogram):
    path, clean = sinogram
    observation = prepare_observation(config(path))
    assert tuple(observation.observation.shape) == (1, 64, 30)
    assert observation.image_shape == (1, 64, 64) and not observation.has_truth
    # y = measured / scale: linear, so the scaled y times the scale is the file's values
    measured = torch.from_numpy(np.load(path))
    assert torch.allclose(observation.observation[0] * observation.observed_scale, measured,
                          atol=1e-4)
    fbp = observation.operator.fbp(observation.observation[None])
    assert float(torch.quantile(fbp.flatten(), 0.999)) == pytest.approx(1, rel=1e-4)
    assert observation.noise_estimate == pytest.approx(0.02, rel=0.15)
    assert observation.noise.std == pytest.approx(
        observation.noise_estimate * observation.observation_range)


@pytest.mark.parametrize("settings, fragment", [
    ({"angles": 45}, "give --angles 30"),
    ({"noise": "poisson"}, "cannot estimate the level of poisson noise in"),
    ({"size": 32}, "cannot resize a ct measurement"),
])
def test_bad_settings_for_a_sinogram(sinogram, tmp_path, capsys, settings, fragment):
    path, _ = sinogram
    argv = ["run", "--image", str(path), "--task", "ct", "--observed", "--angles", "30",
            "--out", str(tmp_path / "out")]
    for key, value in settings.items():
        argv += [f"--{key}", str(value)]
    code = exit_code(argv)
    err = capsys.readouterr().err
    assert code == 2 and fragment in err, err
    assert not (tmp_path / "out").exists()


def test_transposed_and_badly_sized_sinograms_are_refused(tmp_path):
    transposed = tmp_path / "transposed.npy"
    np.save(transposed, np.ones((30, 64), dtype=np.float32))
    with pytest.raises(InvalidInputError, match="angles x detectors: transpose it"):
        prepare_observation(config(transposed))
    odd = tmp_path / "odd.npy"
    np.save(odd, np.ones((50, 30), dtype=np.float32))
    with pytest.raises(InvalidInputError, match="pad its detector axis .* to 64"):
        prepare_observation(config(odd))


def test_a_level_the_task_cannot_estimate_is_taken_as_given(sinogram):
    path, _ = sinogram
    observation = prepare_observation(config(path, noise="poisson", photons=500.0))
    assert observation.noise.name == "poisson" and observation.noise_estimate is None
    assert observation.noise.level == pytest.approx(500.0 / observation.observation_range)


def test_cli_reconstructs_a_sinogram(sinogram, tmp_path, capsys):
    path, _ = sinogram
    out = tmp_path / "out"
    code = exit_code(["run", "--image", str(path), "--task", "ct", "--observed", "--angles",
                      "30", "--steps", "2", "--samples", "2", "--out", str(out), "--quiet"])
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert "estimated from the image" in printed and (out / "result.nc").exists()


@pytest.mark.parametrize("task, operator, observed_shape", [
    ("denoise", None, (1, 64, 64)),
    ("superres", Downsample, (1, 16, 16)),
    ("inpaint", Mask, (1, 64, 64)),
    ("ct", Radon, (1, 64, 45)),
])
def test_prepare_observation_simulates_each_task(task, operator, observed_shape, tiny_png):
    observation = prepare_observation(RunConfig(image=str(tiny_png), task=task))
    assert observation.observation.shape == observed_shape
    assert observation.image_shape == (1, 64, 64) and observation.has_truth
    if operator is not None:
        assert isinstance(observation.operator, operator)


def test_observed_superres_reconstructs_the_larger_image(tiny_png):
    config = RunConfig(image=str(tiny_png), task="superres", factor=4, observed=True)
    observation = prepare_observation(config)
    assert observation.observation.shape == (1, 64, 64)
    assert observation.image_shape == (1, 256, 256) and not observation.has_truth


def test_inpainting_mask_from_a_file(tiny_png, tmp_path):
    mask = np.full((64, 64), 255, np.uint8)
    mask[20:30, 10:50] = 0
    imsave(tmp_path / "mask.png", mask)
    config = RunConfig(image=str(tiny_png), task="inpaint", mask=str(tmp_path / "mask.png"))
    known = prepare_observation(config).operator.observed_mask[0, 0]
    assert int((~known).sum()) == 400


@pytest.mark.parametrize("observed", [False, True])
def test_a_mask_file_is_resized_with_the_image_and_keeps_thin_gaps(tiny_png, tmp_path, observed):
    mask = np.full((64, 64), 255, np.uint8)
    mask[:, 21] = 0  # a one-pixel hair
    imsave(tmp_path / "mask.png", mask, check_contrast=False)
    config = RunConfig(image=str(tiny_png), task="inpaint", mask=str(tmp_path / "mask.png"),
                       size=32, observed=observed)
    known = prepare_observation(config).operator.observed_mask[0, 0]
    assert known.shape == (32, 32)
    assert not known[:, 10].any() and known[:, [9, 11]].all()
    assert int((~known).sum()) == 32


def test_an_image_observed_as_a_ct_sinogram_must_match_the_angles(tiny_png):
    # a 64 x 64 image is a sinogram of 64 angles: not of the 45 the settings name
    with pytest.raises(InvalidInputError, match="64x64 .* but `angles` is 45: give `angles=64`"):
        prepare_observation(RunConfig(image=str(tiny_png), task="ct", observed=True))


@pytest.fixture
def noisy_png(tmp_path):
    """The CT sample with Gaussian noise 0.05, stored as a 16-bit PNG (no truth)."""
    path = tmp_path / "noisy.png"
    imsave(path, (noisy_sample("ct", 0.05)[0].numpy() * 65535).round().astype(np.uint16))
    return path


def test_observed_image_takes_the_estimate(noisy_png):
    observation = prepare_observation(RunConfig(image=str(noisy_png), observed=True))
    assert observation.noise_estimate == pytest.approx(0.05, rel=NOISE_ESTIMATE_TOLERANCE)
    assert observation.noise.std == observation.noise_estimate
    given = prepare_observation(RunConfig(image=str(noisy_png), observed=True, noise_std=0.06))
    assert given.noise.std == 0.06 and given.noise_estimate == observation.noise_estimate


def test_simulation_keeps_its_default_level():
    observation = prepare_observation(RunConfig(image="sample:phantom"))
    assert observation.noise.std == 0.1 and observation.noise_estimate is None


@pytest.mark.parametrize("std, fragment", [
    (0.5, "far above what"), (0.005, "far below what"),
])
def test_a_given_level_far_from_the_image_is_refused(noisy_png, std, fragment):
    config = RunConfig(image=str(noisy_png), observed=True, noise_std=std)
    with pytest.raises(InvalidInputError, match=fragment):
        prepare_observation(config)


def test_an_image_without_noise_needs_its_level(tmp_path):
    path = tmp_path / "clean.npy"
    np.save(path, np.tile(np.linspace(0, 1, 64, dtype=np.float32), (64, 1)))
    with pytest.raises(InvalidInputError, match="no measurable noise"):
        prepare_observation(RunConfig(image=str(path), observed=True))
    config = RunConfig(image=str(path), observed=True, noise_std=0.02)
    assert prepare_observation(config).noise.std == 0.02


def test_cli_reports_the_estimate(noisy_png, tmp_path, capsys):
    out = tmp_path / "run"
    code = exit_code(["run", "--image", str(noisy_png), "--observed", "--steps", "2",
                      "--samples", "2", "--out", str(out), "--quiet"])
    printed = capsys.readouterr().out
    assert code == 0
    assert "estimated from the image" in printed
    import xarray as xr

    with xr.open_dataset(out / "result.nc", engine="h5netcdf") as result:
        assert result.attrs["noise_estimate"] == pytest.approx(0.05, rel=NOISE_ESTIMATE_TOLERANCE)
        assert result.attrs["likelihood_noise"] == result.attrs["noise_estimate"]


def test_cli_refuses_a_far_level_and_writes_nothing(noisy_png, tmp_path, capsys):
    out = tmp_path / "run"
    code = exit_code(["run", "--image", str(noisy_png), "--observed", "--noise-std", "0.6",
                      "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert "--noise-std" in err and len(err.strip().splitlines()) == 1
    assert not out.exists()
