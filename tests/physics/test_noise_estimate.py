"""The noise level estimated from an image (pyrodip.physics.noise_estimate) and how an
observed run uses it (pyrodip.run.observe.observed_noise)."""

import numpy as np
import pytest
import torch
from conftest import exit_code
from hypothesis import given, settings
from hypothesis import strategies as st
from skimage.io import imsave

from pyrodip.errors import InvalidInputError
from pyrodip.io.images import load_image
from pyrodip.physics.noise import make_noise
from pyrodip.physics.noise_estimate import estimate_noise_level, estimate_noise_std
from pyrodip.run.config import RunConfig
from pyrodip.run.observe import prepare_observation
from pyrodip.seeding import generator

#: The tolerance the estimate keeps at these levels (experiments/noise_estimation.py measures
#: it on the shared images; below 0.05 fine texture makes it overestimate).
TOLERANCE = 0.15


def noisy_sample(name: str, std: float, seed: int = 0) -> torch.Tensor:
    clean = torch.from_numpy(load_image(f"sample:{name}"))
    noise = torch.randn(clean.shape, generator=generator(seed, "noise"))
    return (clean + std * noise).clamp(0, 1)  # clipped, as a stored image is


@pytest.mark.parametrize("name", ["ct", "mr", "phantom", "retina"])
@pytest.mark.parametrize("std", [0.05, 0.1, 0.2])
def test_estimate_within_tolerance_on_samples(name, std):
    estimate = estimate_noise_std(noisy_sample(name, std))
    assert abs(estimate / std - 1) <= TOLERANCE, (name, std, estimate)


def test_pure_noise_is_measured_exactly():
    noise = torch.randn(3, 64, 64, generator=torch.Generator().manual_seed(1))
    assert estimate_noise_std(0.5 + 0.03 * noise) == pytest.approx(0.03, rel=0.03)


@settings(max_examples=10, deadline=None)
@given(scale=st.floats(0.1, 100), shift=st.floats(-5, 5))
def test_unbounded_estimate_scales_with_the_image(scale, shift):
    y = noisy_sample("phantom", 0.05).numpy()
    base = estimate_noise_std(y, -np.inf, np.inf)
    moved = estimate_noise_std(y * scale + shift, -np.inf, np.inf)
    assert moved == pytest.approx(base * scale, rel=1e-6)


@pytest.mark.parametrize("noise, level", [("speckle", 0.1), ("poisson", 300.0)])
def test_level_of_other_noise_models(noise, level):
    clean = torch.from_numpy(load_image("sample:retina")).clamp(0.2, 0.9)
    y = make_noise(noise, level).sample(clean, generator(0, "noise")).clamp(0, 1)
    assert estimate_noise_level(noise, y) == pytest.approx(level, rel=TOLERANCE)


@pytest.mark.parametrize("image, fragment", [
    (np.zeros((5, 40)), "at least 7x7"),
    (np.full((16, 16), np.nan), "NaN"),
])
def test_bad_images_are_refused(image, fragment):
    with pytest.raises(InvalidInputError, match=fragment):
        estimate_noise_std(image)


@pytest.fixture
def noisy_png(tmp_path):
    """The CT sample with Gaussian noise 0.05, stored as a 16-bit PNG (no truth)."""
    path = tmp_path / "noisy.png"
    imsave(path, (noisy_sample("ct", 0.05)[0].numpy() * 65535).round().astype(np.uint16))
    return path


def test_observed_image_takes_the_estimate(noisy_png):
    observation = prepare_observation(RunConfig(image=str(noisy_png), observed=True))
    assert observation.noise_estimate == pytest.approx(0.05, rel=TOLERANCE)
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
        assert result.attrs["noise_estimate"] == pytest.approx(0.05, rel=TOLERANCE)
        assert result.attrs["noise_level"] == result.attrs["noise_estimate"]


def test_cli_refuses_a_far_level_and_writes_nothing(noisy_png, tmp_path, capsys):
    out = tmp_path / "run"
    code = exit_code(["run", "--image", str(noisy_png), "--observed", "--noise-std", "0.6",
                      "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert "--noise-std" in err and len(err.strip().splitlines()) == 1
    assert not out.exists()
