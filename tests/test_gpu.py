"""GPU runs (``pytest -m gpu`` on a machine with CUDA); CI has none and skips them."""

import pytest
import torch

from pyrodip import RunConfig, fit
from pyrodip.cli import main
from pyrodip.evaluate.metrics import psnr
from pyrodip.studies.results import read_dataset

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA"),
]


def test_fit_on_cuda_keeps_everything_on_the_device(noisy64):
    result = fit(noisy64, RunConfig(steps=200, samples=4, device="cuda"), progress=False)
    assert result.model.z.is_cuda and all(p.is_cuda for p in result.guide.parameters())
    assert result.prediction.mean.is_cuda
    truth = noisy64.truth.cuda()
    assert float(psnr(result.prediction.mean, truth)) > float(
        psnr(noisy64.observation.cuda(), truth))


def test_cli_on_cuda(tmp_path):
    out = tmp_path / "out"
    args = ["run", "--device", "cuda", "--steps", "20", "--samples", "2", "--quiet"]
    assert main([*args, "--out", str(out)]) == 0
    assert read_dataset(out / "result.nc").attrs["psnr"] > 0


@pytest.mark.parametrize("task", ["superres", "inpaint", "ct"])
def test_each_task_on_cuda(task, tmp_path):
    out = tmp_path / task
    args = ["run", "--task", task, "--device", "cuda", "--steps", "10", "--samples", "2"]
    assert main([*args, "--quiet", "--out", str(out)]) == 0
    dataset = read_dataset(out / "result.nc")
    assert dataset.attrs["psnr"] > 0 and dataset.attrs["baseline_psnr"] > 0
