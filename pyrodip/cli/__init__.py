"""The ``pyrodip`` command line.

``pyrodip run`` with no options denoises the embedded CT slice (pydicom's ``CT_small.dcm``)
under Gaussian noise 0.1 with the small network and mean-field VI, and writes ``result.nc``
and ``panel.png`` to a new folder under ``runs/``.

Errors in the input end the program with one line on stderr and exit status 2.

The choices the options list (tasks, methods, priors, ...) are read from the registries when
the parser is built, after the plugins (``--plugin MODULE`` and the entry-point group
``pyrodip.plugins``) are imported, so what a plugin registers is listed and accepted too.
"""

from __future__ import annotations

import argparse
import re
import sys
import warnings
from pathlib import Path

from ..errors import PyrodipError
from ..plugins import load_entry_points, load_plugins
from ..run.config import declared_settings
from ..settings import Option
from ..version import __version__
from .arguments import config_from_args, parse_settings
from .handlers import bo_command, compare_command, report_command, run_command
from .output import prepare_output
from .summaries import summary

__all__ = [
    "add_run_options", "build_parser", "cli_message", "config_from_args", "main", "one_line",
    "option_help", "parse_settings", "plugins_named", "prepare_output", "summary",
]


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2
        self.exit(2, f"pyrodip: error: {one_line(message)} (see {self.prog} --help)\n")


#: Characters that would break a message into several lines, and how they are shown instead.
_LINE_BREAKS = {ord(c): repr(c)[1:-1] for c in "\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029"}


def cli_message(text: str, parser: argparse.ArgumentParser | None = None) -> str:
    """A library message in the command line's terms, on one line: each setting it names in
    backticks becomes its flag (```noise_level=known``` -> ``--noise-level known``); a name
    with no flag loses its backticks.

    >>> cli_message("use `noise_level=known`, a smaller `factor` or `slice_index` 2")
    'use --noise-level known, a smaller --factor or --slice 2'
    """
    flags = _flags(parser or build_parser())

    def flag(match: re.Match) -> str:
        name, value = match.group(1), match.group(3)
        shown = flags.get(name, name if value is None else f"{name}=")
        if value is None:
            return shown
        return f"{shown} {value}" if name in flags else f"{shown}{value}"

    return one_line(re.sub(r"`([A-Za-z_][\w]*)(=([^`]*))?`", flag, text))


def _flags(parser: argparse.ArgumentParser) -> dict[str, str]:
    """Setting name -> flag, over every subcommand: by destination (``slice_index`` ->
    ``--slice``) and by the flag's own name (``param`` -> ``--param``)."""
    flags: dict[str, str] = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                flags.update(_flags(sub))
        elif action.option_strings:
            longest = max(action.option_strings, key=len)
            if longest.startswith("--"):
                flags.setdefault(action.dest, longest)
                flags.setdefault(longest[2:].replace("-", "_"), longest)
    return flags


def one_line(text: str) -> str:
    """``text`` with its line breaks escaped (a path may hold one), so a message stays one line.

    >>> one_line("no file a\\nb.png")
    'no file a\\\\nb.png'
    """
    return text.translate(_LINE_BREAKS)


