"""Files and folders written whole or not at all, and sets of files written together or not
at all.

>>> import tempfile
>>> with atomic_path(Path(tempfile.mkdtemp()) / "a.txt") as tmp:
...     _ = tmp.write_text("whole")
>>> folder = Path(tempfile.mkdtemp())
>>> with result_set(folder) as staging:
...     _ = (staging / "result.nc").write_text("data")
...     _ = (staging / "panel.png").write_text("figure")
>>> sorted(path.name for path in folder.iterdir()), check_result_set(folder)
(['manifest.json', 'panel.png', 'result.nc'], ['panel.png', 'result.nc'])
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from ..errors import InvalidInputError, OutputError

#: A result set's folders inside the folder it goes to: written (not yet whole), then
#: committed (whole: its files are being moved into place), and its list of files.
STAGING, COMMITTED, MANIFEST = ".staging", ".committed", "manifest.json"


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it onto ``path``.

    A crash or kill at any moment leaves either the old complete file or the new one. A write
    that fails for want of space or permission raises :class:`~pyrodip.errors.OutputError`
    (one line, naming the file and the fix) and leaves the old file as it was.
    """
    path = Path(path)
    try:
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as error:
        raise _output_error(error, path) from None
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600 files
        os.replace(tmp, path)
    except Exception as error:
        failure = _output_error(error, path)
        if failure is error:
            raise
        raise failure from None
    finally:
        tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_folder(path: str | os.PathLike) -> Iterator[Path]:
    """Yield an empty temporary folder beside ``path``; on success rename it onto ``path``,
    replacing whatever is there.

    A failure or kill while the folder is written leaves the old ``path`` as it was; a write
    that fails for want of space or permission raises :class:`~pyrodip.errors.OutputError`.

    >>> folder = Path(tempfile.mkdtemp()) / "series"
    >>> with atomic_folder(folder) as tmp:
    ...     _ = (tmp / "IM0000.dcm").write_text("slice")
    >>> [path.name for path in folder.iterdir()]
    ['IM0000.dcm']
    """
    path = Path(path)
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    except OSError as error:
        raise _output_error(error, path) from None
    try:
        yield tmp
        _swap_into_place(tmp, path)
    except OutputError:
        raise
    except OSError as error:
        raise _output_error(error, path) from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _swap_into_place(new: Path, path: Path) -> None:
    """Rename the folder ``new`` onto ``path``, replacing whatever is there."""
    old = new.with_name(new.name + ".old")
    had_old = path.exists() or path.is_symlink()
    if had_old:
        os.replace(path, old)
    try:
        os.replace(new, path)
    except OSError:
        if had_old:
            os.replace(old, path)
        raise
    if had_old:  # the new folder is in place: leaving the old one behind is no failure
        if old.is_dir() and not old.is_symlink():
            shutil.rmtree(old, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                old.unlink()


@contextlib.contextmanager
def result_set(folder: str | os.PathLike) -> Iterator[Path]:
    """Yield an empty staging folder inside ``folder``; on success the files and folders
    written there replace those of the same names in ``folder`` together, with
    ``manifest.json`` listing each file's SHA-256 (files of the previous set that the new one
    lacks are removed).

    The set is written into ``folder/.staging``, renamed to ``folder/.committed`` once whole
    (the commit), then moved into place (:func:`finish_result_set`). A kill before the commit
    leaves the previous set, a kill after it the new one: the next call (or
    :func:`finish_result_set`, which every reader of a run folder calls) finishes the move.
    """
    folder = Path(folder)
    finish_result_set(folder)
    staging = folder / STAGING
    try:
        shutil.rmtree(staging, ignore_errors=True)  # a set a killed process left unfinished
        staging.mkdir()
        yield staging
        files = sorted(path.name for path in staging.iterdir())
        digests = {
            str(path.relative_to(staging)): _sha256(path)
            for path in sorted(staging.rglob("*")) if path.is_file()
        }
        with atomic_path(staging / MANIFEST) as tmp:
            tmp.write_text(json.dumps({"files": files, "sha256": digests}, indent=1))
        os.rename(staging, folder / COMMITTED)
    except BaseException as error:  # Ctrl-C too: the staged files go, the previous set stays
        shutil.rmtree(staging, ignore_errors=True)
        if isinstance(error, OutputError):  # name the file where it was to go
            raise OutputError(str(error).replace(f"{os.sep}{STAGING}{os.sep}", os.sep)) from None
        failure = _output_error(error, staging) if isinstance(error, Exception) else error
        if failure is error:
            raise
        raise failure from None
    finish_result_set(folder)


def finish_result_set(folder: str | os.PathLike) -> None:
    """Move a committed result set's files into ``folder`` (its manifest last), if a process
    was killed while it moved them; nothing to do otherwise."""
    folder = Path(folder)
    committed = folder / COMMITTED
    if not committed.is_dir():
        return
    if (committed / MANIFEST).is_file():
        new = json.loads((committed / MANIFEST).read_text())["files"]
        if (folder / MANIFEST).is_file():
            old = json.loads((folder / MANIFEST).read_text())["files"]
            for name in set(old) - set(new):
                _remove(folder / name)
        for name in new:
            if (committed / name).exists():
                _remove(folder / name)
                os.rename(committed / name, folder / name)
        os.replace(committed / MANIFEST, folder / MANIFEST)
    shutil.rmtree(committed)


def check_result_set(folder: str | os.PathLike) -> list[str]:
    """The files of the result set in ``folder``, after checking each against the SHA-256 its
    manifest lists; a missing or changed file is an :class:`~pyrodip.errors.InvalidInputError`."""
    folder = Path(folder)
    finish_result_set(folder)
    manifest = json.loads((folder / MANIFEST).read_text())
    for name, digest in manifest["sha256"].items():
        path = folder / name
        if not path.is_file() or _sha256(path) != digest:
            raise InvalidInputError(
                f"{path} is not the file its result set wrote ({folder / MANIFEST}): it was "
                "changed or removed since; run again to write the set anew"
            )
    return manifest["files"]


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


#: Below this many free bytes a failed write is taken for a full disk, whatever the writer
#: raised (torch and HDF5 wrap the system's error in their own).
NEARLY_FULL = 1 << 20
_REASONS = {
    errno.ENOSPC: "no space left on the device",
    errno.EDQUOT: "the disk quota is exceeded",
    errno.EROFS: "the file system is read-only",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
}


def _output_error(error: Exception, path: Path) -> Exception:
    """An :class:`OutputError` for a write of ``path`` that failed for want of space or
    permission, else ``error`` itself."""
    reason = _REASONS.get(getattr(error, "errno", None))
    if reason is None:
        with contextlib.suppress(OSError):
            if shutil.disk_usage(path.parent).free < NEARLY_FULL:
                reason = _REASONS[errno.ENOSPC]
    if reason is None:
        return error
    return OutputError(f"cannot write {path}: {reason}: free some space or write elsewhere "
                       "(another `out` folder); the files there before are unchanged")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
