"""Every code snippet in README.md and docs/ runs here, so the docs cannot rot.

Each page's snippets run in document order in one scratch folder (so a later snippet can use
what an earlier one wrote), with tiny settings: fits cut to 3 steps and 2 samples, BO studies
to 2 initial points and 1 round, reproductions to the smoke scale of two of the file's domains
with small generated images. Image files a command names (``xray.jpg``, ``skin_mask.png``,
...) are generated in the scratch folder. ``python`` blocks are executed; ``bash`` blocks run
their commands (``pyrodip`` in-process); ``toml`` blocks are parsed and validated as a study or
a run configuration. A block preceded by ``<!-- file: NAME -->`` is written to NAME in the
scratch folder (on the Python path, so that a later ``--plugin NAME`` finds it) and, if a toml
file, validated. A block preceded by ``<!-- not run: REASON -->`` is skipped, and the
commands in :data:`RUN_ELSEWHERE` are those CI itself runs (``make test``) or that set up an
environment.

The snippets that start a Dask cluster or run a study, a comparison or the reproduction
(:data:`SLOW`), and those that read what such a snippet wrote, run only with ``-m slow``: there
each page runs whole, in order. The default run runs every other snippet of every page. A bash
block counts command by command, python and toml blocks whole.

The built site is checked too: its API pages show the docstring examples as code blocks (see
``docs/doctest_blocks.py``), not as block quotes, and document every module of pyrodip.
"""

from __future__ import annotations

import ast
import doctest
import importlib.util
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import numpy as np
import pytest
from skimage.io import imsave
from skimage.transform import resize

from pyrodip.bayes.guides import GUIDES
from pyrodip.bayes.priors import PRIORS
from pyrodip.cli import main as pyrodip_main
from pyrodip.infer.methods import METHODS
from pyrodip.io.images import load_image
from pyrodip.physics.tasks import TASKS
from pyrodip.run.config import RunConfig
from pyrodip.studies.compare import Comparison

ROOT = Path(__file__).parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
BLOCK = re.compile(r"(<!-- (not run: (?P<reason>[^>]*)|file: (?P<file>[\w.-]+) )-->\s*\n)?"
                   r"```(?P<lang>\w*)[^\n]*\n(?P<body>.*?)\n```", re.DOTALL)
RUN_LANGUAGES = ("python", "bash", "toml")
#: Blocks that show output or a file's contents, not code to run.
SHOWN_LANGUAGES = ("text", "json", "yaml")
#: Commands not run here, and why.
RUN_ELSEWHERE = {
    "make": "CI runs `make test` itself; `make demo` is `pyrodip run`, run here",
    "pip": "installs packages: CI's set-up",
    "mkdocs": "`make test` builds the site with --strict",
    "cd": "moves to the checkout",
}
IMAGE_FILE = re.compile(r"^[\w./-]+\.(png|jpg|jpeg|dcm|npy|nii|nii\.gz)$")
#: A snippet or command that starts a Dask cluster or runs a study, a comparison or the
#: reproduction (these run with ``-m slow``).
SLOW = re.compile(r"\bpyrodip (compare|bo)\b|experiments\.reproduce|\bLocalCluster\b|\boptimize\(")
#: The output folder a snippet names (``runs/NAME``): a later snippet that names a folder a slow
#: one wrote is slow too.
RUN_FOLDER = re.compile(r"\bruns/[\w.-]+")


def blocks(page: Path) -> list[tuple[str, str, str | None]]:
    """(language, body, reason not run) of every fenced block of ``page``; the language of a
    block to write to a file is ``file:NAME``."""
    return [(f"file:{m['file']}" if m["file"] else m["lang"], m["body"], m["reason"])
            for m in BLOCK.finditer(page.read_text())]


def page_id(page: Path) -> str:
    return page.relative_to(ROOT).as_posix()


def test_every_fenced_block_is_found_and_every_language_is_known():
    """The parser misses no block, and every block is code run here or output shown."""
    for page in PAGES:
        fences = [line for line in page.read_text().splitlines() if line.startswith("```")]
        found = blocks(page)
        assert len(fences) == 2 * len(found), page_id(page)
        for lang, _, _ in found:
            assert lang in (*RUN_LANGUAGES, *SHOWN_LANGUAGES) or lang.startswith("file:"), (
                f"{page_id(page)}: ```{lang}")


