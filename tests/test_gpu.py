"""GPU runs (``pytest -m gpu`` on a machine with CUDA); CI has none and skips them."""

import threading

import pyro
import pytest
import torch

from pyrodip import RunConfig, fit
from pyrodip.cli import main
from pyrodip.evaluate.metrics import psnr
from pyrodip.infer import loop
from pyrodip.infer.checkpoints import Checkpointing, Interrupted
from pyrodip.run.results import read_dataset

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA"),
]


def test_fit_on_cuda_keeps_everything_on_the_device(noisy64):
    # 1000 steps: at 200 the mean is still below the noisy image's PSNR (16.1 against 20.0 dB
    # on the CPU, 15.5 on an H200)
    result = fit(noisy64, RunConfig(steps=1000, samples=4, device="cuda"), progress=False)
    assert result.model.z.is_cuda and all(p.is_cuda for p in result.guide.parameters())
    assert result.prediction.mean.is_cuda
    truth = noisy64.truth.cuda()
    assert float(psnr(result.prediction.mean, truth)) > float(
        psnr(noisy64.observation.cuda(), truth))


def test_cli_on_cuda(tmp_path):
    out = tmp_path / "out"
    args = ["run", "--device", "cuda", "--steps", "20", "--samples", "2", "--quiet"]
    assert main([*args, "--out", str(out)]) == 0
    assert read_dataset(out / "result.nc").attrs["mean_psnr"] > 0


@pytest.mark.parametrize("task", ["superres", "inpaint", "ct"])
def test_each_task_on_cuda(task, tmp_path):
    out = tmp_path / task
    args = ["run", "--task", task, "--device", "cuda", "--steps", "10", "--samples", "2"]
    assert main([*args, "--quiet", "--out", str(out)]) == 0
    dataset = read_dataset(out / "result.nc")
    assert dataset.attrs["mean_psnr"] > 0 and dataset.attrs["baseline_psnr"] > 0


def test_batched_fits_on_cuda_take_the_single_fits_first_step(monkeypatch):
    from pyrodip import fit_batch, prepare_observation

    # cuDNN's convolutions round to TF32 by default, differently for the batched shapes (the
    # first losses then differ by 2.4e-4 on an H200): compare in full float32
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    configs = [RunConfig(size=64, steps=3, samples=2, device="cuda", seed=s) for s in (0, 1)]
    observations = [prepare_observation(config) for config in configs]
    together = fit_batch(observations, configs, progress=False)
    for observation, config, many in zip(observations, configs, together, strict=True):
        one = fit(observation, config, progress=False)
        assert many.prediction.mean.is_cuda
        assert abs(many.history.curves["loss"][0] / one.history.curves["loss"][0] - 1) < 1e-4


def test_a_fit_step_never_waits_for_the_device(noisy64):
    from pyrodip.infer.fitting import Fitting
    from pyrodip.run.fit import build_model, training

    config = RunConfig(steps=10, device="cuda", calibration="none")
    model, guide = build_model(config, noisy64)
    model.cuda()
    guide.cuda()
    fitting = Fitting(model, guide, noisy64, training(config), None, "", None)
    model.train()
    fitting._one_step()  # the first step sets up the optimiser's state
    fitting.step += 1
    torch.cuda.set_sync_debug_mode("error")  # any host synchronisation raises
    try:  # as fit_model runs it: without Pyro's checks, which look at values on the host
        with pyro.validation_enabled(False):
            for _ in range(3):
                fitting._one_step()
                fitting.step += 1
    finally:
        torch.cuda.set_sync_debug_mode("default")



def test_a_captured_fit_follows_the_uncaptured_one(noisy64, monkeypatch):
    # the same kernels, replayed: the first steps agree to float32 rounding (TF32 off, as the
    # batched comparison above); lr_decay checks that the schedule reaches the graph
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    fits = {capture: fit(noisy64, RunConfig(steps=40, samples=2, device="cuda", lr_decay=0.5,
                                            calibration="none", capture=capture),
                         progress=False)
            for capture in (False, True)}
    plain, captured = (fits[capture].history.curves for capture in (False, True))
    assert abs(captured["loss"][:10] / plain["loss"][:10] - 1).max() < 1e-4
    assert abs(captured["psnr"][-1] - plain["psnr"][-1]) < 0.5


def test_a_captured_fit_resumes_from_its_checkpoint(noisy64, tmp_path):
    config = RunConfig(steps=30, samples=2, device="cuda", calibration="none", capture=True)
    whole = fit(noisy64, config, progress=False)
    checkpoint, stop = Checkpointing(tmp_path / "fit.pt"), threading.Event()
    stop.set()  # saved and interrupted after the first step, then resumed
    with pytest.raises(Interrupted):
        fit(noisy64, config, progress=False, checkpoint=checkpoint, stop=stop)
    resumed = fit(noisy64, config, progress=False, checkpoint=checkpoint, resume=True)
    assert resumed.resumed_at == [1]
    assert abs(resumed.history.curves["loss"][-1] / whole.history.curves["loss"][-1] - 1) < 0.05


def test_a_captured_fit_rolls_back_and_records_its_graph_again(noisy64, monkeypatch):
    monkeypatch.setattr(loop, "VALIDATE", False)  # Pyro's checks would raise at the NaN image
    # as tests/run/test_fit.py: this prior and temperature make the loss infinite
    config = RunConfig(steps=60, samples=2, device="cuda", calibration="none", capture=True,
                       prior_scale=1e-15, temperature=1e10)
    result = fit(noisy64, config, progress=False)
    assert result.status == "diverged" and len(result.events) == 4
