"""A run's files, and a study's (``comparison.nc``, ``table.md`` and figures; ``bo.nc`` and
figures), appear together or not at all: a kill before the commit leaves the previous set, a
kill after it the new one (finished by the next reader or writer)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import pyrodip.io.files as files
from pyrodip.errors import InvalidInputError
from pyrodip.io.files import (
    COMMITTED,
    MANIFEST,
    STAGING,
    check_result_set,
    result_set,
)

ROOT = Path(__file__).parents[2]
#: Code that kills its own process with SIGKILL from ``die()``, before the kill point.
DIES = "import os, signal, sys\ndef die(): os.kill(os.getpid(), signal.SIGKILL)\n"
#: Kill points: the move into place is done but for the manifest, which goes last.
AT_THE_MANIFEST = ("replace = os.replace; os.replace = lambda s, t: die() "
                   "if str(s).endswith('.committed/manifest.json') else replace(s, t)")


def write_set(folder, **contents):
    with result_set(folder) as staging:
        for name, text in contents.items():
            (staging / name).write_text(text)


def test_a_set_replaces_the_previous_one_and_drops_the_files_it_lacks(tmp_path):
    (tmp_path / "notes.txt").write_text("the user's")
    write_set(tmp_path, **{"result.nc": "old", "std.nii.gz": "old"})
    write_set(tmp_path, **{"result.nc": "new", "panel.png": "new"})
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        MANIFEST, "notes.txt", "panel.png", "result.nc"]
    assert (tmp_path / "result.nc").read_text() == "new"
    assert check_result_set(tmp_path) == ["panel.png", "result.nc"]


def test_a_failure_before_the_commit_leaves_the_previous_set(tmp_path):
    write_set(tmp_path, **{"result.nc": "old", "panel.png": "old"})
    with pytest.raises(KeyboardInterrupt), result_set(tmp_path) as staging:
        (staging / "result.nc").write_text("new")
        raise KeyboardInterrupt  # killed between the files
    assert {p.name: p.read_text() for p in tmp_path.glob("*.*")
            if p.is_file() and p.name != MANIFEST} == {
        "result.nc": "old", "panel.png": "old"}
    check_result_set(tmp_path)


def test_a_kill_while_the_set_is_moved_is_finished_by_the_next_reader(tmp_path, monkeypatch):
    write_set(tmp_path, **{"result.nc": "old", "panel.png": "old", "std.nii.gz": "old"})
    moved, rename = [], os.rename

    def dies_after_one_move(source, target):
        if Path(source).parent.name == COMMITTED:
            if moved:
                raise KeyboardInterrupt
            moved.append(source)
        rename(source, target)

    monkeypatch.setattr(files.os, "rename", dies_after_one_move)
    with pytest.raises(KeyboardInterrupt):
        write_set(tmp_path, **{"result.nc": "new", "panel.png": "new"})
    monkeypatch.undo()
    assert (tmp_path / COMMITTED).is_dir()  # committed, half moved
    assert check_result_set(tmp_path) == ["panel.png", "result.nc"]
    assert {p.name: p.read_text() for p in tmp_path.glob("*.*")
            if p.is_file() and p.name != MANIFEST} == {
        "result.nc": "new", "panel.png": "new"}
    assert not (tmp_path / COMMITTED).exists()


def test_a_changed_file_fails_the_check(tmp_path):
    write_set(tmp_path, **{"result.nc": "data"})
    (tmp_path / "result.nc").write_text("edited")
    with pytest.raises(InvalidInputError, match="result.nc is not the file its result set"):
        check_result_set(tmp_path)


def test_a_full_disk_while_staging_is_one_error_and_the_previous_set_stays(tmp_path):
    write_set(tmp_path, **{"result.nc": "old"})
    with pytest.raises(OSError), result_set(tmp_path) as staging:
        raise OSError(28, "No space left on device", str(staging / "result.nc"))
    assert not (tmp_path / STAGING).exists() and check_result_set(tmp_path) == ["result.nc"]


@pytest.mark.parametrize("kill_at, expected", [
    ("plot_panel", "old"),      # result.nc staged, the panel not: the previous set
    ("replace", "new"),         # committed, moved but for the manifest: the new set
])
def test_pyrodip_run_killed_between_its_files_leaves_one_whole_set(tmp_path, kill_at, expected):
    """A real SIGKILL of ``pyrodip run --overwrite`` while it writes its set."""
    out = tmp_path / "out"
    argv = ["run", "--image", "sample:phantom", "--size", "32", "--steps", "3",
            "--samples", "2", "--out", str(out), "--quiet"]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    run = [sys.executable, "-c", "import sys; from pyrodip.cli import main; "
           "sys.exit(main(sys.argv[1:]))"]
    assert subprocess.run([*run, *argv], env=env).returncode == 0
    old = json.loads((out / MANIFEST).read_text())["sha256"]
    killer = {
        "plot_panel": "import pyrodip.plots as p; p.plot_panel = lambda *a, **k: die()",
        "replace": AT_THE_MANIFEST,
    }[kill_at]
    code = f"{DIES}{killer}\nfrom pyrodip.cli import main\nmain(sys.argv[1:])\n"
    killed = subprocess.run([sys.executable, "-c", code, *argv, "--seed", "1", "--overwrite"],
                            env=env)
    assert killed.returncode == -9
    check_result_set(out)  # every file of the set is the one its manifest lists
    now = json.loads((out / MANIFEST).read_text())["sha256"]
    assert (now == old) == (expected == "old")
    assert set(now) == {"result.nc", "panel.png"}


STUDY = """
methods = ["dip"]
images = ["sample:phantom"]
seeds = {seeds}

