import math

import pytest
import torch
import xarray as xr
from hypothesis import given, settings
from hypothesis import strategies as st

from pyrodip.bayes.image_priors import (
    DEFAULT_RED_SIGMA,
    DEFAULT_RED_WEIGHT,
    DEFAULT_TV_WEIGHT,
    IMAGE_PRIORS,
    TV_EPS,
    RegularizationByDenoising,
    TotalVariation,
    make_image_prior,
)
from pyrodip.cli import main
from pyrodip.errors import InvalidInputError
from pyrodip.physics import baselines
from pyrodip.run.config import RunConfig
from pyrodip.run.fit import build_model, fit, fit_batch
from pyrodip.run.observe import prepare_observation
from pyrodip.studies.bo_study import tunable_settings

FLAT = 16 * 16 * math.sqrt(TV_EPS)  # what a 16 x 16 image adds where it is flat


@given(a=st.floats(-1, 1), b=st.floats(-1, 1))
@settings(max_examples=30, deadline=None)
def test_the_total_variation_of_a_plane_is_its_slope_times_the_interior(a, b):
    rows, cols = torch.meshgrid(torch.arange(16.0), torch.arange(16.0), indexing="ij")
    image = (a * cols + b * rows).view(1, 1, 16, 16).double()
    tv = -float(TotalVariation(1.0).log_density(image))
    # Forward differences, zero across the last row and column: the interior 15 x 15 pixels
    # have slope sqrt(a^2 + b^2); the last column has only dy = b, the last row only dx = a.
    expected = 15 * 15 * math.hypot(a, b) + 15 * (abs(a) + abs(b))
    assert tv == pytest.approx(expected, rel=1e-6, abs=FLAT * 1.01)


def test_the_weight_scales_the_log_density_and_channels_add():
    image = torch.rand(1, 2, 16, 16)
    one = TotalVariation(1.0).log_density(image)
    assert float(TotalVariation(3.0).log_density(image)) == pytest.approx(3 * float(one))
    per_channel = sum(float(TotalVariation(1.0).log_density(image[:, c : c + 1]))
                      for c in range(2))
    assert float(one) == pytest.approx(per_channel, rel=1e-6)


def test_a_flat_image_has_finite_gradients_and_an_edge_is_pulled_in():
    flat = torch.full((1, 1, 8, 8), 0.5, requires_grad=True)
    TotalVariation(1.0).log_density(flat).backward()
    assert torch.isfinite(flat.grad).all() and float(flat.grad.abs().max()) == 0.0
    edge = torch.zeros(1, 1, 8, 8)
    edge[..., 4:] = 1.0
    edge.requires_grad_(True)
    TotalVariation(1.0).log_density(edge).backward()
    # Ascending the log-density lowers the bright side and raises the dark side of the edge.
    assert float(edge.grad[..., 3].min()) > 0 > float(edge.grad[..., 4].max())


def test_image_priors_by_name():
    assert set(IMAGE_PRIORS) >= {"none", "tv"}
    assert make_image_prior("none", RunConfig()) is None
    prior = make_image_prior("tv", RunConfig(image_prior="tv", tv_weight=0.5))
    assert isinstance(prior, TotalVariation) and prior.spec() == "tv:0.5"
    with pytest.raises(InvalidInputError, match="unknown image prior 'tvv'"):
        make_image_prior("tvv", RunConfig())
    with pytest.raises(InvalidInputError, match="tv_weight must be a positive number"):
        TotalVariation(0.0)


@pytest.mark.parametrize(("settings", "spec"), [
    ({}, None), ({"image_prior": "tv"}, f"tv:{DEFAULT_TV_WEIGHT:g}"),
    ({"image_prior": "tv", "tv_weight": 0.2}, "tv:0.2"),
])
def test_a_run_builds_the_image_prior_it_names(settings, spec):
    config = RunConfig(size=32, **settings)
    model, _ = build_model(config, prepare_observation(config))
    assert (model.image_prior.spec() if model.image_prior is not None else None) == spec
    assert ("tv_weight" in config.component_settings()) == (spec is not None)


def test_bo_can_tune_the_tv_weight():
    assert "tv_weight" in tunable_settings()


