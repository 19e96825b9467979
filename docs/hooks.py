"""MkDocs hook: the CLI and API references are generated from pyrodip itself at build time.

A line ``<!-- cli-help: COMMAND -->`` in a page becomes the help of ``pyrodip COMMAND``
(``pyrodip --help`` for ``<!-- cli-help: -->``) in a text block, 100 columns wide.

The line ``<!-- method-defaults -->`` becomes a table of every method's defaults, read from
:data:`pyrodip.infer.methods.METHODS`, so a page cannot quote a default the code does not use.

A line ``<!-- api: PACKAGE -->`` becomes one mkdocstrings ``::: PACKAGE.MODULE`` block for each
module of PACKAGE (its ``.py`` files, not its subpackages; first ``::: PACKAGE`` itself when its
``__init__.py`` defines functions or classes), read from the package tree, so a new module
appears in the reference without editing the docs; ``<!-- api: PACKAGE first: a b -->`` puts the
modules ``a`` and ``b`` first, the rest follow in alphabetical order. The line
``<!-- api-index -->`` becomes a list of every module, page by page, with the first paragraph of
its docstring. Every package of pyrodip must be named by one page's ``api`` line; one that is
not is a warning, which fails ``mkdocs build --strict``.
"""

from __future__ import annotations

import ast
import contextlib
import io
import logging
import os
import re
from pathlib import Path

MARKER = re.compile(r"^<!-- cli-help:\s*(\S*)\s*-->$", re.MULTILINE)
DEFAULTS_MARKER = re.compile(r"^<!-- method-defaults -->$", re.MULTILINE)
API_MARKER = re.compile(r"^<!-- api:\s*([\w.]+)(?:\s+first:([\w ]+))?\s*-->$", re.MULTILINE)
API_INDEX = re.compile(r"^<!-- api-index -->$", re.MULTILINE)
ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
API_PAGES = DOCS / "api"
log = logging.getLogger("mkdocs.hooks.api")


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


#: The settings of the defaults table: (Method attribute, column title).
DEFAULT_COLUMNS = (("guide", "guide"), ("temperature", "T"), ("init_scale", "initial std"),
                   ("optimizer", "optimiser"), ("lr", "lr"), ("weight_decay", "weight decay"),
                   ("lr_decay", "lr decay"), ("average", "average"), ("readout", "readout"),
                   ("calibration", "calibration"), ("stop_rule", "stop rule"))


def method_defaults_table() -> str:
    """Every method's defaults as a Markdown table, from the code."""
    from pyrodip.infer.methods import METHODS
    from pyrodip.run.config import RunConfig

    lines = ["| method | " + " | ".join(title for _, title in DEFAULT_COLUMNS) + " |",
             "|" + " --- |" * (len(DEFAULT_COLUMNS) + 1)]
    for name, method in METHODS.items():
        values = [method.shown_default(key) for key, _ in DEFAULT_COLUMNS]
        lines.append(f"| `{name}` | " + " | ".join(values) + " |")
    steps = RunConfig().steps
    return "\n".join(lines) + f"\n\nEvery method runs {steps} steps unless told otherwise."


def expand(markdown: str) -> str:
    """``markdown`` with every cli-help marker replaced by that help text, and the method
    defaults' marker by their table."""
    markdown = DEFAULTS_MARKER.sub(lambda match: method_defaults_table(), markdown)
    return MARKER.sub(lambda match: f"```text\n{cli_help(match[1])}\n```", markdown)


def package_dir(package: str) -> Path:
    return ROOT.joinpath(*package.split("."))


def packages(top: str = "pyrodip") -> list[str]:
    """``top`` and every package under it, as dotted names, in tree order."""
    found = [top]
    for child in sorted(package_dir(top).iterdir()):
        if child.is_dir() and (child / "__init__.py").exists():
            found += packages(f"{top}.{child.name}")
    return found


def modules(package: str, first: str = "") -> list[str]:
    """What the page of ``package`` documents: the package itself when its ``__init__.py``
    defines functions or classes, then its public modules (its ``.py`` files, not its
    subpackages): those named in ``first`` (space-separated) in that order, the rest sorted."""
    init = ast.parse((package_dir(package) / "__init__.py").read_text())
    itself = any(isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
                 for node in init.body)
    found = [path.stem for path in sorted(package_dir(package).glob("*.py"))
             if not path.name.startswith("_")]
    leading = [name for name in first.split() if name in found]
    return [package] * itself + [f"{package}.{name}" for name in
                                 leading + [name for name in found if name not in leading]]


