"""Argument checks shared by every module, with messages that name the argument as the API
does (``noise_std``, ``prior scale``, ...). Each raises :class:`~pyrodip.errors.InvalidInputError`,
which the CLI turns into one line and exit status 2.

>>> positive("noise_std", 0.1)
0.1
>>> positive("noise_std", -1)
Traceback (most recent call last):
...
pyrodip.errors.InvalidInputError: noise_std must be a positive number, got -1
>>> choice("task", "denoise", ("denoise", "ct"))
'denoise'
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from .errors import InvalidInputError

#: Where settings checked with ``within_float32`` (lr, noise_std, prior_scale, ...) must lie:
#: their squares stay within float32's range.
POSITIVE_RANGE = (1e-15, 1e15)


def positive(name: str, value: object, *, within_float32: bool = False) -> float:
    """``value`` as a float when it is a finite number > 0 (not a bool), else an error naming
    ``name``; ``within_float32`` also keeps it within :data:`POSITIVE_RANGE`.

    >>> positive("lr", "0.5")
    0.5
    >>> positive("lr", 1e20, within_float32=True)
    Traceback (most recent call last):
    ...
    pyrodip.errors.InvalidInputError: lr must be between 1e-15 and 1e+15 (fits compute in float32), got 1e+20
    """  # noqa: E501
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise InvalidInputError(f"{name} must be a positive number, got {value!r}") from None
    if isinstance(value, bool) or not (math.isfinite(number) and number > 0):
        raise InvalidInputError(f"{name} must be a positive number, got {value!r}")
    if within_float32:
        low, high = POSITIVE_RANGE
        if not low <= number <= high:
            raise InvalidInputError(
                f"{name} must be between {low:g} and {high:g} (fits compute in float32), "
                f"got {value!r}"
            )
    return number


def positive_int(name: str, value: object) -> int:
    """``value`` when it is an ``int`` >= 1 (not a bool), else an error naming ``name``.

    >>> positive_int("batch", 0)
    Traceback (most recent call last):
    ...
    pyrodip.errors.InvalidInputError: batch must be a positive integer, got 0
    """
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidInputError(f"{name} must be a positive integer, got {value!r}")
    return value


def below_one(name: str, value: object) -> float:
    """``value`` when it is a number in [0, 1) (not a bool), else an error naming ``name``.

    >>> below_one("dropout", 1.0)
    Traceback (most recent call last):
    ...
    pyrodip.errors.InvalidInputError: dropout must be in [0, 1), got 1.0
    """
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < 1:
        raise InvalidInputError(f"{name} must be in [0, 1), got {value!r}")
    return value


def positive_setting(name: str, value: object) -> float:
    """A positive number from a settings file or the command line: a real ``int`` or
    ``float`` (a string is refused), within :data:`POSITIVE_RANGE`.

    >>> positive_setting("lr", "0.1")
    Traceback (most recent call last):
    ...
    pyrodip.errors.InvalidInputError: lr must be a positive number, got '0.1'
    """
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidInputError(f"{name} must be a positive number, got {value!r}")
    return positive(name, value, within_float32=True)


def number(name: str, text: object) -> float:
    """``text`` read as a float, else an error naming ``name``.

    >>> number("prior scale", "0.05")
    0.05
    """
    try:
        return float(text)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise InvalidInputError(f"{name} must be a number, got {text!r}") from None


def choice(name: str, value: object, choices: Iterable[str]) -> object:
    """``value`` when it is one of ``choices`` (a tuple, dict or
    :class:`~pyrodip.registry.Registry`, read now), else an error listing them.

    >>> choice("engine", "slow", ("auto", "pyro", "fast"))
    Traceback (most recent call last):
    ...
    pyrodip.errors.InvalidInputError: unknown engine 'slow': choose one of auto, pyro, fast
    """
    names = list(choices)
    if value not in names:
        raise InvalidInputError(f"unknown {name} {value!r}: choose one of {', '.join(names)}")
    return value