def build_parser() -> argparse.ArgumentParser:
    """The parser of every command; its help lists the registries' entries as they are now
    (with the entry-point plugins loaded)."""
    load_entry_points()
    parser = _Parser(prog="pyrodip", description="Bayesian Deep Image Prior with Pyro.")
    parser.add_argument("--version", action="version", version=f"pyrodip {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    run = commands.add_parser(
        "run",
        help="reconstruct one image",
        description="Reconstruct one image with per-pixel uncertainty. Options override "
        "the --config file, which overrides the defaults shown.",
        argument_default=argparse.SUPPRESS,
    )
    add_run_options(run)
    run.add_argument("--out", type=Path, help="output folder [a new folder under runs/]")
    run.add_argument("--overwrite", action="store_true", help="replace results already in --out")
    run.add_argument("--quiet", action="store_true", help="no progress bar")
    run.add_argument("--checkpoint-every", type=int, metavar="N",
                     help="save the fit's state every N steps [every 5 minutes]")
    run.add_argument("--resume", type=Path, metavar="DIR",
                     help="continue the interrupted run in DIR from its checkpoint")
    run.add_argument("--slices", metavar="all|A:B",
                     help="a NIfTI volume or DICOM series: reconstruct these slices, each an "
                     "independent fit, into one result (the same --out again continues an "
                     "interrupted volume)")
    run.add_argument("--batch", metavar="B", help="--slices: fit B slices at once as one batched "
                     "computation (for a GPU); auto: as many as the memory estimate admits on "
                     "a GPU, 1 on a CPU [1]")
    run.add_argument("--workers", type=int, metavar="N",
                     help="--slices: fit N slices (or batches) at once on a local Dask cluster")
    run.add_argument("--prior-from", type=Path, metavar="BO_NC",
                     help="take the best settings of a study (its bo.nc or folder); options "
                     "given here win over it, it wins over --config")
    run.set_defaults(handler=run_command)
    add_bo_parser(commands)
    compare = commands.add_parser(
        "compare",
        help="compare methods over images and seeds",
        description="Run every method on every image with every seed of a study file (TOML, "
        "see docs/methods.md); write each run, the stacked comparison.nc, table.md and "
        "figures to --out. Runs already in --out are kept, so an interrupted study continues "
        "(a fit cut short resumes from its checkpoint); a run that fails twice is recorded as "
        "failed and the study goes on.",
    )
    compare.add_argument("study", type=Path, help="the study file (TOML)")
    compare.add_argument("--out", type=Path, required=True, help="output folder")
    compare.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                         dest="overrides", help="a run setting for every run, over the study "
                         "file's (repeatable), e.g. --set steps=200")
    compare.add_argument("--workers", type=int, metavar="N",
                         help="fit N runs at once on a local Dask cluster [one at a time]")
    compare.add_argument("--scheduler", metavar="ADDRESS",
                         help="fit the runs on this Dask scheduler (image paths must be "
                         "readable by its workers)")
    compare.add_argument("--batch", default="1", metavar="B",
                         help="fit up to B runs that differ only in their seed as one batched "
                         "computation (for a GPU; see docs/performance.md); auto: as many as "
                         "the memory estimate admits on a GPU, 1 on a CPU [1]")
    compare.add_argument("--plugin", action="append", default=[], dest="plugins",
                         metavar="MODULE", help="import MODULE first, here and on the workers "
                         "(repeatable; added to the study's plugins setting)")
    compare.add_argument("--retry-failed", action="store_true",
                         help="run the runs recorded as failed in --out again")
    compare.add_argument("--checkpoint-every", type=int, metavar="N",
                         help="save each fit's state every N steps [every 5 minutes]")
    compare.add_argument("--quiet", action="store_true", help="no progress bars")
    compare.set_defaults(handler=compare_command)
    report = commands.add_parser(
        "report",
        help="print the comparison table of saved results",
        description="Print the comparison table of comparison.nc or result.nc files (or "
        "folders holding them).",
    )
    report.add_argument("paths", type=Path, nargs="+", metavar="PATH")
    report.set_defaults(handler=report_command)
    return parser