def runnable_blocks(page_blocks: list) -> list:
    """The blocks of a page that this test runs."""
    return [b for b in page_blocks
            if (b[0] in RUN_LANGUAGES or b[0].startswith("file:")) and b[2] is None]


def shell_commands(body: str) -> list[str]:
    """The commands of a bash block, one a line: continuations joined, comments and prompts
    dropped."""
    commands = []
    for line in body.replace("\\\n", " ").splitlines():
        line = line.split(" #")[0].strip().removeprefix("$ ")
        if line and not line.startswith("#"):
            commands.append(line)
    return commands


def snippets(page_blocks: list) -> list[tuple[str, str, bool]]:
    """(language, code, slow) of every snippet run, in order: each command of a bash block,
    each python or toml block. Slow: it matches :data:`SLOW`, or it names a ``runs/`` folder
    that a slow snippet before it named (it reads what that one wrote)."""
    found = []
    slow_folders: set[str] = set()
    for lang, body, _ in runnable_blocks(page_blocks):
        for code in shell_commands(body) if lang == "bash" else [body]:
            folders = set(RUN_FOLDER.findall(code))
            slow = bool(SLOW.search(code) or folders & slow_folders)
            if slow:
                slow_folders |= folders
            found.append((lang, code, slow))
    return found


def page_snippets(page: Path) -> list[tuple[str, str, bool]]:
    return snippets(blocks(page))


def tiny(text: str) -> str:
    """Python source with its fits cut down to a smoke test."""
    text = re.sub(r"\bsteps=\d+", "steps=3", text)
    text = re.sub(r"\bsamples=\d+", "samples=2", text)
    return re.sub(r"\brounds=\d+", "rounds=1", text)


def tiny_command(words: list[str]) -> list[str]:
    """A pyrodip command line with tiny settings appended (argparse: the last one wins)."""
    command = words[0]
    if command == "run" and "--resume" not in words:
        return [*words, "--steps", "3", "--samples", "2"]
    if command == "bo" and "--resume" not in words:
        return [*words, "--steps", "3", "--samples", "2", "--rounds", "1", "--init-points",
                "2", "--batch", "1", "--workers", "1"]
    if command == "compare":
        return [*words, "--set", "steps=3", "--set", "samples=2", "--set", "size=64"]
    return words


def make_image(path: Path) -> None:
    """A small image (or mask, or DICOM) at ``path`` for a command that names it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".dcm":
        from pydicom.data import get_testdata_file

        shutil.copy(get_testdata_file("CT_small.dcm"), path)
        return
    if "mask" in path.name:
        mask = np.full((64, 64), 255, np.uint8)
        mask[10:14, :] = 0
        imsave(path, mask, check_contrast=False)
        return
    image = resize(load_image("sample:phantom")[0], (64, 64))
    if "scan" in path.name:  # stands for a real scan: noisy, for --observed to estimate
        image = np.clip(image + np.random.default_rng(0).normal(0, 0.05, image.shape), 0, 1)
    image = (image * 255).astype(np.uint8)
    if path.name.endswith((".nii", ".nii.gz")):  # a volume of 3 slices
        import nibabel

        volume = np.repeat(image.T[..., None] / 255, 3, axis=2).astype(np.float32)
        nibabel.save(nibabel.Nifti1Image(volume, np.diag([0.8, 0.8, 2.0, 1])), path)
        return
    if path.suffix == ".npy":
        np.save(path, image / 255.0)
    else:
        imsave(path, image, check_contrast=False)


def smoke_reproduction_file(folder: Path) -> Path:
    """experiments/reproduce.toml with every domain's images replaced by generated ones."""
    spec = (ROOT / "experiments" / "reproduce.toml").read_text()
    for match in set(re.findall(r'"(\.\./\.\./shared/data/[^"]+)"', spec)):
        name = Path(match).name
        make_image(folder / "images" / name)
        spec = spec.replace(f'"{match}"', f'"images/{name}"')
    path = folder / "reproduce.toml"
    path.write_text(spec)
    return path


