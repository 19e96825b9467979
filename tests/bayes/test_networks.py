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
    ],
)
def test_bad_configs_are_refused_with_the_valid_choice(kwargs, words):
    with pytest.raises(InvalidInputError, match=words):
        NetConfig(**kwargs)


def test_unknown_preset_lists_the_presets():
    with pytest.raises(InvalidInputError, match="small, paper"):
        NetConfig.preset("huge")
