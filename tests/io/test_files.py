"""pyrodip.io.files: a folder written whole or not at all (result sets: test_result_sets.py)."""

import errno

import pytest

import pyrodip.io.files as files
from pyrodip.errors import OutputError
from pyrodip.io.files import atomic_folder


def test_a_folder_replaces_the_previous_one_whole(tmp_path):
    folder = tmp_path / "series"
    folder.mkdir()
    (folder / "old.dcm").write_text("the previous result")
    with atomic_folder(folder) as tmp:
        assert tmp.parent == tmp_path and not any(tmp.iterdir())
        (tmp / "IM0000.dcm").write_text("new")
        assert (folder / "old.dcm").exists()  # not yet replaced
    assert [path.name for path in folder.iterdir()] == ["IM0000.dcm"]
    assert [path.name for path in tmp_path.iterdir()] == ["series"]  # nothing left beside it


def test_a_failure_leaves_the_previous_folder_and_no_temporary_one(tmp_path):
    folder = tmp_path / "series"
    folder.mkdir()
    (folder / "old.dcm").write_text("the previous result")
    with pytest.raises(RuntimeError, match="disk went away"), atomic_folder(folder) as tmp:
        (tmp / "IM0000.dcm").write_text("half")
        raise RuntimeError("disk went away")
    assert [path.name for path in tmp_path.iterdir()] == ["series"]
    assert [path.name for path in folder.iterdir()] == ["old.dcm"]


def test_a_full_disk_is_one_output_error(tmp_path, monkeypatch):
    def full(new, path):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(files, "_swap_into_place", full)
    with pytest.raises(OutputError, match="series: no space left on the device"):
        with atomic_folder(tmp_path / "series"):
            pass
    assert not any(tmp_path.iterdir())


def test_a_file_in_the_way_is_replaced(tmp_path):
    (tmp_path / "series").write_text("a file where the folder goes")
    with atomic_folder(tmp_path / "series") as tmp:
        (tmp / "IM0000.dcm").write_text("new")
    assert (tmp_path / "series" / "IM0000.dcm").read_text() == "new"