def test_cli_fits_with_a_tv_prior_and_records_it(tmp_path):
    out = tmp_path / "tv"
    assert main(["run", "--size", "32", "--steps", "20", "--image-prior", "tv", "--tv-weight",
                 "50", "--out", str(out), "--quiet"]) == 0
    with xr.open_dataset(out / "result.nc") as result:
        assert result.attrs["image_prior"] == "tv:50"


def test_cli_refuses_a_bad_tv_weight_before_writing(tmp_path, capsys):
    out = tmp_path / "bad"
    assert main(["run", "--image-prior", "tv", "--tv-weight", "-1", "--out", str(out)]) == 2
    assert "tv_weight must be a positive number" in capsys.readouterr().err
    assert not out.exists()


def test_a_strong_tv_prior_gives_a_flatter_image():
    def returned_tv(**settings):
        config = RunConfig(size=32, steps=60, seed=0, **settings)
        result = fit(prepare_observation(config), config, progress=False)
        return -float(TotalVariation(1.0).log_density(result.prediction.mean.unsqueeze(0)))

    assert returned_tv(image_prior="tv", tv_weight=100.0) < 0.8 * returned_tv()


def test_red_pulls_the_image_towards_its_denoised_self():
    image = torch.rand(1, 1, 16, 16, dtype=torch.float64, requires_grad=True)
    red = RegularizationByDenoising(weight=4.0, sigma=0.1, denoiser="tv")
    value = red.log_density(image)
    denoised = torch.from_numpy(baselines.denoise_tv(image[0].detach().numpy(), 0.1)).double()
    expected = -2.0 * float(((image[0].detach() - denoised) ** 2).sum())
    assert float(value.detach()) == pytest.approx(expected, rel=1e-5)
    value.backward()  # RED's gradient: -weight (x - D(x)), D(x) held fixed
    assert torch.allclose(image.grad[0], -4.0 * (image[0].detach() - denoised), atol=1e-5)


def test_red_runs_its_denoiser_every_few_steps_and_a_checkpoint_keeps_its_state(monkeypatch):
    runs = []

    def counting(noisy, std):
        runs.append(std)
        return noisy * 0.5

    monkeypatch.setitem(baselines.DENOISERS, "tv", counting)
    red = RegularizationByDenoising(weight=1.0, sigma=0.2, denoiser="tv", every=3)
    image = torch.rand(1, 1, 8, 8)
    for _ in range(7):
        red.log_density(image)
    assert runs == [0.2, 0.2, 0.2]  # at calls 0, 3 and 6
    resumed = RegularizationByDenoising(weight=1.0, sigma=0.2, denoiser="tv", every=3)
    resumed.load_state_dict(red.state_dict())  # the denoised image's shape comes with it
    assert torch.equal(resumed.denoised, image * 0.5) and int(resumed.calls) == 7
    resumed.log_density(image)
    assert len(runs) == 3  # call 7: no run, as in the uninterrupted fit


@pytest.mark.parametrize(("settings", "message"), [
    ({"red_denoiser": "median"}, "unknown red_denoiser 'median'"),
    ({"red_every": 0}, "red_every must be a positive integer"),
    ({"capture": True, "device": "cuda"}, "image_prior=red works between steps"),
])
def test_red_settings_are_checked(settings, message):
    with pytest.raises(InvalidInputError, match=message):
        RunConfig(image_prior="red", **settings)


def test_a_batch_refuses_red_and_a_single_fit_records_it(tmp_path):
    config = RunConfig(size=32, steps=4, image_prior="red", red_denoiser="tv", red_every=2)
    observation = prepare_observation(config)
    red = f"red:{DEFAULT_RED_WEIGHT:g}:tv:{DEFAULT_RED_SIGMA:g}"
    with pytest.raises(InvalidInputError, match=f"the image prior {red} works between"):
        fit_batch([observation, observation], [config, config], progress=False)
    out = tmp_path / "red"
    assert main(["run", "--size", "32", "--steps", "4", "--image-prior", "red",
                 "--red-denoiser", "tv", "--out", str(out), "--quiet"]) == 0
    with xr.open_dataset(out / "result.nc") as result:
        assert result.attrs["image_prior"] == red
