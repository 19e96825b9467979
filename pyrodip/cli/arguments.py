"""The settings a command runs with, from its options: the run configuration (defaults,
``--config``, options), ``--set KEY=VALUE`` overrides, ``--batch``, ``--prior-from`` and
``--resume``."""

from __future__ import annotations

import argparse
import json
import sys
import tomllib
from pathlib import Path

from ..errors import InvalidInputError
from ..run.config import RunConfig, declared_settings, read_toml
from .output import CHECKPOINT


def parse_settings(texts: list[str]) -> dict[str, object]:
    """``KEY=VALUE`` texts as settings, each VALUE read as a TOML value (a number, true, ...)
    or else taken as a string.

    >>> parse_settings(["steps=200", "prior=laplace:0.05", "observed=true"])
    {'steps': 200, 'prior': 'laplace:0.05', 'observed': True}
    """
    settings: dict[str, object] = {}
    for text in texts:
        key, sep, value = text.partition("=")
        if not sep or not key.strip():
            raise InvalidInputError(f"--set takes KEY=VALUE, e.g. steps=200, got {text!r}")
        try:
            settings[key.strip()] = tomllib.loads(f"v = {value}")["v"]
        except tomllib.TOMLDecodeError:
            settings[key.strip()] = value
    return settings


def batch_option(text: str) -> int | str:
    """``--batch``: ``auto`` or an integer (:func:`~pyrodip.studies.grid.check_batch`
    checks it).

    >>> batch_option("4"), batch_option("auto")
    (4, 'auto')
    """
    if text == "auto":
        return text
    try:
        return int(text)
    except ValueError:
        raise InvalidInputError(
            f"--batch must be a positive integer or auto, got {text!r}"
        ) from None


def config_from_args(args: argparse.Namespace) -> RunConfig:
    """Defaults, then the --config file, then the options given on the command line."""
    settings = declared_settings()
    overrides = {key: value for key, value in vars(args).items() if key in settings}
    if "config" in args:
        if "plugins" in overrides:  # --plugin adds to the file's plugins
            in_file = read_toml(args.config, "config file").get("plugins", [])
            if isinstance(in_file, list):
                overrides["plugins"] = list(dict.fromkeys([*in_file, *overrides["plugins"]]))
        return RunConfig.from_toml(args.config, **overrides)
    return RunConfig(**overrides)


def settings_from_study(config: RunConfig, args: argparse.Namespace) -> RunConfig:
    """``config`` with the best settings of the study ``--prior-from`` names, but for the
    settings given as options."""
    from ..studies.bo import best_parameters

    best = best_parameters(args.prior_from)
    taken = {key: value for key, value in best.items() if key not in args}
    if taken:
        settings = ", ".join(f"{key}={value:.4g}" for key, value in taken.items())
        print(f"pyrodip: from {args.prior_from}: {settings}", file=sys.stderr)
    return config.replace(**taken)


def resumed_config(args: argparse.Namespace) -> tuple[RunConfig, Path]:
    """The settings and folder of the interrupted run that ``--resume DIR`` names."""
    from ..infer.checkpoints import read_checkpoint

    allowed = ("command", "handler", "resume", "quiet", "checkpoint_every")
    given = [key for key in vars(args) if key not in allowed]
    if given:
        option = "--" + given[0].replace("_", "-").replace("plugins", "plugin")
        raise InvalidInputError(
            f"--resume takes every setting from the checkpoint: drop {option}"
        )
    out = args.resume
    state = read_checkpoint(out / CHECKPOINT)
    return RunConfig(**json.loads(state["config"])), out
