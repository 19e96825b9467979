"""The error type every user-facing failure in pyrodip derives from.

The CLI prints ``str(error)`` as one line and exits with status 2; the API raises the same
error, so scripts can catch :class:`PyrodipError` (or the builtin base it also derives from).

Messages name settings and arguments as the API spells them, in backticks: ```noise_level```,
or ```noise_level=known``` for a value to use. The CLI shows each as its flag (``--noise-level``,
``--noise-level known``): see :func:`pyrodip.cli.cli_message`.
"""


def error_line(error: BaseException) -> str:
    """An exception as one line: its type and message, whitespace collapsed.

    >>> error_line(ValueError("bad   value"))
    'ValueError: bad value'
    """
    return " ".join(f"{type(error).__name__}: {error}".split())


class PyrodipError(Exception):
    """Base class of pyrodip's user-facing errors: the message names the problem and the fix."""


class InvalidInputError(PyrodipError, ValueError):
    """A value, option or image that pyrodip cannot use.

    >>> raise InvalidInputError("`steps` must be a positive integer, got 0")
    Traceback (most recent call last):
    ...
    pyrodip.errors.InvalidInputError: `steps` must be a positive integer, got 0
    """


class MissingFileError(PyrodipError, FileNotFoundError):
    """A file or folder that the user named does not exist."""


class OutputError(PyrodipError, OSError):
    """A file that pyrodip could not write (no space left, a read-only or forbidden folder);
    nothing partial is left behind."""
