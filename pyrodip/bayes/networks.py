"""The Deep Image Prior skip encoder-decoder (Ulyanov et al. 2018), as a plain PyTorch module.

The network knows nothing about Pyro: :class:`pyrodip.bayes.model.BayesianDIP` converts it into a
Pyro model whose conv weights are random variables. Presets:

- ``paper``: the MIDL 2021 paper's network: 5 scales of 128 channels, 4 skip channels,
  32 input channels (about 2.2 M weights).
- ``small``: 4 scales of 32 channels for CPU work (about 0.1 M weights).

``normalization`` decides what a weight prior can mean (``docs/concepts.md``, "What sigma_p
and T mean"):

- ``batch`` (the papers'): BatchNorm after every conv, on the image's own statistics. The output
  does not change when a conv channel's weights are scaled by a > 0, so the fitted posterior
  does not depend on the prior's scale; the convs before a BatchNorm have no bias (it cancels).
- ``none``: no normalisation; convs initialised with fixed variance gain^2 / fan_in (He), so
  the prior's scale is the weights' absolute scale.
- ``scaled``: no normalisation; each conv multiplies its weight by gain / sqrt(fan_in)
  (:class:`ScaledConv2d`), so that prior draws with scale 1 keep the activations' variance in
  every layer: one prior scale means the same in every layer.

>>> net = SkipNet(out_channels=1, config=NetConfig.preset("small"))
>>> net(torch.zeros(1, 32, 64, 64)).shape
torch.Size([1, 1, 64, 64])
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..errors import InvalidInputError
from ..registry import Registry
from ..validation import below_one, choice

ACTIVATIONS = {
    "leaky_relu": lambda: nn.LeakyReLU(0.2),
    "relu": nn.ReLU,
    "elu": nn.ELU,
    "silu": nn.SiLU,
}
#: He's gain of each activation: weights of variance gain^2 / fan_in keep the signal's variance.
GAINS = {"leaky_relu": (2 / (1 + 0.2**2)) ** 0.5, "relu": 2**0.5, "elu": 1.0, "silu": 1.0}
NORMALIZATIONS = ("batch", "none", "scaled")
PADDINGS = ("reflect", "zeros", "replicate", "circular")
UPSAMPLING = ("bilinear", "nearest", "bicubic")


@dataclass(frozen=True)
class NetConfig:
    """Architecture of the skip network. Per-scale settings take one int for every scale or a
    tuple with one entry per scale (finest first).

    >>> NetConfig(scales=3, channels_down=(8, 16, 16)).per_scale("channels_down")
    (8, 16, 16)
    >>> NetConfig(scales=2).min_side
    4
    """

    scales: int = 4
    input_channels: int = 32
    channels_down: int | tuple[int, ...] = 32
    channels_up: int | tuple[int, ...] = 32
    channels_skip: int | tuple[int, ...] = 4
    filter_size_down: int = 3
    filter_size_up: int = 3
    filter_size_skip: int = 1
    upsampling: str = "bilinear"
    padding: str = "reflect"
    activation: str = "leaky_relu"
    normalization: str = "batch"  # batch, none or scaled (see NORMALIZATIONS)
    dropout: float = 0.0  # MC dropout rate after each conv of encoder and decoder (not skips)

    def __post_init__(self) -> None:
        if self.scales < 1:
            raise InvalidInputError(f"net scales must be >= 1, got {self.scales}")
        if self.input_channels < 1:
            raise InvalidInputError(f"net input_channels must be >= 1, got {self.input_channels}")
        for field in ("channels_down", "channels_up", "channels_skip"):
            values = self.per_scale(field)
            lowest = 0 if field == "channels_skip" else 1
            if len(values) != self.scales or min(values) < lowest:
                raise InvalidInputError(
                    f"net {field} must be one int >= {lowest} or {self.scales} of them "
                    f"(one per scale), got {getattr(self, field)!r}"
                )
        for field in ("filter_size_down", "filter_size_up", "filter_size_skip"):
            size = getattr(self, field)
            if size < 1 or size % 2 == 0:
                raise InvalidInputError(f"net {field} must be a positive odd int, got {size}")
        below_one("net dropout", self.dropout)
        choice("net activation", self.activation, ACTIVATIONS)
        choice("net normalization", self.normalization, NORMALIZATIONS)
        choice("net padding", self.padding, PADDINGS)
        choice("net upsampling", self.upsampling, UPSAMPLING)

    @property
    def batch_norm(self) -> bool:
        return self.normalization == "batch"

    def per_scale(self, field: str) -> tuple[int, ...]:
        value = getattr(self, field)
        return (value,) * self.scales if isinstance(value, int) else tuple(value)

    @property
    def min_side(self) -> int:
        """Image sides must be multiples of this: 2 ** scales."""
        return 2**self.scales

    @classmethod
    def preset(cls, name: str, **overrides: object) -> NetConfig:
        """A named architecture (``small``, ``paper`` or another of :data:`PRESETS`), optionally
        with fields replaced."""
        return dataclasses.replace(PRESETS[name], **overrides)


PRESETS: Registry[NetConfig] = Registry("net preset")
"""Network architectures by name (``--net``); add one with ``PRESETS.register("name", cfg)``."""
PRESETS.register("small", NetConfig())
PRESETS.register(
    "paper", NetConfig(scales=5, channels_down=128, channels_up=128, channels_skip=4)
)


class SkipNet(nn.Module):
    """The DIP encoder-decoder with skip connections, returning raw (pre-activation) outputs.

    Each scale: a strided conv down, a conv, the coarser scales, bilinear upsampling, the
    concatenated skip branch (1x1 conv), BatchNorm, a conv and a 1x1 conv up. A final 1x1 conv
    maps to ``out_channels``.

    Called on the input noise z, a `(B, input_channels, H, W)` tensor (H and W multiples of
    ``2 ** scales``), it returns a `(B, out_channels, H, W)` tensor.
    """

    def __init__(self, out_channels: int, config: NetConfig | None = None) -> None:
        super().__init__()
        self.config = config = config or NetConfig()
        self.body = _Scale(config.input_channels, config, 0)
        self.head = _conv(config, config.per_scale("channels_up")[0], out_channels, 1,
                          gain=1.0, bias=True)

    def forward(self, z: Tensor) -> Tensor:
        return self.head(self.body(z))


class _Scale(nn.Module):
    def __init__(self, in_channels: int, config: NetConfig, index: int) -> None:
        super().__init__()
        down = config.per_scale("channels_down")[index]
        up = config.per_scale("channels_up")[index]
        skip = config.per_scale("channels_skip")[index]
        kd, ku = config.filter_size_down, config.filter_size_up
        skip_block = _block(config, in_channels, skip, config.filter_size_skip, dropout=False)
        self.skip = skip_block if skip else None
        self.down = nn.Sequential(
            *_block(config, in_channels, down, kd, stride=2), *_block(config, down, down, kd)
        )
        last = index == config.scales - 1
        self.inner = None if last else _Scale(down, config, index + 1)
        merged = skip + (down if last else config.per_scale("channels_up")[index + 1])
        self.upsample = nn.Upsample(
            scale_factor=2,
            mode=config.upsampling,
            **({} if config.upsampling == "nearest" else {"align_corners": False}),
        )
        self.up = nn.Sequential(
            *([nn.BatchNorm2d(merged, track_running_stats=False)] if config.batch_norm else []),
            *_block(config, merged, up, ku),
            *_block(config, up, up, 1),
        )

    def forward(self, x: Tensor) -> Tensor:
        skip = self.skip(x) if self.skip is not None else None
        deep = self.down(x)
        if self.inner is not None:
            deep = self.inner(deep)
        deep = self.upsample(deep)
        if skip is not None:
            deep = torch.cat([skip, deep], dim=1)
        return self.up(deep)


class MCDropout2d(nn.Module):
    """Channel dropout that stays on in evaluation mode too (MC dropout samples the
    predictive by keeping it on).

    >>> drop = MCDropout2d(0.5).eval()
    >>> bool((drop(torch.ones(1, 64, 2, 2)) == 0).any())
    True
    """

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        return nn.functional.dropout2d(x, self.p, training=True)


def _block(
    config: NetConfig, cin: int, cout: int, kernel: int, stride: int = 1, dropout: bool = True
) -> nn.Sequential:
    """conv -> BatchNorm -> activation (-> MC dropout, when ``config.dropout`` and
    ``dropout``). BatchNorm always normalises with the statistics of the image at hand (no
    running averages), as DIP does in both fitting and prediction; the conv before it has no
    bias (BatchNorm would subtract it)."""
    gain = GAINS[config.activation]
    layers = [_conv(config, cin, cout, kernel, gain, bias=not config.batch_norm, stride=stride)]
    if config.batch_norm:
        layers.append(nn.BatchNorm2d(cout, track_running_stats=False))
    layers.append(ACTIVATIONS[config.activation]())
    if dropout and config.dropout > 0:
        layers.append(MCDropout2d(config.dropout))
    return nn.Sequential(*layers)


def _conv(config: NetConfig, cin: int, cout: int, kernel: int, gain: float, bias: bool,
          stride: int = 1) -> nn.Conv2d:
    """The conv of a block or the head, parameterised as ``config.normalization`` asks."""
    options = dict(stride=stride, padding=kernel // 2, padding_mode=config.padding, bias=bias)
    if config.normalization == "scaled":
        return ScaledConv2d(cin, cout, kernel, gain=gain, **options)
    conv = nn.Conv2d(cin, cout, kernel, **options)
    if config.normalization == "none":  # fixed-variance (He) initialisation
        with torch.no_grad():
            conv.weight.normal_(0.0, gain / (cin * kernel**2) ** 0.5)
            conv.bias.zero_()
    return conv


class ScaledConv2d(nn.Conv2d):
    """A conv whose weight v is used as ``v * gain / sqrt(fan_in)``: v ~ N(0, 1) keeps the
    variance of the signal (for He's ``gain`` of the activation that follows), whatever the
    layer's fan-in, so one prior N(0, sigma_p^2) on v means the same in every layer.
    Initialised v ~ N(0, 1), bias 0.

    >>> conv = ScaledConv2d(64, 8, 3, gain=1.0, padding=1)
    >>> round(float(conv(torch.randn(1, 64, 32, 32)).std()), 1)
    1.0
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, gain: float,
                 **options) -> None:
        super().__init__(in_channels, out_channels, kernel_size, **options)
        self.multiplier = gain / (in_channels * kernel_size**2) ** 0.5

    def reset_parameters(self) -> None:
        nn.init.normal_(self.weight)
        if self.bias is not None:
            nn.init.zeros_(self.bias)

    def forward(self, x: Tensor) -> Tensor:
        return self._conv_forward(x, self.weight * self.multiplier, self.bias)
