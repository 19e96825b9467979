"""The folder a command writes its results to, checked before any work is done."""

from __future__ import annotations

import time
from pathlib import Path

from ..errors import InvalidInputError

#: The files of a single run's result: a folder holding one is not overwritten unasked.
RESULT_FILES = ("result.nc", "panel.png")
#: The checkpoint an interrupted run leaves in its folder.
CHECKPOINT = "checkpoint.pt"


def prepare_output(out: Path | None, method: str, overwrite: bool) -> Path:
    """Create (or check) the output folder before any work is done."""
    if out is None:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        out = Path("runs") / f"{stamp}-{method}"
        suffix = 1
        while out.exists():
            suffix += 1
            out = Path("runs") / f"{stamp}-{method}-{suffix}"
    if out.exists() and not out.is_dir():
        raise InvalidInputError(f"output path {out} is a file: choose a folder with --out")
    if out.is_dir():
        from ..io.files import finish_result_set

        finish_result_set(out)  # a set whose writer was killed while it moved it into place
    if (out / CHECKPOINT).exists() and not overwrite:
        raise InvalidInputError(
            f"{out} holds an interrupted run: continue it with --resume {out}, or pass "
            "--overwrite to start afresh"
        )
    existing = [name for name in RESULT_FILES if (out / name).exists()]
    if existing and not overwrite:
        raise InvalidInputError(
            f"{out} already holds a result ({existing[0]}): choose another --out or "
            "pass --overwrite"
        )
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".pyrodip-write-test"
        probe.touch()
        probe.unlink()
    except OSError as error:
        raise InvalidInputError(
            f"output folder {out} is not writable ({error.strerror}): choose another --out"
        ) from None
    return out
