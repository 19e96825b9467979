"""One kind of extension point for everything chosen by name: priors, guides, methods, tasks
(each with its forward operator), noise models, image samples, network presets, optimisers.

A :class:`Registry` maps names to entries (classes, factories or objects), each with the run
settings it declares (:class:`~pyrodip.settings.Option`). The CLI, ``compare`` and ``bo`` read
their choices and options from the registries, so an entry registered by a user's module, and
its settings, are usable everywhere that module is imported.

>>> COLOURS = Registry("colour")
>>> @COLOURS.register("red")
... class Red:
...     pass
>>> COLOURS.register("blue", object())
>>> COLOURS["red"] is Red, sorted(COLOURS)
(True, ['blue', 'red'])
>>> COLOURS.register("grey", object(), options=[Option("shade", float, 0.5, "grey: lightness")])
>>> [option.name for option in COLOURS.options("grey")]
['shade']
>>> COLOURS["green"]
Traceback (most recent call last):
...
pyrodip.errors.InvalidInputError: unknown colour 'green': choose one of red, blue, grey
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Generic, TypeVar

from .errors import InvalidInputError
from .settings import Option

T = TypeVar("T")


class Registry(Generic[T]):
    """Named entries of one ``kind`` (the word used in error messages, e.g. ``"prior"``)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}
        self._options: dict[str, tuple[Option, ...]] = {}

    def register(
        self, name: str, entry: T | None = None, *, replace: bool = False,
        options: Iterable[Option] = (),
    ):
        """Add ``entry`` under ``name``, with the run settings it declares (``options``);
        without ``entry``, a decorator that adds what it decorates. A name already taken is
        refused unless ``replace``."""
        options = tuple(options)
        if not all(isinstance(option, Option) for option in options):
            raise InvalidInputError(
                f"the options of {self.kind} {name!r} must be pyrodip.settings.Option "
                f"declarations, got {options!r}"
            )
        if not isinstance(name, str) or not name or ":" in name:
            raise InvalidInputError(
                f"a {self.kind} name must be a non-empty string without ':', got {name!r}"
            )

        def add(value: T) -> T:
            if name in self._entries and not replace and self._entries[name] is not value:
                raise InvalidInputError(
                    f"{self.kind} {name!r} is already registered: pick another name or pass "
                    "replace=True"
                )
            self._entries[name] = value
            self._options[name] = options
            return value

        if entry is None:
            return add
        add(entry)
        return None

    def __getitem__(self, name: str) -> T:
        if name not in self._entries:
            raise InvalidInputError(
                f"unknown {self.kind} {name!r}: choose one of {', '.join(self._entries)}"
            )
        return self._entries[name]

    def options(self, name: str) -> tuple[Option, ...]:
        """The run settings the entry ``name`` declared when it was registered."""
        return self._options.get(name, ()) if name in self._entries else ()

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def keys(self) -> list[str]:
        return list(self._entries)

    def values(self) -> list[T]:
        return list(self._entries.values())

    def items(self) -> list[tuple[str, T]]:
        return list(self._entries.items())

    def get(self, name: str, default: T | None = None) -> T | None:
        return self._entries.get(name, default)

    def unregister(self, name: str) -> None:
        """Remove ``name`` (tests and plugins that clean up after themselves)."""
        self._entries.pop(name, None)
        self._options.pop(name, None)

    def __delitem__(self, name: str) -> None:
        del self._entries[name]
        self._options.pop(name, None)

    def clear(self) -> None:
        """Remove every entry (with :meth:`update`, restores a saved ``dict(registry)``; the
        options entries declared are kept for that)."""
        self._entries.clear()

    def update(self, entries: dict[str, T]) -> None:
        """Add or replace the ``entries`` (with the options declared under their names)."""
        self._entries.update(entries)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}: {', '.join(self._entries)})"

