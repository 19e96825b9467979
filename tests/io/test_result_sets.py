"""A run's files appear together or not at all: a kill before the commit leaves the previous
set, a kill after it the new one (finished by the next reader or writer)."""

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
        "replace": "replace = os.replace; os.replace = lambda s, t: die() "
                   "if str(s).endswith('.committed/manifest.json') else replace(s, t)",
    }[kill_at]
    code = ("import os, signal, sys\n"
            "def die(): os.kill(os.getpid(), signal.SIGKILL)\n"
            f"{killer}\n"
            "from pyrodip.cli import main\n"
            "main(sys.argv[1:])\n")
    killed = subprocess.run([sys.executable, "-c", code, *argv, "--seed", "1", "--overwrite"],
                            env=env)
    assert killed.returncode == -9
    check_result_set(out)  # every file of the set is the one its manifest lists
    now = json.loads((out / MANIFEST).read_text())["sha256"]
    assert (now == old) == (expected == "old")
    assert set(now) == {"result.nc", "panel.png"}
