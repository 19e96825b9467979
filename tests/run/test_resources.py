"""The resource guard: fits that will not fit the device's memory are refused before they
start, naming the estimate, the memory and what fits."""

import dataclasses
import re
from pathlib import Path

import pytest
import torch

import pyrodip.run.resources
from pyrodip import Observation, RunConfig
from pyrodip.bayes.networks import NetConfig
from pyrodip.errors import InvalidInputError
from pyrodip.infer.elbo import make_loss
from pyrodip.run.fit import build_model
from pyrodip.run.resources import (
    activation_floats_per_pixel,
    check_cuda_index,
    check_memory,
    count_weights,
    cuda_available_bytes,
    estimate_memory,
)

SMALL, PAPER = NetConfig.preset("small"), NetConfig.preset("paper")


def test_activations_are_counted_layer_by_layer():
    # By hand, for the small net (4 scales of 32 channels, 4 skip channels, 32 inputs): scale 0
    # keeps 2 padded copies of z (64), skip conv+BN (8), the strided and second conv (48 at
    # 1/4 the pixels), concatenation/BN/padded copy (3 x 36) and the up convs (6 x 32) = 420
    # per pixel; the deeper scales 452 each at 1/4, 1/16, 1/64; the head 2 x 32 + 3 per channel.
    assert activation_floats_per_pixel(SMALL, 1) == 420 + 452 * 21 / 64 + 67
    assert activation_floats_per_pixel(SMALL, 3) == activation_floats_per_pixel(SMALL, 1) + 6


@pytest.mark.parametrize("normalization", ["batch", "none"])
def test_activations_match_what_autograd_keeps(normalization):
    """The count per pixel against the tensors autograd really saves (small net, 32 and 64
    px: the difference removes what does not grow with the image)."""

    def saved_bytes(side: int) -> int:
        observation = Observation.simulate(torch.rand(1, side, side), noise=0.1, seed=0)
        model, guide = build_model(RunConfig(normalization=normalization), observation)
        loss_fn = make_loss(model, guide)
        params = {p.untyped_storage().data_ptr() for p in loss_fn.parameters()}
        saved = {}

        def pack(tensor):
            storage = tensor.untyped_storage()
            if storage.data_ptr() not in params:
                saved[storage.data_ptr()] = storage.nbytes()
            return tensor

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
            loss_fn(observation.observation[None])
        return sum(saved.values())

    measured = (saved_bytes(64) - saved_bytes(32)) / (64**2 - 32**2) / 4
    net = dataclasses.replace(SMALL, normalization=normalization)
    assert measured == pytest.approx(activation_floats_per_pixel(net, 1), rel=0.02)


def test_estimate_grows_with_pixels_channels_and_net():
    config = RunConfig(steps=100)
    base = estimate_memory(config, (1, 128, 128))
    double = estimate_memory(config, (1, 256, 256))
    assert double.activations == 4 * base.activations
    assert double.weights == base.weights and double.runtime == base.runtime
    widest = 36  # the small net's concatenation at full resolution: 4 skip + 32 up channels
    assert base.activations == 4 * 128**2 * (activation_floats_per_pixel(SMALL, 1) + 4 * widest)
    color = estimate_memory(config, (3, 128, 128))
    assert color.activations - base.activations == 4 * 128**2 * 6  # sigmoid, residual, y
    assert color.images - base.images == 4 * 128**2 * 16 * 2
    # Per weight: mean-field keeps 2 values x (value, gradient, Adam's 2, a rollback copy of 3)
    # plus 11 for the step's sample and 1 initial copy; MAP 1 x 7 + 3 + 1.
    assert base.weights == 4 * 26 * count_weights(SMALL, 1) == 4 * 26 * 121185
    assert estimate_memory(config.replace(method="dip"), (1, 128, 128)).weights == 4 * 11 * 121185
    paper = estimate_memory(config.replace(net="paper"), (1, 128, 128))
    assert paper.activations > 3 * base.activations and paper.weights > 15 * base.weights
    ct = estimate_memory(config.replace(task="ct", angles=45), (1, 128, 128))
    assert ct.operator == 4 * 6 * 45 * 128**2


