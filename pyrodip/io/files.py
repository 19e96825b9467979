"""Files written whole or not at all.

>>> import tempfile
>>> with atomic_path(Path(tempfile.mkdtemp()) / "a.txt") as tmp:
...     _ = tmp.write_text("whole")
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from ..errors import OutputError


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
