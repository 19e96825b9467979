"""The memory a fit needs, estimated before it starts, and the guard that refuses a fit that will
not fit the device.

:func:`estimate_memory` adds up, in float32 values:

- **weights**: each weight of the network (counted on PyTorch's meta device, nothing
  allocated) times what the fit keeps of it: the guide's values (its class's
  ``values_per_weight``: loc and rho for mean-field, the loc for MAP, the factor rows too for
  ``lowrank``), each with its gradient, the optimiser's moments (Adam: two) and a copy of value
  and moments for rolling back a divergence; plus the step's sampled weight and what autograd
  keeps of it (the class's ``step_values_per_weight``: 11 values for a sampling guide, 3 for
  MAP, counted with autograd's saved-tensor hooks) and the model's copy of the initial weights;
- **activations**: the tensors autograd keeps for the backward pass, counted layer by layer
  for the skip network (:func:`activation_floats_per_pixel`), plus the gradient buffers of the
  widest full-resolution layer (four of them), times the pixels;
- **operator**: CT's sampling grid and rotated copies of the image (6 values per pixel and
  angle); the other operators are small;
- **images**: the observation, truth, tracked and predictive images (the predictive streams its
  samples, so a few images whatever ``samples`` is; 16 per channel and pixel in all) and the
  metric curves (9 values per step);
- **runtime**: a fixed allowance of 256 MiB for kernels' workspaces and allocator slack.

Checked against the peak resident memory of real CPU fits (``ru_maxrss`` minus the resident
memory before the fit, with ``MALLOC_MMAP_THRESHOLD_=65536`` so that freed tensors leave it):
per pixel, the small net takes 744 values (estimated 747) and the paper net 2371 (estimated
2667); in all, the estimate was 1.12-1.58 times the measured peak (small net 256-768 px, paper
net 128-384 px, the larger images closer). With glibc's default allocator, heap fragmentation
raised the measured peaks by up to 12 %, to the estimate at most.

>>> from pyrodip.run.config import RunConfig
>>> small = estimate_memory(RunConfig(net="small"), (1, 512, 512))
>>> paper = estimate_memory(RunConfig(net="paper"), (1, 512, 512))
>>> round(small.total / 2**30, 2), round(paper.total / 2**30, 2)
(1.04, 3.21)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch

from ..bayes.guides import GUIDES
from ..bayes.networks import NetConfig, SkipNet
from ..errors import InvalidInputError
from ..infer.optimizers import OPTIMIZERS
from ..physics.tasks import TASKS
from .config import RunConfig

FLOAT_BYTES = 4
#: Fixed allowance for the runtime: kernels' workspaces, allocator slack.
RUNTIME_BYTES = 256 * 2**20
#: Images kept per channel and pixel: observation, truth, tracked and predictive images.
IMAGES_PER_PIXEL = 16
#: Metric curves kept per step (see pyrodip.infer.loop._Tracker).
CURVES = 9
#: Gradient buffers, each the size of the widest full-resolution layer, alive at the backward
#: pass's peak besides the kept activations (fitted to the measured peaks).
GRADIENT_BUFFERS = 4
#: Optimiser moments per value, by optimiser class (another class: as Adam).
OPTIMIZER_MOMENTS = {torch.optim.Adam: 2, torch.optim.AdamW: 2, torch.optim.SGD: 0}


@dataclass(frozen=True)
class MemoryEstimate:
    """The bytes a fit needs, by part (see the module docstring)."""

    weights: int
    activations: int
    operator: int
    images: int
    runtime: int = RUNTIME_BYTES

    @property
    def total(self) -> int:
        return self.weights + self.activations + self.operator + self.images + self.runtime


def activation_floats_per_pixel(net: NetConfig, out_channels: int) -> float:
    """Values autograd keeps per image pixel for one training step of the skip network (for the
    backward pass), counted layer by layer; borders of padded copies are neglected.

    Each conv block (conv, BatchNorm, activation) keeps its conv and BatchNorm outputs; each
    conv keeps its input and, with reflect padding, the padded copy too. Scale ``i`` runs at
    ``4 ** -i`` of the pixels (its convs after the strided one at ``4 ** -(i + 1)``).

    >>> activation_floats_per_pixel(NetConfig.preset("small"), 1)
    635.3125
    """
    down, up, skip = (net.per_scale(f) for f in ("channels_down", "channels_up", "channels_skip"))
    pad = int(net.padding != "zeros")  # conv inputs padded into a copy, which the conv keeps
    kept = 2 if net.batch_norm else 1  # per conv block: conv output (+ BatchNorm output)
    total, cin = 0.0, net.input_channels
    for i in range(net.scales):
        s, t = 4.0**-i, 4.0 ** -(i + 1)
        copies = pad * (1 + (skip[i] > 0))  # padded copies of the scale's input
        # The input z has no gradient: only its padded copies are kept (or z itself).
        inputs = (copies or 1) if i == 0 else 1 + copies
        merged = skip[i] + (down[i] if i == net.scales - 1 else up[i + 1])
        total += cin * inputs * s
        total += kept * skip[i] * s  # skip branch
        total += kept * down[i] * t + (1 + pad + kept) * down[i] * t  # strided conv, conv
        total += (1 + pad + int(net.batch_norm)) * merged * s  # concatenation, BatchNorm, conv
        total += kept * up[i] * s + (1 + pad + kept) * up[i] * s  # conv, 1x1 conv
        cin = down[i]
    # The head's input, twice (a second full-resolution copy, measured since the convs before a
    # BatchNorm lost their bias); sigmoid output, residual, y.
    return total + 2 * up[0] + 3 * out_channels


def _widest(net: NetConfig) -> int:
    """Channels of the widest full-resolution layer."""
    skip, down, up = (net.per_scale(f) for f in ("channels_skip", "channels_down", "channels_up"))
    merged = skip[0] + (down[0] if net.scales == 1 else up[1])
    return max(net.input_channels, merged, up[0])


def count_weights(net: NetConfig, out_channels: int) -> int:
    """Parameters of the skip network (built on the meta device: nothing is allocated).

    >>> count_weights(NetConfig.preset("small"), 1)
    121185
    """
    with torch.device("meta"):
        return sum(p.numel() for p in SkipNet(out_channels, net).parameters())


def estimate_memory(config: RunConfig, image_shape: tuple[int, int, int]) -> MemoryEstimate:
    """The memory (bytes) that fitting ``config`` to an image shaped ``image_shape`` (C, H, W)
    takes on its device, by part."""
    channels, height, width = image_shape
    pixels = height * width
    net = NetConfig.preset(config.net, normalization=config.normalization)
    out_channels = channels * (2 if config.noise_level == "heteroscedastic" else 1)
    name, _, argument = config.resolved("guide").partition(":")
    guide = GUIDES[name]
    moments = OPTIMIZER_MOMENTS.get(OPTIMIZERS[config.resolved("optimizer")], 2)
    per_value = 1 + 1 + moments + (1 + moments)  # value, gradient, moments, rollback copy
    per_weight = guide.values_per_weight(argument) * per_value + guide.step_values_per_weight + 1
    activations = activation_floats_per_pixel(net, out_channels) + GRADIENT_BUFFERS * _widest(net)
    operator = TASKS[config.task].operator_floats(config, pixels)
    return MemoryEstimate(
        weights=FLOAT_BYTES * per_weight * count_weights(net, out_channels),
        activations=math.ceil(FLOAT_BYTES * activations * pixels),
        operator=FLOAT_BYTES * operator,
        images=FLOAT_BYTES * (IMAGES_PER_PIXEL * channels * pixels + CURVES * config.steps),
    )


def available_memory(device: torch.device | str) -> int | None:
    """Bytes free for a fit on ``device``: for CUDA the free device memory plus what PyTorch
    holds cached but unused; for the CPU ``MemAvailable`` of ``/proc/meminfo`` (Linux); None
    where unknown (and for CUDA on a machine without it, which resolve_device refuses)."""
    device = torch.device(device)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            return None  # resolve_device refuses it
        check_cuda_index(device, torch.cuda.device_count())
        free, _ = torch.cuda.mem_get_info(device)
        return cuda_available_bytes(
            free, torch.cuda.memory_reserved(device), torch.cuda.memory_allocated(device)
        )
    if device.type == "cpu":
        try:
            lines = Path("/proc/meminfo").read_text().splitlines()
        except OSError:
            return None
        for line in lines:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return None


def check_cuda_index(device: torch.device, count: int) -> None:
    """Refuse (:class:`InvalidInputError`) a CUDA ``device`` whose index this machine, with
    ``count`` CUDA devices, does not have."""
    if (device.index or 0) >= count:
        raise InvalidInputError(
            f"device {device} does not exist: this machine has {count} CUDA device"
            f"{'s' if count != 1 else ''} (cuda:0 to cuda:{count - 1})"
        )


def cuda_available_bytes(free: int, reserved: int, allocated: int) -> int:
    """Bytes free for a fit on a CUDA device: the device's ``free`` memory plus what PyTorch
    holds cached but unused (``reserved - allocated``).

    >>> cuda_available_bytes(free=10 * 2**30, reserved=2 * 2**30, allocated=2**30) / 2**30
    11.0
    """
    return free + reserved - allocated


def check_memory(
    config: RunConfig, image_shape: tuple[int, int, int], device: torch.device | str | None = None,
    fits: int = 1,
) -> MemoryEstimate:
    """Refuse (:class:`InvalidInputError`) a fit, or a batch of ``fits`` fits, whose estimated
    memory exceeds what ``device`` (default ``config.device``) has available, naming a
    smaller batch, net or size that fits; return one fit's estimate otherwise (also when the
    available memory is unknown).

    >>> from pyrodip.run.config import RunConfig
    >>> check_memory(RunConfig(), (1, 64, 64), fits=2**40)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    pyrodip.errors.InvalidInputError: a batch of 1099511627776 fits needs about ...
    """
    device = torch.device(config.device if device is None else device)
    estimate = estimate_memory(config, image_shape)
    available = available_memory(device)
    if available is None or estimate.total * fits <= available:
        return estimate
    if device.type == "cpu":
        where = "this machine"
    else:
        where = f"cuda:{torch.cuda.current_device() if device.index is None else device.index}"
    if fits > 1 and estimate.total <= available:
        raise InvalidInputError(
            f"a batch of {fits} fits needs about {_gib(estimate.total * fits)} of memory but "
            f"{where} has {_gib(available)} available: use `batch={available // estimate.total}`"
        )
    raise InvalidInputError(
        f"this fit needs about {_gib(estimate.total)} of memory ({config.net} network, "
        f"{image_shape[1]}x{image_shape[2]} image) but {where} has {_gib(available)} "
        f"available: {_smaller(config, image_shape, available)}"
    )


def _smaller(config: RunConfig, shape: tuple[int, int, int], available: int) -> str:
    """Settings that fit in ``available`` bytes: the small net, a smaller --size, or both."""

    def fits(net: str, image_shape: tuple[int, int, int]) -> bool:
        changed = config.replace(net=net)
        return estimate_memory(changed, image_shape).total <= available

    options = []
    if config.net != "small" and fits("small", shape):
        options.append("`net=small`")
    size = _largest_size(config.net, shape, lambda s: fits(config.net, s))
    if size:
        options.append(f"`size={size}`")
    if not options:
        size = _largest_size("small", shape, lambda s: fits("small", s))
        if size:
            options.append(f"`net=small` with `size={size}`")
    if options:
        return f"use {' or '.join(options)}"
    if FLOAT_BYTES * CURVES * config.steps > available / 2:
        return "use fewer `steps`"
    return "free some memory or choose another `device`"


def _largest_size(net: str, shape: tuple[int, int, int], fits) -> int | None:
    """The largest --size (the longer side, a multiple of the net's minimum side, below the
    current one) at which ``fits(shape)`` holds, or None."""
    channels, height, width = shape
    side = NetConfig.preset(net).min_side
    longer = max(height, width)

    def resized(size: int) -> tuple[int, int, int]:
        scale = size / longer
        return (
            channels,
            max(side, round(height * scale) // side * side),
            max(side, round(width * scale) // side * side),
        )

    low, high = 0, (longer - 1) // side  # multiples of side: low fits (0: none), high unknown
    while low < high:
        middle = (low + high + 1) // 2
        if fits(resized(middle * side)):
            low = middle
        else:
            high = middle - 1
    return low * side or None


def _gib(size: float) -> str:
    gib = size / 2**30
    return f"{gib:.1f} GiB" if gib < 1000 else f"{gib:.3g} GiB"