def test_refusal_names_the_estimate_the_memory_and_what_fits(monkeypatch):
    config = RunConfig(net="paper")
    shape = (1, 1024, 1024)
    available = estimate_memory(config.replace(net="small"), shape).total + 1
    monkeypatch.setattr(pyrodip.run.resources, "available_memory", lambda device: available)
    with pytest.raises(InvalidInputError) as refused:
        check_memory(config, shape)
    message = str(refused.value)
    needed = estimate_memory(config, shape).total / 2**30
    match = re.fullmatch(
        rf"this fit needs about {needed:.1f} GiB of memory \(paper network, 1024x1024 image\) "
        rf"but this machine has {available / 2**30:.1f} GiB available: use `net=small` or "
        r"`size=(\d+)`",
        message,
    )
    assert match, message
    size = int(match.group(1))  # the largest multiple of 32 that fits
    assert size % 32 == 0
    assert estimate_memory(config, (1, size, size)).total <= available
    assert estimate_memory(config, (1, size + 32, size + 32)).total > available


def test_nothing_fits_names_the_steps(monkeypatch):
    monkeypatch.setattr(pyrodip.run.resources, "available_memory", lambda device: 2**30)
    with pytest.raises(InvalidInputError, match="GiB available: use fewer `steps`$"):
        check_memory(RunConfig(steps=10**12), (1, 64, 64))


def test_fit_is_guarded(monkeypatch, noisy64):
    monkeypatch.setattr(pyrodip.run.resources, "available_memory", lambda device: 2**20)
    with pytest.raises(InvalidInputError, match=r"needs about 0\.\d GiB .* has 0.0 GiB"):
        pyrodip.fit(noisy64, RunConfig(steps=3, samples=2), progress=False)


def test_unknown_memory_is_no_refusal(monkeypatch):
    monkeypatch.setattr(pyrodip.run.resources, "available_memory", lambda device: None)
    estimate = check_memory(RunConfig(), (1, 10**5, 10**5))
    assert estimate.total > 2**40


def test_cuda_memory_counts_the_free_and_the_cached():
    gib = 2**30
    assert cuda_available_bytes(free=10 * gib, reserved=2 * gib, allocated=gib) == 11 * gib
    assert cuda_available_bytes(free=10 * gib, reserved=gib, allocated=gib) == 10 * gib


def test_a_missing_cuda_device_is_refused_by_name():
    check_cuda_index(torch.device("cuda:1"), 2)
    check_cuda_index(torch.device("cuda"), 1)
    with pytest.raises(InvalidInputError, match=r"^device cuda:1 does not exist: this machine "
                       r"has 1 CUDA device \(cuda:0 to cuda:0\)$"):
        check_cuda_index(torch.device("cuda:1"), 1)
    with pytest.raises(InvalidInputError, match=r"has 0 CUDA devices \(cuda:0 to cuda:-1\)"):
        check_cuda_index(torch.device("cuda"), 0)


def test_a_cuda_refusal_names_the_device(monkeypatch):
    monkeypatch.setattr(pyrodip.run.resources, "available_memory", lambda device: 11 * 2**30)
    with pytest.raises(InvalidInputError, match=r"\(paper network, 1536x1536 image\) but cuda:0 "
                       r"has 11.0 GiB available: use `net=small` or `size=\d+`$"):
        check_memory(RunConfig(net="paper", device="cuda"), (1, 1536, 1536), "cuda:0")


@pytest.mark.skipif(not Path("/proc/meminfo").exists(), reason="no /proc/meminfo")
def test_available_cpu_memory_is_memavailable_in_bytes():
    def mem_available() -> int:
        line = next(line for line in Path("/proc/meminfo").read_text().splitlines()
                    if line.startswith("MemAvailable:"))
        assert line.endswith(" kB")
        return int(line.split()[1]) * 1024

    before = mem_available()
    available = pyrodip.run.resources.available_memory("cpu")
    after = mem_available()
    slack = 64 * 2**20  # other processes come and go between the reads
    assert min(before, after) - slack <= available <= max(before, after) + slack