def run_command(line: str, workspace: Path) -> str | None:
    """Run one command of a bash block; return why not, if it is not run here."""
    words = shlex.split(line)
    while re.fullmatch(r"[A-Z_]+=\S*", words[0]):  # PYTHONPATH=.: the workspace fixture's
        words.pop(0)
    program = words[0].removeprefix(".venv/bin/")
    if program in RUN_ELSEWHERE:
        return f"{line}: {RUN_ELSEWHERE[program]}"
    if "cuda" in line:
        return f"{line}: needs a GPU"
    for word in words:
        if IMAGE_FILE.match(word) and not (workspace / word).exists():
            make_image(workspace / word)
    if program == "pyrodip":
        try:
            code = pyrodip_main(tiny_command(words[1:]))
        except SystemExit as exit:  # --help
            code = exit.code
        assert code == 0, f"`{line}` exited with {code}"
    elif program == "python" and words[1:3] == ["-m", "experiments.reproduce"]:
        from experiments.reproduce import main as reproduce

        extra = ["--scale", "smoke", "--file", str(smoke_reproduction_file(workspace)),
                 "--domain", "oct", "--domain", "skin"]  # a denoising and a masked task
        assert reproduce([*words[3:], *extra]) == 0
    elif program == "python" and words[1].startswith("benchmarks/"):
        script = ROOT / words[1]
        result = subprocess.run([sys.executable, str(script), *words[2:], "--smoke"],
                                capture_output=True, text=True, cwd=workspace)
        assert result.returncode == 0, result.stderr
    else:
        raise AssertionError(f"the docs run a command this test does not know: {line}")
    return None


def check_toml(body: str, workspace: Path) -> None:
    """Read a toml block as pyrodip reads the file: a study if it lists methods, else a run."""
    path = workspace / "snippet.toml"
    path.write_text(body)
    if "methods" in tomllib.loads(body):
        Comparison.from_toml(path)
    else:
        RunConfig.from_toml(path)


@pytest.fixture
def registries():
    """What the snippets register is gone after the page."""
    saved = [(registry, dict(registry)) for registry in (PRIORS, GUIDES, METHODS, TASKS)]
    yield
    for registry, entries in saved:
        registry.clear()
        registry.update(entries)


def run_snippets(page: Path, selected: list, workspace: Path) -> None:
    """Run the ``selected`` snippets of ``page`` in order, in one namespace, in ``workspace``."""
    shutil.copytree(ROOT / "experiments", workspace / "experiments")
    namespace: dict = {"__name__": "__docs__"}
    for lang, code, _ in selected:
        if lang.startswith("file:"):
            path = workspace / lang.removeprefix("file:")
            path.write_text(code)
            if path.suffix == ".toml":
                check_toml(code, workspace)
        elif lang == "python":
            exec(compile(tiny(code), f"{page_id(page)} snippet", "exec"), namespace)
        elif lang == "bash":
            run_command(code, workspace)
        else:
            check_toml(code, workspace)


@pytest.fixture
def workspace(tmp_path, monkeypatch, capsys, registries):
    """An empty folder, the current one while a page's snippets run."""
    folder = tmp_path / "work"
    folder.mkdir()
    monkeypatch.chdir(folder)
    monkeypatch.setenv("COLUMNS", "100")
    monkeypatch.syspath_prepend(str(ROOT))
    monkeypatch.syspath_prepend(str(folder))  # the plugins a page writes
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(folder), str(ROOT)]))  # workers
    yield folder
    capsys.readouterr()
    for name, module in list(sys.modules.items()):  # so that the next page imports its own
        if str(getattr(module, "__file__", None) or "").startswith(str(folder)):
            del sys.modules[name]


@pytest.mark.parametrize("page", PAGES, ids=page_id)
def test_every_snippet_of_the_page_runs(page, workspace):
    """Every snippet but the slow ones (and those that read what a slow one wrote)."""
    fast = [snippet for snippet in page_snippets(page) if not snippet[2]]
    if not fast:
        pytest.skip(f"{page_id(page)} has no code to run but slow code")
    run_snippets(page, fast, workspace)


@pytest.mark.slow
@pytest.mark.parametrize("page", [page for page in PAGES
                                  if any(slow for *_, slow in page_snippets(page))], ids=page_id)
def test_the_whole_page_runs_with_its_slow_snippets(page, workspace):
    run_snippets(page, page_snippets(page), workspace)


def test_a_snippet_is_slow_if_it_runs_a_study_or_reads_what_one_wrote():
    page = [("bash", "pyrodip run --out runs/a\npyrodip compare study.toml --out runs/b \\\n"
                     "    --workers 2\npyrodip report runs/b\npyrodip report runs/a", None),
            ("python", "from distributed import LocalCluster", None),
            ("python", 'read_dataset("runs/b-2/result.nc")', None),
            ("python", 'read_dataset("runs/b/comparison.nc")', None),
            ("toml", "steps = 3", "shown only")]
    assert [(code.split()[1], slow) for _, code, slow in snippets(page)[:4]] == [
        ("run", False), ("compare", True), ("report", True), ("report", False)]
    assert [slow for *_, slow in snippets(page)[4:]] == [True, False, True]


