"""pyrodip.validation: the argument checks name the argument and the fix."""

import pytest

from pyrodip.errors import InvalidInputError
from pyrodip.physics.tasks import TASKS
from pyrodip.validation import choice, number, positive, positive_setting


@pytest.mark.parametrize("value", [0, -1, float("nan"), float("inf"), "abc", None, True])
def test_positive_names_the_argument(value):
    with pytest.raises(InvalidInputError, match=r"^noise_std must be a positive number, got "):
        positive("noise_std", value)


def test_positive_settings_are_real_numbers_within_float32():
    assert positive("lr", "0.5") == 0.5 and positive_setting("lr", 2) == 2.0
    with pytest.raises(InvalidInputError, match="lr must be a positive number, got '0.5'"):
        positive_setting("lr", "0.5")
    with pytest.raises(InvalidInputError, match="between 1e-15 and 1e"):
        positive_setting("lr", 1e30)


def test_number_and_choice_messages():
    with pytest.raises(InvalidInputError, match="^prior scale must be a number, got 'x'$"):
        number("prior scale", "x")
    with pytest.raises(InvalidInputError, match="^unknown task 'blur': choose one of denoise, "):
        choice("task", "blur", TASKS)
