"""RunConfig: settings from their declarations (general and the components'), validated on
construction, from Python, TOML or replace(), and recorded as the JSON results compare by."""

import json
from pathlib import Path

import pytest

from pyrodip.errors import InvalidInputError
from pyrodip.infer.methods import METHODS, Method
from pyrodip.physics.tasks import TASKS, DenoiseTask
from pyrodip.run.config import BUILT_IN_SETTINGS, GENERAL, RunConfig, declared_settings
from pyrodip.settings import Option

ROOT = Path(__file__).resolve().parents[2]
#: The keys of every run's JSON (results on disk compare by it): those before settings were
#: declared, and the later ones (``lr_decay``, ``average``, ``readout``; ``capture``, ``clip``,
#: ``censoring``).
RECORDED = {
    "average", "lr_decay", "readout", "capture", "clip", "censoring", "image_prior", "tv_weight",
    "red_weight", "red_sigma", "red_denoiser", "red_every", "data_term", "ensemble",
    "angles", "bayesian_batchnorm", "burn_in", "calibration", "calibration_coverage",
    "calibration_refit", "device", "dropout", "ema", "engine", "factor", "guide",
    "heldout_fraction", "image", "init_loc", "init_scale", "jitter", "layer_priors",
    "local_reparam", "lr", "mask", "method", "net", "noise", "noise_level", "noise_std",
    "normalization", "observed", "optimizer", "photons", "prior", "prior_scale", "sample_every",
    "samples", "seed", "sgld", "size", "slice_index", "steps", "stop_patience", "stop_rule",
    "task", "temperature", "volume_index", "weight_decay",
}


@pytest.fixture
def blur_task():
    """A task registered with a setting of its own, gone after the test."""
    TASKS.register("test_blur", DenoiseTask(), options=[
        Option("test_kernel", int, 5, "test_blur: kernel side"),
    ])
    yield
    TASKS.unregister("test_blur")


def test_the_json_keeps_the_keys_it_always_had():
    assert set(json.loads(RunConfig().to_json())) == RECORDED
    assert BUILT_IN_SETTINGS == RECORDED | {"plugins"}
    assert json.loads(RunConfig(plugins=["json"]).to_json())["plugins"] == ["json"]


def test_components_declare_their_settings_and_general_ones_are_declared_once():
    names = [option.name for option in GENERAL]
    assert len(names) == len(set(names)) and "factor" not in names
    assert [o.name for o in TASKS.options("superres")] == ["factor"]
    assert [o.name for o in METHODS.options("sgld")] == ["sgld", "burn_in", "sample_every"]
    assert set(declared_settings()) == RECORDED | {"plugins"}


def test_a_component_setting_is_a_keyword_an_attribute_and_a_toml_key(blur_task, tmp_path):
    config = RunConfig(task="test_blur", test_kernel=3)
    assert config.test_kernel == 3 and config.replace(steps=5).test_kernel == 3
    (tmp_path / "run.toml").write_text('task = "test_blur"\ntest_kernel = 7\n')
    assert RunConfig.from_toml(tmp_path / "run.toml").test_kernel == 7
    with pytest.raises(InvalidInputError, match="^test_kernel must be an integer, got 'x'$"):
        RunConfig(test_kernel="x")


def test_a_component_setting_is_recorded_where_it_is_used_or_given(blur_task):
    assert "test_kernel" not in json.loads(RunConfig().to_json())
    assert json.loads(RunConfig(task="test_blur").to_json())["test_kernel"] == 5
    assert json.loads(RunConfig(test_kernel=9).to_json())["test_kernel"] == 9
    assert RunConfig() == RunConfig(test_kernel=5) != RunConfig(test_kernel=9)


def test_a_setting_declared_twice_differently_is_refused(blur_task):
    TASKS.register("test_other", DenoiseTask(), options=[
        Option("test_kernel", float, 1.0, "test_other: another kernel"),
    ])
    try:
        with pytest.raises(InvalidInputError, match="setting 'test_kernel' of task 'test_other'"):
            RunConfig()
    finally:
        TASKS.unregister("test_other")