def docs_module(name: str):
    """A module of docs/ (``hooks``, ``doctest_blocks``), imported from its file."""
    spec = importlib.util.spec_from_file_location(f"docs_{name}", ROOT / "docs" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_cli_reference_covers_every_command():
    hooks = docs_module("hooks")
    from pyrodip.cli import build_parser

    page = (ROOT / "docs" / "cli.md").read_text()
    commands = build_parser()._subparsers._group_actions[0].choices
    for command in commands:
        assert f"<!-- cli-help: {command} -->" in page
    expanded = hooks.expand(page)
    assert "<!-- cli-help" not in expanded
    assert "usage: pyrodip run [-h]" in expanded and "--prior-from BO_NC" in expanded


def test_the_concepts_page_takes_the_methods_defaults_from_the_code():
    hooks = docs_module("hooks")
    from pyrodip.infer.methods import METHODS

    page = (ROOT / "docs" / "concepts.md").read_text()
    assert "<!-- method-defaults -->" in page
    table = hooks.expand(page)
    row = next(line for line in table.splitlines() if line.startswith("| `mfvi` |"))
    mfvi = METHODS["mfvi"]
    assert row.split(" | ")[1:4] == [mfvi.guide, f"{mfvi.temperature:.3g}",
                                     f"{mfvi.init_scale:.3g}"]
    assert all(f"| `{name}` |" in table for name in METHODS)


# --- the API reference ---------------------------------------------------------------------


def all_modules() -> list[str]:
    """Every public module of pyrodip, from the files (``pyrodip.io.files``, ...)."""
    found = []
    for path in sorted((ROOT / "pyrodip").rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        if not any(part.startswith("_") for part in parts):
            found.append(".".join(parts))
    return found


def test_every_package_has_an_api_page_that_lists_all_its_modules():
    hooks = docs_module("hooks")
    pages = hooks.api_pages()
    assert set(pages) == set(hooks.packages()) >= {"pyrodip", "pyrodip.io", "pyrodip.studies"}
    blocks_ = "\n".join(hooks.api_blocks(package) for package in pages)
    documented = re.findall(r"^::: (\S+)$", blocks_, re.MULTILINE)
    assert len(documented) == len(set(documented))
    assert set(documented) - set(all_modules()) <= set(pages)  # besides modules: packages
    assert set(all_modules()) <= set(documented)
    index = hooks.expand_api("<!-- api-index -->", "api/index.md")
    for module in documented:
        assert f"[`{module}`][{module}]" in index


def test_doctest_examples_become_pycon_blocks_and_nothing_else_changes():
    fence = docs_module("doctest_blocks").fence_doctests
    text = ("Squares.\n\n>>> 2 ** 2\n4\n>>> for i in (1, 2):\n...     print(i)\n1\n2\n\n"
            "Then:\n\n    >>> f()  # doctest: +SKIP\n    <BLANKLINE>\n    'x'\n"
            "Done.\n\n```python\n>>> kept\n```")
    assert fence(text) == (
        "Squares.\n\n```pycon\n>>> 2 ** 2\n4\n>>> for i in (1, 2):\n...     print(i)\n1\n2\n"
        "```\n\nThen:\n\n    ```pycon\n    >>> f()\n\n    'x'\n    ```\nDone.\n\n"
        "```python\n>>> kept\n```")
    assert fence(fence(text)) == fence(text)
    assert fence("No example: 3 >>> 2.") == "No example: 3 >>> 2."


def test_rst_habits_become_markdown():
    module = docs_module("doctest_blocks")
    assert doctest.testmod(module).failed == 0
    text = ("Use :class:`~pyrodip.Prior`, :func:`fit` or :data:`a.b.C`::\n\n    code::\n\n"
            "=====  ====\nspec   what\n=====  ====\nx      y\n=====  ====\n\nAfter.\n\n"
            "```text\n:func:`kept`::\n```")
    assert module.rst_to_markdown(text) == (
        "Use `Prior`, `fit` or `a.b.C`:\n\n    code::\n\n```text\n=====  ====\nspec   what\n"
        "=====  ====\nx      y\n=====  ====\n```\n\nAfter.\n\n```text\n:func:`kept`::\n```")


def docstrings() -> list[tuple[str, str]]:
    """(where, docstring) of every module, class and function of pyrodip with an example."""
    found = []
    for path in sorted((ROOT / "pyrodip").rglob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
                text = ast.get_docstring(node)
                if text and ">>>" in text:
                    where = f"{path.relative_to(ROOT)}:{getattr(node, 'name', '')}"
                    found.append((where, text))
    return found


def referenced_examples() -> int:
    """How many docstrings with an example the API reference shows: those of the modules, of
    their public top-level functions and classes (those in ``__all__`` where a module has one)
    and of those classes' methods (mkdocstrings' default hides ``_private`` names)."""
    private, exported_names = re.compile(r"^_[^_]"), docs_module("hooks").exported_names

    def example(node) -> bool:
        return ">>>" in (ast.get_docstring(node) or "")

    count = 0
    for path in sorted((ROOT / "pyrodip").rglob("*.py")):
        tree = ast.parse(path.read_text())
        exported = exported_names(tree)
        count += example(tree)
        for node in tree.body:
            if (not isinstance(node, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
                    or private.match(node.name)
                    or (exported is not None and node.name not in exported)):
                continue
            count += example(node)
            if isinstance(node, ast.ClassDef):
                count += sum(example(method) for method in node.body
                             if isinstance(method, ast.FunctionDef | ast.AsyncFunctionDef)
                             and not private.match(method.name))
    return count


def test_every_docstring_example_is_fenced_whole_and_still_the_same_doctest():
    """In pyrodip's own docstrings: no prompt is left outside a fence, and the fenced text
    holds the same doctest examples (source and expected output) as the docstring."""
    fence = docs_module("doctest_blocks").fence_doctests
    parser = doctest.DocTestParser()
    found = docstrings()
    assert len(found) > 20
    for where, text in found:
        fenced = fence(text)
        outside = re.sub(r"^```pycon\n.*?^```$", "", fenced, flags=re.DOTALL | re.MULTILINE)
        assert ">>>" not in outside, where
        inside = "\n\n".join(re.findall(r"^```pycon\n(.*?)^```$", fenced, re.DOTALL | re.M))
        examples = [(re.sub(r"\s*# doctest:.*", "", e.source), e.want.replace("<BLANKLINE>", ""))
                    for e in parser.get_examples(text)]
        assert [(e.source, e.want) for e in parser.get_examples(inside)] == examples, where


#: A code block of the built site (the theme's highlighter puts an empty span before the code)
#: and an HTML tag (the highlighter's spans inside it).
CODE_BLOCK = re.compile(r"<pre>(?:<span></span>)?<code[^>]*>(.*?)</code></pre>", re.DOTALL)
TAG = re.compile(r"<[^>]+>")


@pytest.fixture(scope="session")
def site(tmp_path_factory) -> Path:
    """The site, built once with ``mkdocs build --strict`` (about 5 s)."""
    folder = tmp_path_factory.mktemp("site")
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(folder)],
        cwd=ROOT, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert result.returncode == 0, result.stderr
    return folder


def test_the_api_pages_show_examples_as_code_not_block_quotes(site):
    pages = sorted((site / "api").rglob("index.html"))
    assert len(pages) == 1 + len({file for file, _ in docs_module("hooks").api_pages().values()})
    examples = 0
    for page in pages:
        html = page.read_text()
        assert "<blockquote>" not in html, page
        code = [TAG.sub("", block) for block in CODE_BLOCK.findall(html)]
        examples += sum("&gt;&gt;&gt; " in block for block in code)
        outside = CODE_BLOCK.sub("", html)
        assert "&gt;&gt;&gt;" not in outside, page
    assert examples >= referenced_examples()
    pycon = [TAG.sub("", block) for block in re.findall(
        r'<div class="language-pycon highlight"><pre>(?:<span></span>)?<code>(.*?)</code></pre>',
        "".join(page.read_text() for page in pages), re.DOTALL)]
    assert any(re.search(r"^&gt;&gt;&gt; .*\n(?!&gt;&gt;&gt;|\.\.\.)\S", block, re.MULTILINE)
               for block in pycon), "no example shows its output in its code block"


def test_the_api_reference_documents_every_module(site):
    html = "".join(page.read_text() for page in (site / "api").rglob("index.html"))
    for module in all_modules():
        assert f'id="{module}"' in html, module


def test_the_site_check_finds_the_pages_and_names_each_problem(tmp_path, capsys):
    check = docs_module("check_site")
    for page in ("index.html", "claims/index.html", "assets/x/index.html", "search/index.html"):
        (tmp_path / page).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / page).touch()
    assert check.pages(tmp_path) == ["", "claims/"]
    fine = {"width": check.WIDTH, "tables": 0, "figures": [], "tabs": check.MAX_TABS}
    assert check.problems_of("claims/", fine) == []
    bad = {"width": check.WIDTH + 1, "tables": 2, "figures": ["a.png", "b.png"],
           "tabs": check.MAX_TABS + 1}
    assert len(check.problems_of("claims/", bad)) == 5
    assert check.main([str(tmp_path / "nothing")]) == 2
    assert "run `mkdocs build` first" in capsys.readouterr().err


def quoted_defaults() -> list[tuple[str, str]]:
    """(file, text) of each place where the prose of the docs restates a default, the text
    formatted from the code's value (the method-defaults table is generated, not quoted)."""
    from pyrodip.bayes.guides import DEFAULT_INIT_SCALE
    from pyrodip.bayes.model import DEFAULT_JITTER, DEFAULT_PRIOR_SCALE
    from pyrodip.infer.methods import METHODS
    from pyrodip.infer.recalibration import HELDOUT_FRACTION
    from pyrodip.infer.stopping import STOP_PATIENCE, WMV_WINDOW
    from pyrodip.run.steps import DEFAULT_STEPS, SLOW_FIT_STEPS

    mfvi, paper = METHODS["mfvi"], METHODS["mfvi-paper"]
    beta = f"{paper.beta:.0e}".replace("e-0", "e-")  # as the docs write it: 1e-6
    slow_steps = "/".join(str(n) for n in sorted(set(SLOW_FIT_STEPS.values())))  # one number
    held_out = f"{HELDOUT_FRACTION * 100:g} % of the observed values"
    return [
        ("README.md", f"(prior `normal:{DEFAULT_PRIOR_SCALE:g}`, T = {mfvi.temperature:g}, "
                      f"jitter {DEFAULT_JITTER:g}, guide std {DEFAULT_INIT_SCALE:g})"),
        ("docs/index.md", f"mean-field variational inference ({DEFAULT_STEPS} steps,"),
        ("docs/tasks.md", f"A fit takes {DEFAULT_STEPS} steps unless told (`--steps`), "
                          f"inpainting and speckle fits {slow_steps}:"),
        ("docs/methods.md", f"| `mfvi` (default) | `meanfield` | {mfvi.temperature:g} | Adam, "
                            f"guide std from {mfvi.init_scale:g}, learning rate annealed to 0 "
                            f"over the last {mfvi.lr_decay * 100:g} % of the steps"),
        ("docs/methods.md", f"ES-WMV's window variance; stops {STOP_PATIENCE} steps after its"),
        ("docs/methods.md", f"`--stop-patience` steps ({STOP_PATIENCE})"),
        ("docs/methods.md", f"the variance of the last {WMV_WINDOW} rendered images"),
        ("docs/methods.md", f"at {held_out} held out"),
        ("docs/methods.md", f"by default: {held_out} are held out"),
        ("docs/concepts.md", f"`init_scale` (the `mfvi` default {mfvi.init_scale:g},"),
        ("docs/concepts.md", f"(`mfvi` and `map` {METHODS['map'].temperature:g},"),
        ("docs/concepts.md", f"**T = {mfvi.temperature:g}** with that start"),
        ("docs/concepts.md", f"over the last {mfvi.lr_decay * 100:g} % of the steps** "
                             f"(`lr_decay = {mfvi.lr_decay:g}`"),
        ("docs/concepts.md", f"over its last `average` ({mfvi.average * 100:g} %) of steps"),
        ("docs/methods.md", f"from beta = {beta} ({paper.temperature_for(128 * 128, 0.1):.2f} "
                            "at 128 x 128)"),
    ]


@pytest.mark.parametrize("where, text", quoted_defaults())
def test_a_default_quoted_in_the_docs_is_the_codes(where, text):
    page = " ".join((ROOT / where).read_text().split())
    assert " ".join(text.split()) in page, f"{where} no longer quotes the code's default: {text}"
