"""MkDocs hook: the CLI reference is generated from pyrodip's own parser at build time.

A line ``<!-- cli-help: COMMAND -->`` in a page becomes the help of ``pyrodip COMMAND``
(``pyrodip --help`` for ``<!-- cli-help: -->``) in a text block, 100 columns wide.
"""

from __future__ import annotations

import contextlib
import io
import os
import re

MARKER = re.compile(r"^<!-- cli-help:\s*(\S*)\s*-->$", re.MULTILINE)


def cli_help(command: str) -> str:
    """The help text of ``pyrodip COMMAND`` as argparse prints it at 100 columns."""
    from pyrodip.cli import build_parser

    previous = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = "100"
    try:
        buffer = io.StringIO()
        with contextlib.redirect_stdout(buffer), contextlib.suppress(SystemExit):
            build_parser().parse_args([*command.split(), "--help"])
    finally:
        if previous is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = previous
    return buffer.getvalue().strip()


def expand(markdown: str) -> str:
    """``markdown`` with every cli-help marker replaced by that help text."""
    return MARKER.sub(lambda match: f"```text\n{cli_help(match[1])}\n```", markdown)


def on_page_markdown(markdown: str, **kwargs) -> str:
    return expand(markdown)
