"""Plugins: modules that register their own priors, guides, methods, tasks, noise models,
samples, network presets or optimisers when imported.

A plugin is an importable module named in the ``plugins`` setting (``--plugin MODULE`` on the
command line, ``plugins = ["my_priors"]`` in a TOML run or study file), or one an installed
package declares in the entry-point group ``pyrodip.plugins``::

    # the plugin package's pyproject.toml
    [project.entry-points."pyrodip.plugins"]
    my_priors = "my_package.priors"

Entry-point plugins are imported once, the first time any plugin is loaded (a
:class:`~pyrodip.run.config.RunConfig` loads its plugins before checking its settings,
and the CLI before reading its options). Named plugins are imported by :func:`load_plugins`;
a fit on a Dask or process worker imports its config's plugins before it builds anything.

>>> load_plugins(["json"])  # any importable module
>>> load_plugins(["no_such_module_xyz"])
Traceback (most recent call last):
...
pyrodip.errors.InvalidInputError: plugin 'no_such_module_xyz' cannot be imported (ModuleNotFoundError: No module named 'no_such_module_xyz'): check the module name and that it is on the Python path
"""  # noqa: E501

from __future__ import annotations

import importlib
import importlib.metadata
from collections.abc import Iterable

from .errors import InvalidInputError, error_line

__all__ = ["ENTRY_POINT_GROUP", "load_entry_points", "load_plugins"]

ENTRY_POINT_GROUP = "pyrodip.plugins"
_entry_points_loaded = False


def load_plugins(modules: Iterable[str] = ()) -> None:
    """Import the entry-point plugins (once) and each of ``modules`` (Python caches modules
    already imported); an unimportable one is an :class:`~pyrodip.errors.InvalidInputError`."""
    load_entry_points()
    for name in modules:
        if not isinstance(name, str) or not name.strip():
            raise InvalidInputError(f"a plugin is a module name, got {name!r}")
        try:
            importlib.import_module(name.strip())
        except Exception as error:  # whatever the module raises while it is imported
            raise InvalidInputError(
                f"plugin {name!r} cannot be imported ({error_line(error)}): check the module "
                "name and that it is on the Python path"
            ) from None


def load_entry_points() -> None:
    """Import every module of the entry-point group ``pyrodip.plugins``, the first time only."""
    global _entry_points_loaded
    if _entry_points_loaded:
        return
    _entry_points_loaded = True
    for entry_point in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        try:
            entry_point.load()
        except Exception as error:
            raise InvalidInputError(
                f"plugin {entry_point.name!r} ({entry_point.value}, entry point group "
                f"{ENTRY_POINT_GROUP}) cannot be loaded ({error_line(error)}): fix or uninstall "
                "the package that declares it"
            ) from None
