"""Option: a setting's declaration checks its values, names its flag and shows its default."""

import pytest

from pyrodip.errors import InvalidInputError
from pyrodip.settings import Option, at_least_zero, fraction, has_type, non_negative


def test_values_are_checked_by_type_choices_and_check():
    size = Option("kernel_size", int, 5, "side", check=at_least_zero)
    assert size.validate(0) == 0
    with pytest.raises(InvalidInputError, match="^kernel_size must be an integer >= 0, got -1$"):
        size.validate(-1)
    mode = Option("mode", str, "a", "the mode", choices=("a", "b"))
    with pytest.raises(InvalidInputError, match="^mode must be a string, got 3$"):
        mode.validate(3)
    with pytest.raises(InvalidInputError, match="^unknown mode 'c': choose one of a, b$"):
        mode.validate("c")
    with pytest.raises(InvalidInputError, match="^flag must be true or false, got 1$"):
        Option("flag", bool, False, "a flag").validate(1)
    assert Option("std", float, None, "std").validate(None) is None  # unset
    assert Option("std", float, 1.0, "std").validate(2) == 2  # a float setting takes an int


def test_the_flag_help_and_shown_default():
    option = Option("slice_index", int, None, "the slice", flag_name="--slice",
                    shown_default="the middle")
    assert (option.flag, option.default_text()) == ("--slice", "the middle")
    mode = Option("noise_mode", str, "a", "noise mode", choices=("a", "b"),
                  shown_default=lambda: "computed")
    assert (mode.flag, mode.help_text(), mode.default_text()) == (
        "--noise-mode", "noise mode: a or b", "computed")
    assert Option("fast", bool, False, "go fast").default_text() == "off"
    assert Option("names", list, [], "names").default_text() is None


def test_defaults_are_fresh_copies():
    table = Option("table", dict, {}, "a table")
    first = table.initial()
    first["x"] = "y"
    assert table.initial() == {}


@pytest.mark.parametrize(("name", "kind"), [("1st", int), ("_hidden", int), ("ok", tuple)])
def test_bad_declarations_are_refused(name, kind):
    with pytest.raises(InvalidInputError, match="^(a setting's name|setting ok: type)"):
        Option(name, kind, None, "help")


def test_number_checks():
    assert has_type(1, float) and not has_type(True, int) and has_type(True, bool)
    assert non_negative("jitter", 0) == 0 and fraction("f", 0.5) == 0.5
    with pytest.raises(InvalidInputError, match="^f must be a number in \\(0, 1\\), got 0$"):
        fraction("f", 0)