def add_bo_parser(commands) -> None:
    """``pyrodip bo``: the options of a study (see :mod:`pyrodip.studies.bo`) and run's."""
    from ..studies.bo import OBJECTIVES, Study

    d = Study()
    bo = commands.add_parser(
        "bo",
        help="tune settings (the prior scale) by Bayesian optimisation",
        description="Tune run settings by Bayesian optimisation (BoTorch): an initial design, "
        "then rounds of candidates from a GP, each trial a fit run on Dask. The fits take "
        "run's options (and --config).",
        argument_default=argparse.SUPPRESS,
    )
    add = bo.add_argument
    add("--param", action="append", dest="params", metavar="NAME=LOW:HIGH[:log]",
        help="a setting to tune and its range, searched in log10 with :log (repeatable) "
        f"[{' '.join(p.spec() for p in d.params)}]")
    add("--objective", help=f"{', '.join(OBJECTIVES)} [{d.objective}]")
    add("--init-points", type=int, metavar="N", help=f"initial Sobol design [{d.init_points}]")
    add("--init", action="append", metavar="V[,V...]",
        help="an initial point instead of the Sobol design, a value per --param (repeatable)")
    add("--rounds", type=int, help=f"rounds of candidates after the initial design [{d.rounds}]")
    add("--batch", type=int, metavar="Q", help=f"candidates per round = trials run at once "
        f"[{d.batch}]")
    add("--batched", action="store_true", help="fit the trials proposed together (the "
        "initial design, a round's Q candidates) as one batched computation on one worker "
        "(pays on a GPU; tunes prior_scale and temperature only)")
    add("--out", type=Path, help="study folder [a new folder under runs/]")
    add("--resume", type=Path, metavar="DIR",
        help="continue the interrupted study in DIR (--rounds: to a new number of rounds)")
    add("--retry-failed", action="store_true",
        help="with --resume: run the failed trials again, with their settings")
    add("--scheduler", metavar="ADDRESS", help="run the trials on this Dask scheduler "
        "[a local cluster]")
    add("--workers", type=int, metavar="N",
        help="workers of the local cluster [one per GPU with --device cuda, else min(Q, cores)]")
    add("--checkpoint-every", type=int, metavar="N",
        help="save each trial's fit every N steps, to resume from [every 5 minutes]")
    add("--quiet", action="store_true", help="no progress bar")
    add_run_options(bo)
    bo.set_defaults(handler=bo_command)


def add_run_options(parser: argparse.ArgumentParser) -> None:
    """``--config`` and an option for every declared setting
    (:func:`~pyrodip.run.config.declared_settings`, a loaded plugin's too), shared by ``run``
    and ``bo``; ``compare`` takes the same settings by ``--set``. The help of each shows its
    default (for the method-dependent ones, each method's)."""
    parser.add_argument("--config", type=Path, help="TOML file with any of the settings below")
    for option in declared_settings().values():
        keywords = ACTIONS[option.type](option)
        if option.metavar is not None:
            keywords["metavar"] = option.metavar
        parser.add_argument(option.flag, dest=option.name, help=option_help(option), **keywords)


def option_help(option: Option) -> str:
    """The help of ``option``: its text and, in brackets, its default."""
    shown = option.default_text()
    return option.help_text() + ("" if shown is None else f" [{shown}]")


class _KeyValue(argparse.Action):
    """Collects repeated ``--option KEY=VALUE`` options into a dict."""

    def __call__(self, parser, namespace, value, option_string=None) -> None:
        key, equals, setting = value.partition("=")
        if not equals or not key or not setting:
            parser.error(f"{option_string} takes {self.metavar}, got {value!r}")
        table = dict(getattr(namespace, self.dest, None) or {})
        table[key] = setting
        setattr(namespace, self.dest, table)


#: How each type of setting is read from the command line (argparse keywords).
ACTIONS = {
    str: lambda option: {},
    int: lambda option: {"type": int},
    float: lambda option: {"type": float},
    bool: lambda option: {
        "action": argparse.BooleanOptionalAction if option.default else "store_true"
    },
    list: lambda option: {"action": "append"},
    dict: lambda option: {"action": _KeyValue},
}


def plugins_named(argv: list[str]) -> list[str]:
    """The modules that ``--plugin`` options of a command line name.

    >>> plugins_named(["run", "--plugin", "my_priors", "--plugin=more", "--steps", "5"])
    ['my_priors', 'more']
    """
    named = []
    for index, word in enumerate(argv):
        if word == "--plugin" and index + 1 < len(argv):
            named.append(argv[index + 1])
        elif word.startswith("--plugin="):
            named.append(word.partition("=")[2])
    return named


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    try:  # before the parser is built: its choices and help list what the plugins add
        load_plugins(plugins_named(argv))
    except PyrodipError as error:
        print(f"pyrodip: error: {one_line(str(error))}", file=sys.stderr)
        return 2
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        with warnings.catch_warnings():
            warnings.showwarning = lambda message, *_, **__: print(
                f"pyrodip: warning: {cli_message(str(message), parser)}", file=sys.stderr)
            return args.handler(args)
    except PyrodipError as error:
        print(f"pyrodip: error: {cli_message(str(error), parser)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("pyrodip: interrupted", file=sys.stderr)
        return 130