@pytest.mark.parametrize(("settings", "message"), [
    ({"stepz": 5}, "unknown key 'stepz' in settings (did you mean 'steps'?)"),
    ({"steps": 0}, "steps must be a positive integer, got 0"),
    ({"task": 3}, "task must be a string, got 3"),
    ({"factor": 3}, "super-resolution factor must be one of 2, 4, 8, got 3"),
    ({"observed": "yes"}, "observed must be true or false, got 'yes'"),
    ({"slice_index": -1}, "slice must be an integer >= 0, got -1"),
    ({"dropout": 1.0}, "dropout must be in [0, 1), got 1.0"),
    ({"method": "sgld", "steps": 10, "burn_in": 10}, "burn_in (10) must be below steps (10)"),
    ({"plugins": "json"}, "plugins must be a list of module names"),
])
def test_bad_settings_are_one_line_naming_the_setting(settings, message):
    with pytest.raises(InvalidInputError) as error:
        RunConfig(**settings)
    assert str(error.value).startswith(message) and "\n" not in str(error.value)


def test_the_burn_in_check_is_the_sgld_methods():
    assert RunConfig(method="dip", steps=10, burn_in=10).burn_in == 10  # not sgld: unchecked
    METHODS.register("test_method", Method("map", 0.0))
    try:
        assert RunConfig(method="test_method", steps=10, burn_in=10).method == "test_method"
    finally:
        METHODS.unregister("test_method")


def test_a_prior_spec_moves_its_scale_and_method_defaults_resolve():
    config = RunConfig(prior="laplace:0.05", method="mcdropout")
    assert (config.prior, config.prior_scale) == ("laplace", 0.05)
    assert (config.resolved("dropout"), config.resolved("optimizer")) == (0.3, "adamw")
    assert RunConfig(prior="studentt:0.1:3").prior == "studentt::3"


def test_a_renamed_setting_names_its_successor(tmp_path):
    path = tmp_path / "old.toml"
    path.write_text("kl_weight = 0.3\n")
    with pytest.raises(InvalidInputError, match="'kl_weight' in config .* is now 'temperature'"):
        RunConfig.from_toml(path)


def test_a_bad_value_in_a_file_is_its_error_even_when_an_override_replaces_it(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text('steps = "many"\n')
    for overrides in ({}, {"steps": 3}):
        with pytest.raises(InvalidInputError, match=f"config file {path}: steps must be a "
                           "positive integer, got 'many'"):
            RunConfig.from_toml(path, **overrides)


def test_the_example_config_that_claims_the_demo_is_the_default_run():
    from pyrodip.physics.tasks import DEFAULT_NOISE_STD

    demo = RunConfig.from_toml(ROOT / "experiments" / "ct_denoise.toml")
    assert demo.noise_std == DEFAULT_NOISE_STD  # what a simulation without noise_std draws
    assert demo.replace(noise_std=None) == RunConfig()
    assert "The CPU demo" in (ROOT / "experiments" / "ct_denoise.toml").read_text()


def test_an_explicit_prior_scale_wins_over_the_scale_in_a_files_prior(tmp_path):
    path = tmp_path / "run.toml"
    path.write_text('prior = "laplace:0.1"\n')
    assert RunConfig.from_toml(path, prior_scale=0.2).prior_scale == 0.2
    assert RunConfig.from_toml(path).prior_scale == 0.1
    assert RunConfig.from_toml(path, prior="normal:0.3").prior_scale == 0.3
    assert RunConfig(prior="laplace:0.05").replace(prior_scale=0.2).prior_scale == 0.2
    with pytest.raises(InvalidInputError, match="^settings: prior 'normal:0.3' and prior_scale "
                                                "0.2 differ: give one$"):
        RunConfig(prior="normal:0.3", prior_scale=0.2)


def test_the_first_number_of_a_prior_spec_is_its_scale():
    studentt = RunConfig(prior="studentt:3")
    assert (studentt.prior, studentt.prior_scale) == ("studentt", 3.0)
    assert RunConfig(prior="studentt::5", prior_scale=0.2).prior == "studentt::5"


def test_the_models_and_guides_own_defaults_are_the_runs():
    from pyrodip.bayes.guides import make_guide
    from pyrodip.bayes.model import BayesianDIP

    config, mfvi = RunConfig(), METHODS[RunConfig().method]
    model = BayesianDIP((1, 32, 32))
    guide = make_guide(mfvi.guide, model)
    assert model.prior.spec() == f"{config.prior}:{config.prior_scale}"
    assert (model.temperature, model.jitter) == (mfvi.temperature, config.jitter)
    assert float(guide.scales().detach().mean()) == pytest.approx(mfvi.init_scale)
