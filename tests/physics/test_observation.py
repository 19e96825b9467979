"""Each inverse problem end to end on tiny images: the observation, the model, the CLI."""

import numpy as np
import pytest
import torch
from pyro import poutine
from pyro.infer import TraceMeanField_ELBO

from pyrodip import Observation, RunConfig, fit, make_guide, prepare_observation
from pyrodip.cli import main
from pyrodip.run.fit import build_model
from pyrodip.run.results import read_dataset

FAST = ["--steps", "3", "--samples", "2", "--quiet"]


def test_missing_pixels_do_not_reach_the_likelihood(tiny_png):
    config = RunConfig(image=str(tiny_png), task="inpaint", mask="random:0.3")
    observation = prepare_observation(config)
    model, _ = build_model(config, observation)
    guide = make_guide("map", model)
    known = observation.operator.observed_mask[0, 0]
    y = observation.observation[None].clone()

    def loss(obs):
        torch.manual_seed(0)
        return TraceMeanField_ELBO().differentiable_loss(model, guide, obs)

    base = loss(y)
    changed_missing = y.clone()
    changed_missing[..., ~known] += 5.0
    assert torch.equal(loss(changed_missing), base)
    changed_known = y.clone()
    changed_known[..., known] += 0.1
    assert not torch.equal(loss(changed_known), base)
    trace = poutine.trace(model).get_trace(y)
    assert trace.nodes["obs"]["is_observed"]


@pytest.mark.parametrize("args, baselines", [
    (["--task", "denoise"], ["bm3d", "tv", "wavelet", "nlm"]),
    (["--task", "denoise", "--noise", "speckle"], ["bm3d", "tv", "wavelet", "nlm"]),
    (["--task", "denoise", "--noise", "poisson", "--photons", "200"],
     ["bm3d", "tv", "wavelet", "nlm"]),
    (["--task", "superres", "--factor", "2"], ["bicubic"]),
    (["--task", "inpaint", "--mask", "strokes"], ["biharmonic"]),
    (["--task", "ct", "--angles", "20"], ["fbp", "sart"]),
])
def test_every_task_runs_from_the_cli(args, baselines, tiny_png, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["run", "--image", str(tiny_png), *args, "--out", str(out), *FAST]) == 0
    dataset = read_dataset(out / "result.nc")
    assert dataset["mean"].shape == (1, 64, 64) and dataset["baseline"].shape == (1, 64, 64)
    assert dataset["classical"].values.tolist() == baselines
    assert dataset["baselines"].shape == (len(baselines), 1, 64, 64)
    best = baselines[int(dataset["classical_psnr"].argmax())]
    assert dataset.attrs["baseline_method"] == best == dataset["baseline"].attrs["method"]
    assert dataset.attrs["baseline_psnr"] == float(dataset["classical_psnr"].max())
    assert np.isfinite(dataset.attrs["mean_psnr"]) and np.isfinite(dataset.attrs["baseline_psnr"])
    assert ("psnr_missing" in dataset.attrs) == ("inpaint" in args)
    assert ("psnr_known" in dataset.attrs) == ("inpaint" in args)
    assert f"best baseline   PSNR {dataset.attrs['baseline_psnr']:6.2f}" in capsys.readouterr().out


def test_observed_image_has_no_truth_metrics(tiny_png, tmp_path):
    out = tmp_path / "out"
    assert main(["run", "--image", str(tiny_png), "--observed", "--out", str(out), *FAST]) == 0
    dataset = read_dataset(out / "result.nc")
    assert "truth" not in dataset and "psnr" not in dataset.attrs and "psnr" not in dataset
    assert "psnr_observation" in dataset


@pytest.mark.parametrize("changes, words", [
    ({"task": "deblur"}, "choose one of denoise, superres, inpaint, ct"),
    ({"noise": "rician"}, "choose one of gaussian, speckle, poisson"),
    ({"factor": 3}, "2, 4, 8"),
    ({"angles": 0}, "angles must be a positive integer"),
    ({"photons": -5.0}, "photons must be a positive number"),
    ({"noise_level": "exact"}, "known, learned, heteroscedastic"),
])
def test_bad_task_options_are_refused(changes, words):
    with pytest.raises(ValueError, match=words):
        RunConfig(**changes)


def test_a_fit_on_each_operator_improves_on_its_start(tiny_png):
    for task in ("superres", "ct"):
        config = RunConfig(image=str(tiny_png), task=task, steps=60, samples=2)
        result = fit(prepare_observation(config), config, progress=False)
        curve = result.history.curves["psnr_observation"]
        assert curve[-1] > curve[0] + 1.0


def test_ct_truth_lies_inside_the_scanned_circle(tiny_png):
    observation = prepare_observation(RunConfig(image=str(tiny_png), task="ct"))
    outside = ~observation.operator.circle.reshape(64, 64)
    assert observation.truth[0][outside].abs().max() == 0
    assert observation.truth[0][~outside].abs().max() > 0


def test_the_noise_is_not_the_networks_random_numbers():
    """Seeded alike, the noise once reused the uniforms that make the network's input: the
    network could read the noise of every pixel from it. Now each has its own stream."""
    import pyro

    from pyrodip.bayes.model import BayesianDIP

    truth = torch.full((1, 32, 32), 0.5)
    noise = Observation.simulate(truth, noise=0.1, seed=3).observation - truth
    pyro.set_rng_seed(3)
    z = BayesianDIP((1, 32, 32)).z[0, 0].flatten()
    correlation = torch.corrcoef(torch.stack([noise.flatten(), z]))[0, 1]
    assert abs(float(correlation)) < 0.1  # independent: about 1 / sqrt(1024) = 0.03
    same_stream = torch.randn(1, 32, 32, generator=torch.Generator().manual_seed(3))
    assert not torch.allclose(noise / 0.1, same_stream)
