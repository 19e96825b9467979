"""Griffe extension: docstring examples are shown as code blocks in the API reference.

pyrodip's docstrings hold doctests (``>>>`` lines, run by ``pytest --doctest-modules``) in
their text, outside any ``Examples:`` section, so Markdown would read them as nested block
quotes run together into one paragraph. Before mkdocstrings renders a docstring, this extension
wraps every example, its ``>>>``/``...`` lines and the output below them up to the next blank
line, in a fenced ``pycon`` block, without doctest directives (``# doctest: +SKIP``) and with
``<BLANKLINE>`` shown as the blank line it stands for. The source is not changed, so the
examples stay doctests. It is registered in ``mkdocs.yml`` (mkdocstrings' ``extensions``).

The docstrings' few reStructuredText habits are shown as Markdown too (:func:`rst_to_markdown`):
Sphinx roles (``:func:`fit```) as code, a paragraph ending in ``::`` with a ``:``, and simple
tables (``=====  =====`` borders) as text blocks, instead of one run-together paragraph.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

PROMPT = re.compile(r"^(?P<indent>[ \t]*)>>>(\s|$)")
FENCE = re.compile(r"^[ \t]*(```|~~~)")
DIRECTIVE = re.compile(r"\s*#\s*doctest:\s*[+-]\w+(\s*,\s*[+-]\w+)*\s*$")
ROLE = re.compile(r":(?:py:)?(?:func|meth|class|mod|attr|data|obj|exc|const):`(~?)([^`]+)`")
TABLE_BORDER = re.compile(r"^[ \t]*=+( +=+)+[ \t]*$")


def fence_doctests(text: str) -> str:
    """``text`` with every doctest example in a ```` ```pycon ```` block.

    An example starts at a ``>>>`` line and runs to the next blank line or the next line
    indented less (doctest's rules for where its expected output ends); the fences take the
    indentation of its first line, so an example inside a list item or an indented section
    stays there. Text already inside a fenced block is left as it is. (No example here: a
    doctest cannot expect output with ``>>>`` in it; ``tests/test_docs.py`` tests this one.)
    """
    out: list[str] = []
    lines = text.split("\n")
    in_fence = False
    index = 0
    while index < len(lines):
        line = lines[index]
        if FENCE.match(line):
            in_fence = not in_fence
        prompt = None if in_fence else PROMPT.match(line)
        if prompt is None:
            out.append(line)
            index += 1
            continue
        indent = prompt["indent"]
        out.append(f"{indent}```pycon")
        while index < len(lines) and lines[index].strip() and lines[index].startswith(indent):
            example = DIRECTIVE.sub("", lines[index])
            out.append("" if example.strip() == "<BLANKLINE>" else example)
            index += 1
        out.append(f"{indent}```")
    return "\n".join(out)


def rst_to_markdown(text: str) -> str:
    r"""``text`` with Sphinx roles as code (``:func:`~a.b``` as ``b``), ``::`` at the end of a
    line followed by a more indented block as ``:``, and simple tables in ``text`` blocks.
    Text inside fenced blocks is left as it is.

    >>> rst_to_markdown("See :func:`~pyrodip.infer.loop.fit` and :data:`PRIORS`. Example::\n"
    ...                 "\n    fit(observation, config)")
    'See `fit` and `PRIORS`. Example:\n\n    fit(observation, config)'
    """
    out: list[str] = []
    lines = text.split("\n")
    in_fence = False
    index = 0
    while index < len(lines):
        line = lines[index]
        if FENCE.match(line):
            in_fence = not in_fence
        if in_fence or FENCE.match(line):
            out.append(line)
            index += 1
            continue
        if TABLE_BORDER.match(line) and (index == 0 or not lines[index - 1].strip()):
            indent = line[: len(line) - len(line.lstrip())]
            out.append(f"{indent}```text")
            while index < len(lines) and lines[index].strip():
                out.append(lines[index])
                index += 1
            out.append(f"{indent}```")
            continue
        line = ROLE.sub(lambda role: f"`{role[2].rsplit('.', 1)[-1] if role[1] else role[2]}`",
                        line)
        if line.endswith("::") and indentation(next_text(lines, index)) > indentation(line):
            line = line[:-1]  # reStructuredText's literal block: Markdown's indented code
        out.append(line)
        index += 1
    return "\n".join(out)


def indentation(line: str) -> int:
    return len(line) - len(line.lstrip())


def next_text(lines: list[str], index: int) -> str:
    """The first line after ``lines[index]`` that is not blank ("" if none)."""
    return next((line for line in lines[index + 1 :] if line.strip()), "")


class DoctestBlocks(griffe.Extension):
    """Wraps the doctest examples of every docstring in fenced ``pycon`` blocks, and shows its
    reStructuredText as Markdown."""

    def on_object(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        fence_docstring(obj)

    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        fence_docstring(pkg)  # griffe fires on_object for the package's members only


def fence_docstring(obj: griffe.Object) -> None:
    if obj.docstring is not None:
        obj.docstring.value = rst_to_markdown(fence_doctests(obj.docstring.value))