[settings]
size = 32
steps = 3
samples = 2
"""


@pytest.mark.parametrize("kill_at, expected", [
    ("comparison_figures", "old"),  # comparison.nc and table.md staged, the figures not
    ("replace", "new"),             # committed, moved but for the manifest
])
def test_pyrodip_compare_killed_between_its_files_leaves_one_whole_set(tmp_path, capsys,
                                                                      kill_at, expected):
    """A real SIGKILL of ``pyrodip compare`` while it writes the study's set (a study of one
    seed there, of two seeds coming); ``pyrodip report`` then finishes and checks the set."""
    from pyrodip.cli import main

    out = tmp_path / "out"
    for name, seeds in (("one", [0]), ("two", [0, 1])):
        (tmp_path / f"{name}.toml").write_text(STUDY.format(seeds=seeds))
    assert main(["compare", str(tmp_path / "one.toml"), "--out", str(out), "--quiet"]) == 0
    capsys.readouterr()
    old = json.loads((out / MANIFEST).read_text())["sha256"]
    assert {"comparison.nc", "table.md", "psnr_curves.png"} <= set(old)
    killer = {"comparison_figures": "import pyrodip.plots as p; "
                                    "p.comparison_figures = lambda *a, **k: die()",
              "replace": AT_THE_MANIFEST}[kill_at]
    code = f"{DIES}{killer}\nfrom pyrodip.cli import main\nmain(sys.argv[1:])\n"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    killed = subprocess.run([sys.executable, "-c", code, "compare", str(tmp_path / "two.toml"),
                             "--out", str(out), "--quiet"], env=env)
    assert killed.returncode == -9
    assert main(["report", str(out)]) == 0  # finishes a cut-short move, checks every file
    seeds = {"old": "over 1 seed;", "new": "over 2 seeds;"}[expected]
    assert seeds in capsys.readouterr().out
    assert seeds in (out / "table.md").read_text()  # the table of the dataset beside it
    now = json.loads((out / MANIFEST).read_text())["sha256"]
    assert (now == old) == (expected == "old") and set(now) == set(old)
    assert not (out / COMMITTED).exists()  # a staged set left by the kill is the next writer's


def test_report_refuses_a_study_whose_table_was_changed(tmp_path, capsys):
    from pyrodip.cli import main

    (tmp_path / "one.toml").write_text(STUDY.format(seeds=[0]))
    out = tmp_path / "out"
    assert main(["compare", str(tmp_path / "one.toml"), "--out", str(out), "--quiet"]) == 0
    (out / "table.md").write_text("edited\n")
    capsys.readouterr()
    assert main(["report", str(out / "comparison.nc")]) == 2
    err = capsys.readouterr().err
    assert "table.md is not the file its result set wrote" in err and len(err.splitlines()) == 1


@pytest.mark.parametrize("kill_at, expected", [
    ("plot_bo_progress", "old"),  # bo.nc and gp.png staged, best.png not
    ("replace", "new"),
])
def test_a_bo_study_killed_between_its_files_leaves_one_whole_set(tmp_path, kill_at, expected):
    """A real SIGKILL while a study extended by a round writes ``bo.nc`` and its figures (a
    synthetic objective: no fit); the best settings are read from one whole set."""
    from pyrodip.studies.bo import Param, Study, best_parameters, optimize

    study = Study(params=(Param("prior_scale", 0.01, 0.4, log=True),), init_points=3,
                  rounds=0, batch=1)
    optimize(study, tmp_path, evaluate=lambda p: -abs(p["prior_scale"] - 0.05))
    old = json.loads((tmp_path / MANIFEST).read_text())["sha256"]
    assert set(old) == {"bo.nc", "gp.png", "best.png"}
    killer = {"plot_bo_progress": "import pyrodip.plots as p; "
                                  "p.plot_bo_progress = lambda *a, **k: die()",
              "replace": AT_THE_MANIFEST}[kill_at]
    code = (f"{DIES}{killer}\nfrom pyrodip.studies.bo import resume\n"
            "resume(sys.argv[1], rounds=1, evaluate=lambda p: -abs(p['prior_scale'] - 0.05))\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    assert subprocess.run([sys.executable, "-c", code, str(tmp_path)], env=env).returncode == -9
    best_parameters(tmp_path)  # finishes a cut-short move
    assert check_result_set(tmp_path) == ["best.png", "bo.nc", "gp.png"]
    now = json.loads((tmp_path / MANIFEST).read_text())["sha256"]
    assert (now == old) == (expected == "old")
