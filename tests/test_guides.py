import math

import pytest
import torch

from pyrodip import BayesianDIP, InvalidInputError, NetConfig, make_guide
from pyrodip.guides import GUIDES, MeanFieldGuide, register_guide

TINY = NetConfig(scales=2, input_channels=4, channels_down=4, channels_up=4, channels_skip=2)


def test_locations_start_from_the_pytorch_initialisation():
    model = BayesianDIP((1, 16, 16), net=TINY)
    guide = make_guide("meanfield", model, init_scale=0.02)
    for name, initial in model.initial_weights.items():
        assert torch.equal(guide.loc(name), initial)
        assert torch.allclose(guide.scale(name), torch.tensor(0.02))


def test_paper_initialisation_draws_locations_from_a_normal():
    torch.manual_seed(0)
    model = BayesianDIP((1, 16, 16), net=NetConfig.preset("small"))
    guide = make_guide("meanfield", model, init_loc="normal:0.1")
    locs = torch.cat([guide.loc(n).detach().flatten() for n in guide.sites])
    assert abs(float(locs.std()) - 0.1) < 0.005
    assert abs(float(locs.mean())) < 0.005


def test_map_guide_samples_its_locations():
    model = BayesianDIP((1, 16, 16), net=TINY)
    guide = make_guide("map", model)
    draws = guide()
    assert all(torch.equal(draws[n], guide.loc(n)) for n in guide.sites)


def test_meanfield_draws_vary_around_the_location():
    model = BayesianDIP((1, 16, 16), net=TINY)
    guide = make_guide("meanfield", model, init_scale=0.05)
    name = "net.body.down.0.weight"
    with torch.no_grad():
        draws = torch.stack([guide()[name] for _ in range(200)])
        spread = float((draws - guide.loc(name)).std())
    assert abs(spread - 0.05) < 0.005


@pytest.mark.parametrize("spec, options, words", [
    ("lowrank", {}, "meanfield, map"),
    ("meanfield", {"init_scale": 0.0}, "init_scale"),
    ("meanfield", {"init_loc": "uniform"}, "normal:STD"),
])
def test_bad_guides_are_refused(spec, options, words):
    model = BayesianDIP((1, 16, 16), net=TINY)
    with pytest.raises(InvalidInputError, match=words):
        make_guide(spec, model, **options)


def test_user_guide_can_be_registered():
    @register_guide("test_wide")
    class WideGuide(MeanFieldGuide):
        def __init__(self, model, **options):
            super().__init__(model, init_scale=0.5)

    try:
        guide = make_guide("test_wide", BayesianDIP((1, 16, 16), net=TINY))
        assert math.isclose(float(guide.scale("net.head.bias").detach()[0]), 0.5, rel_tol=1e-5)
    finally:
        del GUIDES["test_wide"]