def module_file(module: str) -> Path:
    path = package_dir(module)
    return path / "__init__.py" if path.is_dir() else path.with_suffix(".py")


def summary(module: str) -> str:
    """The first paragraph of ``module``'s docstring on one line, Sphinx roles as code."""
    text = ast.get_docstring(ast.parse(module_file(module).read_text())) or ""
    text = " ".join(text.split("\n\n")[0].split()).rstrip(".")
    return re.sub(r":\w+:`~?([^`]+)`", lambda role: f"`{role[1].rsplit('.', 1)[-1]}`", text)


def api_pages() -> dict[str, tuple[str, str]]:
    """{package: (page file relative to docs/, page title)} from the pages' ``api`` lines."""
    pages = {}
    for page in sorted(API_PAGES.glob("*.md")):
        text = page.read_text()
        title = re.search(r"^# (.+)$", text, re.MULTILINE)
        for package, _ in API_MARKER.findall(text):
            pages[package] = (page.relative_to(DOCS).as_posix(), title[1] if title else page.stem)
    return pages


def api_blocks(package: str, first: str = "") -> str:
    """The mkdocstrings blocks of every module of ``package`` (``first``: see :func:`modules`)."""
    if not package_dir(package).is_dir():
        log.warning("API reference: %s is not a package of pyrodip", package)
        return ""
    return "\n\n".join(api_block(module) for module in modules(package, first))


def exported_names(tree: ast.Module) -> list[str] | None:
    """The names a module's ``__all__`` lists, None when it has none."""
    return next((ast.literal_eval(node.value) for node in tree.body
                 if isinstance(node, ast.Assign)
                 and any(getattr(target, "id", "") == "__all__" for target in node.targets)),
                None)


def api_block(module: str) -> str:
    """The mkdocstrings block of ``module``; one whose ``__all__`` re-exports names of other
    modules shows only what it defines itself (the others are documented where they live)."""
    tree = ast.parse(module_file(module).read_text())
    exported = exported_names(tree)
    own = [node.name for node in tree.body
           if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)]
    own += [target.id for node in tree.body if isinstance(node, ast.Assign | ast.AnnAssign)
            for target in getattr(node, "targets", [getattr(node, "target", None)])
            if isinstance(target, ast.Name)]
    if exported is None or set(exported) <= set(own):
        return f"::: {module}"
    shown = [name for name in exported if name in own]
    return f"::: {module}\n    options:\n      members: [{', '.join(shown)}]"


def api_index(page: str | None = None, order: list[str] | None = None) -> str:
    """Every module, with its summary, under a heading that links to its page (relative to
    ``page``); the pages in ``order`` (the nav's) first, in that order."""
    here = Path(page).parent if page else Path(".")
    order = order or []
    by_page: dict[tuple[str, str], list[str]] = {}
    for package, file_title in api_pages().items():
        by_page.setdefault(file_title, []).extend(modules(package))
    lines = []
    for (file, title), documented in sorted(
        by_page.items(), key=lambda item: order.index(item[0][0]) if item[0][0] in order
        else len(order)
    ):
        link = os.path.relpath(file, here).replace(os.sep, "/")
        lines += ["", f"## [{title}]({link})", ""]
        for module in documented:
            text = summary(module)
            lines.append(f"- [`{module}`][{module}]" + (f": {text}." if text else ""))
    return "\n".join(lines).strip()


def expand_api(markdown: str, page: str | None = None, order: list[str] | None = None) -> str:
    """``markdown`` with its ``api`` and ``api-index`` lines expanded."""
    markdown = API_MARKER.sub(lambda match: api_blocks(match[1], match[2] or ""), markdown)
    return API_INDEX.sub(lambda match: api_index(page, order), markdown)


def nav_files(nav) -> list[str]:
    """The page files of mkdocs.yml's nav, in order."""
    if isinstance(nav, str):
        return [nav]
    if isinstance(nav, dict):
        return [file for value in nav.values() for file in nav_files(value)]
    return [file for item in nav or [] for file in nav_files(item)]


def on_pre_build(**kwargs) -> None:
    """Warn (an error under --strict) about a package no page of the API reference names."""
    documented = api_pages()
    for package in packages():
        if package not in documented:
            log.warning("API reference: no page of docs/api/ has the line <!-- api: %s -->",
                        package)


def on_page_markdown(markdown: str, page=None, config=None, **kwargs) -> str:
    source = page.file.src_uri if page is not None else None
    order = nav_files(config["nav"]) if config is not None else None
    return expand_api(expand(markdown), source, order)
