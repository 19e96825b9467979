"""Declarations of run settings: each :class:`Option` names a setting, its type, default and
help, and how its value is checked. :class:`~pyrodip.run.config.RunConfig`, its TOML files and
the command line's options are built from them; a task, method, prior, guide or noise model
declares its own when it is registered (``TASKS.register("deblur", DeblurTask(),
options=[Option("kernel_size", int, 5, "deblur: side of the blur kernel")])``).

>>> size = Option("kernel_size", int, 5, "deblur: side of the blur kernel", check=positive_int)
>>> size.validate(3), size.flag
(3, '--kernel-size')
>>> size.validate(2.5)
Traceback (most recent call last):
...
pyrodip.errors.InvalidInputError: kernel_size must be a positive integer, got 2.5
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from .errors import InvalidInputError
from .validation import choice, positive_int

__all__ = [
    "Option", "at_least_zero", "fraction", "has_type", "listing", "non_negative", "positive_int",
]

#: The types a setting may have (``list``: of strings, e.g. plugins; ``dict``: of strings).
TYPES = (str, int, float, bool, list, dict)
#: What a value of each type is called in messages.
TYPE_WORDS = {str: "a string", int: "an integer", float: "a number", bool: "true or false",
              list: "a list", dict: "a table"}


@dataclass(frozen=True)
class Option:
    """A setting: ``name`` (a Python identifier, the TOML key), ``type`` (one of
    :data:`TYPES`; a ``float`` setting takes an ``int`` too), ``default`` (None: unset, the
    code that reads it decides), ``help`` (a text, or a function giving it, without the
    default), ``check(name, value)`` that raises :class:`~pyrodip.errors.InvalidInputError`
    (for every value but None where the default is None), ``choices`` (names the value must
    be one of, read when checked), ``metavar``, ``flag_name`` (the command-line option when
    not ``--NAME-WITH-DASHES``) and ``shown_default`` (the default as the help shows it, or a
    function giving it, when not ``default`` itself)."""

    name: str
    type: type
    default: Any
    help: str | Callable[[], str]
    check: Callable[[str, Any], object] | None = None
    metavar: str | None = None
    choices: Iterable[str] | None = None
    flag_name: str | None = None
    shown_default: str | Callable[[], str] | None = None

    def __post_init__(self) -> None:
        if not self.name.isidentifier() or self.name.startswith("_"):
            raise InvalidInputError(
                f"a setting's name must be a Python identifier without a leading underscore, "
                f"e.g. kernel_size, got {self.name!r}"
            )
        if self.type not in TYPES:
            raise InvalidInputError(
                f"setting {self.name}: type must be one of "
                f"{', '.join(t.__name__ for t in TYPES)}, got {self.type!r}"
            )

    @property
    def flag(self) -> str:
        """The command-line option, e.g. ``--kernel-size``."""
        return self.flag_name or f"--{self.name.replace('_', '-')}"

    def help_text(self) -> str:
        """The help, with the choices when it has some (without the default)."""
        text = self.help() if callable(self.help) else self.help
        if self.choices is not None:
            return f"{text}: {listing(self.choices)}" if text else listing(self.choices)
        return text

    def default_text(self) -> str | None:
        """The default as the help shows it: ``shown_default``, ``off`` for a flag, else the
        default itself (None when there is none to show).

        >>> Option("steps", int, 1000, "fitting steps").default_text()
        '1000'
        """
        if self.shown_default is not None:
            return self.shown_default() if callable(self.shown_default) else self.shown_default
        if self.type is bool:
            return "on" if self.default else "off"
        return None if self.default in (None, [], {}) else str(self.default)

    def initial(self) -> Any:
        """A fresh copy of the default (a list or table is not shared between configs)."""
        return copy.deepcopy(self.default)

    def validate(self, value: Any) -> Any:
        """``value`` when it has the setting's type and passes its checks, else an
        :class:`~pyrodip.errors.InvalidInputError` naming the setting (a number's or table's
        type is left to ``check`` where there is one, for a message of its own)."""
        if value is None and self.default is None:
            return value
        if (self.check is None or self.type in (str, bool)) and not has_type(value, self.type):
            raise InvalidInputError(f"{self.name} must be {TYPE_WORDS[self.type]}, got {value!r}")
        if self.choices is not None:
            choice(self.name, value, self.choices)
        if self.check is not None:
            self.check(self.name, value)
        return value


def has_type(value: object, kind: type) -> bool:
    """Whether ``value`` is of the setting type ``kind`` (a bool is no number; a ``float``
    setting takes an ``int``).

    >>> has_type(True, int), has_type(3, float), has_type("3", float)
    (False, True, False)
    """
    if kind is bool or isinstance(value, bool):
        return kind is bool and isinstance(value, bool)
    return isinstance(value, (int, float) if kind is float else kind)


def listing(names: Iterable[str]) -> str:
    """``names`` as words: "a, b or c".

    >>> listing(["denoise", "superres", "ct"])
    'denoise, superres or ct'
    """
    names = [str(name) for name in names]
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"


def at_least_zero(name: str, value: object) -> int:
    """``value`` when it is an ``int`` >= 0 (not a bool).

    >>> at_least_zero("burn_in", -1)
    Traceback (most recent call last):
    ...
    pyrodip.errors.InvalidInputError: burn_in must be an integer >= 0, got -1
    """
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidInputError(f"{name} must be an integer >= 0, got {value!r}")
    return value


def non_negative(name: str, value: object) -> float:
    """``value`` when it is a finite number >= 0.

    >>> non_negative("jitter", -0.1)
    Traceback (most recent call last):
    ...
    pyrodip.errors.InvalidInputError: jitter must be a number >= 0, got -0.1
    """
    if not (isinstance(value, int | float) and math.isfinite(value) and value >= 0):
        raise InvalidInputError(f"{name} must be a number >= 0, got {value!r}")
    return value


def share(name: str, value: object) -> float:
    """``value`` when it is a number in [0, 1].

    >>> share("average", 1.5)
    Traceback (most recent call last):
    ...
    pyrodip.errors.InvalidInputError: average must be a number in [0, 1], got 1.5
    """
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        raise InvalidInputError(f"{name} must be a number in [0, 1], got {value!r}")
    return value


def fraction(name: str, value: object) -> float:
    """``value`` when it is a number in (0, 1).

    >>> fraction("heldout_fraction", 1)
    Traceback (most recent call last):
    ...
    pyrodip.errors.InvalidInputError: heldout_fraction must be a number in (0, 1), got 1
    """
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < 1:
        raise InvalidInputError(f"{name} must be a number in (0, 1), got {value!r}")
    return value
