"""The package's shape: no import cycle between files or subpackages (imports inside
functions count), no module over 400 lines, no worker pool of its own in ``experiments/``, and
a test file named after every module with behaviour.

The graph is read from the source with :mod:`ast`, so a cycle is found before anything runs::

    python -m pytest tests/test_structure.py
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("pyrodip", "experiments")
MOST_LINES = 400


def module_files() -> dict[str, Path]:
    """Dotted module name -> file, for every module of :data:`PACKAGES`."""
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join(parts)] = path
    return found


def imported_modules(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The modules of :data:`PACKAGES` that module ``name`` imports, anywhere in its body."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    targets = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            for alias in node.names:  # `from package import module` imports the module
                submodule = f"{source}.{alias.name}"
                targets.add(submodule if submodule in modules else source)
    resolved = set()
    for target in targets:
        while target and target not in modules:  # a name inside a module: the module
            target = target.rpartition(".")[0]
        if target and target != name:
            resolved.add(target)
    return resolved


def import_graph() -> dict[str, set[str]]:
    modules = module_files()
    return {name: imported_modules(name, path, modules) for name, path in modules.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one node (Tarjan's algorithm)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in graph.get(node, ()):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def subpackage(module: str) -> str:
    """``pyrodip.physics.noise`` -> ``pyrodip.physics``; a top-level module is its own."""
    parts = module.split(".")
    return ".".join(parts[:2])


def test_cycles_finds_a_cycle_and_only_cycles():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_cycle_between_files():
    found = cycles(import_graph())
    assert not found, f"import cycles between files: {found}"


def test_no_cycle_between_subpackages():
    graph: dict[str, set[str]] = {}
    for module, targets in import_graph().items():
        graph.setdefault(subpackage(module), set()).update(
            subpackage(target) for target in targets if subpackage(target) != subpackage(module)
        )
    found = cycles(graph)
    assert not found, f"import cycles between subpackages: {found}"


@pytest.mark.parametrize("name", sorted(module_files()))
def test_module_is_small(name):
    lines = len(module_files()[name].read_text().splitlines())
    assert lines <= MOST_LINES, f"{name} has {lines} lines (at most {MOST_LINES}): split it"


def test_no_private_name_imported_from_another_module():
    modules = module_files()
    offenders = []
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.level or (node.module or "").startswith(
                    PACKAGES)):
                offenders += [f"{name}: {alias.name}" for alias in node.names
                              if alias.name.startswith("_") and alias.name != "__version__"]
    assert not offenders, f"private names imported across modules: {offenders}"


def test_experiments_run_no_worker_pool_of_their_own():
    pools = ("ProcessPoolExecutor", "ThreadPoolExecutor", "multiprocessing")
    for path in sorted((ROOT / "experiments").rglob("*.py")):
        text = path.read_text()
        assert not any(pool in text for pool in pools), (
            f"{path.name} runs its own worker pool: run its fits on pyrodip.studies.grid"
        )


#: Modules with public functions or classes but no test file of their own, each with its reason.
UNTESTED_BY_NAME = {
    # doctest-only: small functions whose doctests (run by --doctest-modules) are their tests
    "pyrodip.errors",
    # tested in tests/studies/test_bo.py (bo, bo_objective, bo_results, bo_study together)
    "pyrodip.studies.bo_objective",
    "pyrodip.studies.bo_results",
    "pyrodip.studies.bo_study",
}


def named_test_file(module: str) -> Path:
    """Where the tests of ``module`` live: ``pyrodip.infer.checkpoints`` ->
    ``tests/infer/test_checkpoints.py``, ``experiments.prior_study`` ->
    ``tests/experiments/test_prior_study.py``, a package's ``__init__`` (``pyrodip.cli``) ->
    ``tests/cli/test_cli.py``."""
    parts = module.split(".")
    folders = parts[1:-1] if parts[0] == "pyrodip" else parts[:-1]
    if module_files()[module].name == "__init__.py":
        folders = parts[1:] if parts[0] == "pyrodip" else parts
    return ROOT.joinpath("tests", *folders, f"test_{parts[-1]}.py")


def has_behaviour(path: Path) -> bool:
    """Whether the module at ``path`` defines a public function or class."""
    return any(isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
               and not node.name.startswith("_") for node in ast.parse(path.read_text()).body)


def test_the_test_file_is_named_after_the_module():
    assert named_test_file("pyrodip.infer.checkpoints") == ROOT / "tests/infer/test_checkpoints.py"
    assert named_test_file("pyrodip.plots") == ROOT / "tests/test_plots.py"
    assert named_test_file("pyrodip.cli") == ROOT / "tests/cli/test_cli.py"
    assert named_test_file("experiments.prior_study") == (
        ROOT / "tests/experiments/test_prior_study.py")


def test_every_module_with_behaviour_has_a_test_file_named_after_it():
    modules = module_files()
    missing = sorted(
        f"{name}: {named_test_file(name).relative_to(ROOT)}" for name, path in modules.items()
        if has_behaviour(path) and name not in UNTESTED_BY_NAME
        and not named_test_file(name).exists()
    )
    assert not missing, f"modules without a test file named after them: {missing}"
    stale = sorted(name for name in UNTESTED_BY_NAME
                   if name not in modules or named_test_file(name).exists())
    assert not stale, f"allowed without a test file but gone or tested by name now: {stale}"
