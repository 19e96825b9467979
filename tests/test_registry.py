"""One Registry class behind every extension point; choices are read when they are checked,
so what is registered later is accepted everywhere."""

import pytest
from conftest import exit_code

from pyrodip.bayes.guides import GUIDES
from pyrodip.bayes.networks import PRESETS, NetConfig
from pyrodip.bayes.priors import PRIORS, NormalPrior, make_prior
from pyrodip.errors import InvalidInputError
from pyrodip.infer.methods import METHODS, Method
from pyrodip.infer.optimizers import OPTIMIZERS
from pyrodip.io.samples import SAMPLES
from pyrodip.physics.noise import NOISE_MODELS
from pyrodip.physics.tasks import TASKS
from pyrodip.registry import Registry
from pyrodip.run.config import RunConfig
from pyrodip.settings import Option

REGISTRIES = {
    "prior": PRIORS, "guide": GUIDES, "method": METHODS, "task": TASKS,
    "noise model": NOISE_MODELS, "sample": SAMPLES, "net preset": PRESETS,
    "optimizer": OPTIMIZERS,
}


@pytest.mark.parametrize("kind", REGISTRIES)
def test_every_extension_point_is_a_registry(kind):
    registry = REGISTRIES[kind]
    assert isinstance(registry, Registry) and registry.kind == kind
    with pytest.raises(InvalidInputError, match=f"^unknown {kind} 'nope': choose one of "):
        registry["nope"]


def test_a_registry_saves_and_restores_as_a_dict():
    saved = dict(PRIORS)
    PRIORS.register("test_extra", NormalPrior)
    PRIORS.clear()
    PRIORS.update(saved)
    assert list(PRIORS) == list(saved) and "test_extra" not in PRIORS


def test_names_registered_later_are_valid_settings(capsys):
    PRIORS.register("test_late", type("LatePrior", (NormalPrior,), {}))
    METHODS.register("test_method", Method("map", 0.0, description="a test method"))
    PRESETS.register("test_tiny", NetConfig(scales=2, channels_down=8, channels_up=8))
    try:
        config = RunConfig(prior="test_late:0.2", method="test_method", net="test_tiny")
        assert make_prior(f"{config.prior}:{config.prior_scale}").spec() == "test_late:0.2"
        assert config.resolved("guide") == "map"
        assert exit_code(["run", "--method", "test_method", "--help"]) == 0
        assert "test_method" in capsys.readouterr().out
    finally:
        PRIORS.unregister("test_late")
        METHODS.unregister("test_method")
        PRESETS.unregister("test_tiny")
    with pytest.raises(InvalidInputError, match="unknown method 'test_method'"):
        RunConfig(method="test_method")


def test_an_entry_declares_its_settings_with_its_registration():
    colours = Registry("colour")
    shade = Option("shade", float, 0.5, "grey: lightness")
    colours.register("grey", object(), options=[shade])

    @colours.register("red", options=(Option("depth", int, 1, "red: depth"),))
    class Red:
        pass

    assert colours.options("grey") == (shade,) and colours.options("blue") == ()
    assert [option.name for option in colours.options("red")] == ["depth"]
    saved = dict(colours)
    colours.clear()
    assert colours.options("grey") == ()
    colours.update(saved)
    assert colours.options("grey") == (shade,)
    colours.unregister("grey")
    assert colours.options("grey") == ()
    with pytest.raises(InvalidInputError, match="options of colour 'blue' must be pyrodip"):
        colours.register("blue", object(), options=["shade"])


def test_a_taken_name_is_refused():
    with pytest.raises(InvalidInputError, match="'normal' is already registered"):
        PRIORS.register("normal", type("Other", (NormalPrior,), {}))
