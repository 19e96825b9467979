"""A prior as a run setting: the spec ``NAME[:SCALE[:ARGS]]``, whose first number is the scale
(the setting ``prior_scale``), the help that says so, and the rule that splits the two.

>>> scale_apart({"prior": "laplace:0.05"}, "settings")
{'prior': 'laplace', 'prior_scale': 0.05}
"""

from __future__ import annotations

from typing import Any

from ..bayes.priors import PRIORS, prior_usage
from ..errors import InvalidInputError
from ..validation import choice, number


def check_prior(name: str, value: str) -> str:
    """A prior spec ``NAME[:SCALE[:ARGS]]`` (or ``NAME::ARGS``) whose NAME is registered."""
    choice("prior", value.partition(":")[0], PRIORS)
    return value


def check_layer_priors(name: str, value: object) -> dict:
    """A table of layer-name patterns to prior specs."""
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise InvalidInputError(
            f"layer_priors must map layer-name patterns to prior specs, e.g. "
            f"{{'net.head.*' = 'laplace:0.05'}}, got {value!r}"
        )
    return value


def prior_help() -> str:
    """The help of ``--prior``: each prior's spec, its scale optional (then ``prior_scale``).

    >>> prior_help().split(": ")[1].partition(" (")[0]  # doctest: +ELLIPSIS
    'normal, fanin, laplace, studentt[:SCALE[:DF]], mixture[:SCALE[:PI[:RATIO]]]...'
    """
    priors = (f"{name}[:{prior_usage(name).partition(':')[2]}]" if PRIORS[name].arguments
              else name for name in PRIORS)
    return (f"weight prior NAME[:SCALE[:ARGS]]: {', '.join(priors)} (the first number is the "
            "scale, as --prior-scale; NAME::ARGS keeps --prior-scale, e.g. studentt::5)")


def scale_apart(settings: dict[str, Any], source: str) -> dict[str, Any]:
    """``settings`` with the scale of a ``prior`` spec ``NAME[:SCALE[:ARG...]]`` moved to
    ``prior_scale``, leaving ``NAME`` or ``NAME::ARG...``; a spec's scale and a different
    ``prior_scale`` in the same ``settings`` are refused (``source`` names them).

    >>> scale_apart({"prior": "studentt:0.2:5"}, "settings")
    {'prior': 'studentt::5', 'prior_scale': 0.2}
    >>> scale_apart({"prior": "normal:0.3", "prior_scale": 0.2}, "TOML")
    Traceback (most recent call last):
    ...
    pyrodip.errors.InvalidInputError: TOML: prior 'normal:0.3' and prior_scale 0.2 differ: give one
    """
    if "prior" not in settings:
        return dict(settings)
    spec = settings["prior"]
    if not isinstance(spec, str):
        raise InvalidInputError(f"prior must be a string, got {spec!r}")
    name, _, rest = spec.partition(":")
    scale, _, arguments = rest.partition(":")
    apart = {**settings, "prior": f"{name}::{arguments}" if arguments else name}
    if scale:
        apart["prior_scale"] = number("prior scale", scale)
        given = settings.get("prior_scale")
        if given is not None and given != apart["prior_scale"]:
            raise InvalidInputError(
                f"{source}: prior {spec!r} and prior_scale {given} differ: give one"
            )
    return apart
