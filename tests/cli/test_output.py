"""The output folder of a command, checked before any work is done (pyrodip.cli.output)."""

from pathlib import Path

import pytest

from pyrodip.cli import main
from pyrodip.cli.output import CHECKPOINT, prepare_output
from pyrodip.errors import InvalidInputError

FAST = ["--steps", "3", "--samples", "2", "--quiet"]


def test_existing_result_is_kept_unless_overwrite(tiny_png, tmp_path, capsys):
    out = tmp_path / "out"
    args = ["run", "--image", str(tiny_png), "--out", str(out), *FAST]
    assert main(args) == 0
    before = (out / "result.nc").read_bytes()
    assert main(args) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert (out / "result.nc").read_bytes() == before
    assert main([*args, "--overwrite", "--seed", "1"]) == 0


def test_no_out_makes_a_new_folder_under_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    first = prepare_output(None, "mfvi", overwrite=False)
    second = prepare_output(None, "mfvi", overwrite=False)
    assert first != second and first.parent == second.parent == Path("runs")
    assert first.name.endswith("-mfvi") and first.is_dir() and second.is_dir()


def test_an_interrupted_run_is_kept_unless_overwrite(tmp_path):
    (tmp_path / CHECKPOINT).write_bytes(b"state")
    with pytest.raises(InvalidInputError, match=f"continue it with --resume {tmp_path}, or "):
        prepare_output(tmp_path, "mfvi", overwrite=False)
    assert prepare_output(tmp_path, "mfvi", overwrite=True) == tmp_path


def test_a_file_is_no_output_folder(tmp_path):
    path = tmp_path / "file"
    path.write_text("x")
    with pytest.raises(InvalidInputError, match="is a file: choose a folder with --out$"):
        prepare_output(path, "mfvi", overwrite=True)
