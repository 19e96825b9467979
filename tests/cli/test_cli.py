"""pyrodip.cli (its parser): the run options are generated from the declared settings: one
option and one help text per setting, each showing its default; the method-dependent ones show
each method's."""

import argparse
import re

import pytest
from conftest import exit_code

from pyrodip.cli import add_run_options, option_help
from pyrodip.infer.methods import METHODS
from pyrodip.physics.tasks import TASKS, DenoiseTask
from pyrodip.run.config import METHOD_DEFAULTS, declared_settings
from pyrodip.settings import Option


def run_options() -> dict[str, argparse.Action]:
    """The options add_run_options makes, by destination."""
    parser = argparse.ArgumentParser(argument_default=argparse.SUPPRESS)
    add_run_options(parser)
    return {action.dest: action for action in parser._actions if action.dest not in (
        "help", "config")}


def test_every_setting_has_exactly_one_option_with_a_help_text():
    actions = run_options()
    assert sorted(actions) == sorted(declared_settings())
    flags = [flag for action in actions.values() for flag in action.option_strings]
    assert len(flags) == len(set(flags)) == len(actions)
    for name, option in declared_settings().items():
        assert actions[name].option_strings == [option.flag]
        assert actions[name].help == option_help(option) and option.help_text()


def test_a_registered_components_setting_gets_an_option(capsys):
    TASKS.register("test_blur", DenoiseTask(), options=[
        Option("test_kernel", int, 5, "test_blur: kernel side", metavar="N"),
    ])
    try:
        action = run_options()["test_kernel"]
        assert (action.option_strings, action.type, action.metavar) == (["--test-kernel"], int,
                                                                         "N")
        assert action.help == "test_blur: kernel side [5]"
    finally:
        TASKS.unregister("test_blur")


@pytest.mark.parametrize("name", METHOD_DEFAULTS)
def test_the_help_shows_each_methods_real_default(name, capsys):
    assert exit_code(["run", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split()).replace("- ", "-")
    flag = declared_settings()[name].flag
    shown = re.search(rf"{flag} [A-Z_]+ .*?\[the method's: ([^\]]*)\]", text)
    assert shown, f"{flag} shows no method defaults"
    pairs = dict(item.split(" ", 1) for item in shown[1].split(", "))
    for method_name, method in METHODS.items():
        expected = method.shown_default(name)
        assert pairs.get(method_name, pairs["else"]) == expected, (name, method_name)
    assert METHODS["mfvi"].shown_default("init_scale") == "0.01"
