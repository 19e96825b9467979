import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from pyrodip import InvalidInputError, NetConfig, SkipNet


@settings(max_examples=15, deadline=None)
@given(
    scales=st.integers(1, 4),
    multiple_h=st.integers(1, 3),
    multiple_w=st.integers(1, 3),
    out_channels=st.integers(1, 4),
    skip=st.sampled_from([0, 2]),
    upsampling=st.sampled_from(["bilinear", "nearest"]),
    padding=st.sampled_from(["reflect", "zeros"]),
)
def test_output_has_the_input_size(scales, multiple_h, multiple_w, out_channels, skip, upsampling,
                                   padding):
    config = NetConfig(scales=scales, input_channels=3, channels_down=4, channels_up=5,
                       channels_skip=skip, upsampling=upsampling, padding=padding)
    height, width = config.min_side * multiple_h * 2, config.min_side * multiple_w * 2
    out = SkipNet(out_channels, config)(torch.rand(1, 3, height, width))
    assert out.shape == (1, out_channels, height, width)
    assert torch.isfinite(out).all()


def test_presets_have_the_stated_architecture():
    paper = NetConfig.preset("paper")
    assert (paper.scales, paper.input_channels) == (5, 32)
    assert paper.per_scale("channels_down") == (128,) * 5
    assert paper.per_scale("channels_skip") == (4,) * 5
    small = NetConfig.preset("small")
    assert small.scales == 4 and max(small.per_scale("channels_down")) <= 32
    weights = sum(p.numel() for p in SkipNet(1, paper).parameters())
    assert 2.0e6 < weights < 2.5e6


def test_preset_accepts_overrides():
    assert NetConfig.preset("small", scales=3).scales == 3


@pytest.mark.parametrize(
    "kwargs, words",
    [
        ({"scales": 0}, "scales"),
        ({"channels_down": (8, 8)}, "channels_down"),
        ({"filter_size_up": 2}, "filter_size_up"),
        ({"activation": "tanhh"}, "leaky_relu"),
        ({"padding": "mirror"}, "reflect"),
        ({"normalization": "layer"}, "batch, none, scaled"),
    ],
)
def test_bad_configs_are_refused_with_the_valid_choice(kwargs, words):
    with pytest.raises(InvalidInputError, match=words):
        NetConfig(**kwargs)


def test_unknown_preset_lists_the_presets():
    with pytest.raises(InvalidInputError, match="small, paper"):
        NetConfig.preset("huge")


def _scaled_channel(net: SkipNet, conv: torch.nn.Conv2d, channel: int, factor: float) -> SkipNet:
    """A copy of ``net`` whose ``conv`` (found by identity) has output ``channel`` times
    ``factor`` (its weights, and its bias when it has one)."""
    import copy

    name = next(n for n, m in net.named_modules() if m is conv)
    scaled = copy.deepcopy(net)
    target = scaled.get_submodule(name)
    with torch.no_grad():
        target.weight[channel] *= factor
        if target.bias is not None:
            target.bias[channel] *= factor
    return scaled


@settings(max_examples=20, deadline=None)
@given(factor=st.floats(0.05, 20.0), conv_index=st.integers(0, 100), channel=st.integers(0, 3))
def test_batchnorm_makes_the_output_blind_to_a_conv_channels_scale(factor, conv_index, channel):
    """The scale invariance behind "sigma_p is inert" (docs/concepts.md): a conv that a
    BatchNorm follows can scale any output channel by a > 0 without changing the output; without
    normalisation the output changes."""
    torch.manual_seed(0)
    z = torch.rand(1, 3, 16, 16, dtype=torch.float64)
    for normalization in ("batch", "none", "scaled"):
        config = NetConfig(scales=2, input_channels=3, channels_down=4, channels_up=4,
                           channels_skip=2, normalization=normalization)
        net = SkipNet(1, config).double()
        for module in net.modules():  # exact up to BatchNorm's eps: take that away
            if isinstance(module, torch.nn.BatchNorm2d):
                module.eps = 1e-12
        convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d) and m is not net.head]
        conv = convs[conv_index % len(convs)]
        changed = _scaled_channel(net, conv, channel % conv.out_channels, factor)
        same = torch.allclose(changed(z), net(z), rtol=1e-6, atol=1e-8)
        if normalization == "batch":
            assert same
        elif abs(factor - 1) > 0.1:
            assert not same


def test_convs_before_batchnorm_have_no_bias():
    for normalization, biased in (("batch", 1), ("none", None), ("scaled", None)):
        net = SkipNet(1, NetConfig(scales=2, channels_down=4, channels_up=4,
                                   normalization=normalization))
        convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
        with_bias = sum(conv.bias is not None for conv in convs)
        assert with_bias == (biased or len(convs))  # batch: only the head


@pytest.mark.parametrize("normalization", ["none", "scaled"])
def test_unnormalised_nets_keep_the_signal_variance_at_initialisation(normalization):
    """He's fixed-variance initialisation: the body's output std stays of order 1."""
    torch.manual_seed(0)
    net = SkipNet(1, NetConfig(normalization=normalization))
    out = net.body(torch.randn(1, 32, 64, 64))
    assert 0.2 < float(out.std()) < 5.0


def test_scaled_conv_uses_its_weight_times_gain_over_root_fan_in():
    from pyrodip.bayes.networks import ScaledConv2d

    conv = ScaledConv2d(3, 2, 3, gain=2.0, padding=1)
    x = torch.randn(1, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    expected = torch.nn.functional.conv2d(x, conv.weight * 2.0 / 27**0.5, conv.bias, padding=1)
    # the gain is applied in another order than here: equal up to float32 rounding (an output
    # near 0 fails a purely relative check)
    assert torch.allclose(conv(x), expected, rtol=1e-5, atol=1e-6)
