"""The settings a command runs with, from its options (pyrodip.cli.arguments)."""

import argparse

import pytest

from pyrodip.cli import main
from pyrodip.cli.arguments import batch_option, config_from_args, parse_settings, resumed_config
from pyrodip.errors import InvalidInputError
from pyrodip.run.results import read_dataset

FAST = ["--steps", "3", "--samples", "2", "--quiet"]


def test_config_file_is_read_and_options_override_it(tiny_png, tmp_path):
    config = tmp_path / "run.toml"
    config.write_text(f'image = "{tiny_png}"\nsteps = 50\nmethod = "dip"\nseed = 7\n')
    out = tmp_path / "out"
    assert main(["run", "--config", str(config), "--out", str(out), *FAST]) == 0
    attrs = read_dataset(out / "result.nc").attrs
    assert (attrs["steps"], attrs["method"], attrs["seed"]) == (3, "dip", 7)


def test_plugin_options_add_to_the_config_files_plugins(tmp_path):
    config = tmp_path / "run.toml"
    config.write_text('plugins = ["json"]\nsteps = 50\n')
    args = argparse.Namespace(config=config, plugins=["math", "json"], quiet=True)
    settings = config_from_args(args)
    assert settings.plugins == ["json", "math"] and settings.steps == 50
    assert config_from_args(argparse.Namespace(steps=4)).steps == 4  # no file: the defaults


def test_set_values_are_toml_values_or_else_strings():
    assert parse_settings(["seed=3", "image=scan.png", "size = 64 "]) == {
        "seed": 3, "image": "scan.png", "size": 64}
    for text in ("steps", "=3"):
        with pytest.raises(InvalidInputError, match=r"^--set takes KEY=VALUE, e\.g\. steps=200"):
            parse_settings([text])


def test_batch_is_an_integer_or_auto():
    with pytest.raises(InvalidInputError, match="^--batch must be a positive integer or auto, "
                       "got 'many'$"):
        batch_option("many")


def test_resume_refuses_other_settings(tmp_path):
    args = argparse.Namespace(command="run", resume=tmp_path, quiet=True, prior_scale=0.1)
    with pytest.raises(InvalidInputError, match="from the checkpoint: drop --prior-scale$"):
        resumed_config(args)
