"""Checkpoints of a fit: where and how often its state is saved, reading it back, and the
random number generators' states that make a resumed fit equal an uninterrupted one."""

from __future__ import annotations

import os
import pickle
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import InvalidInputError, MissingFileError, PyrodipError


@dataclass
class Checkpointing:
    """Where :func:`fit` saves its state, and how often: every ``every_steps`` steps, or, when
    that is None, every ``every_seconds`` of wall time (checked every :data:`CHECK_EVERY`
    steps). Files are written whole or not at all."""

    path: Path
    every_steps: int | None = None
    every_seconds: float = 300.0


class Interrupted(PyrodipError):
    """The fit was asked to stop (SIGTERM, SIGINT); its state is in the checkpoint, if any."""

    def __init__(self, step: int, path: Path | None) -> None:
        saved = f"; state saved to {path}" if path is not None else ""
        super().__init__(f"interrupted at step {step}{saved}")
        self.step, self.path = step, path


def read_checkpoint(path: str | os.PathLike, device: torch.device | str = "cpu") -> dict:
    """The state saved by a fit's checkpoint (its ``config`` as JSON among it), read with
    ``torch.load(weights_only=True)``: tensors and plain values only, so that a checkpoint
    from elsewhere cannot run code; a file holding anything else is refused."""
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"no checkpoint at {path}: nothing to resume")
    try:
        return torch.load(path, map_location=device, weights_only=True)
    except pickle.UnpicklingError:
        try:
            names = torch.serialization.get_unsafe_globals_in_checkpoint(path)
        except Exception:  # not a torch archive at all
            names = []
        if not names:
            raise InvalidInputError(
                f"checkpoint {path} cannot be read: it is damaged or not a pyrodip checkpoint"
            ) from None
        raise InvalidInputError(
            f"checkpoint {path} is refused: besides tensors and plain values it holds "
            f"{', '.join(names)}, which loading could run as code (pyrodip never writes those): "
            "start the run afresh"
        ) from None
    except Exception as error:  # a damaged file: name it, whatever torch raises
        raise InvalidInputError(f"checkpoint {path} cannot be read ({error})") from None


def rng_state() -> dict:
    """The random number generators' states, as tensors and plain values (what
    :func:`read_checkpoint` reads back)."""
    name, keys, position, has_gauss, cached = np.random.get_state()
    state = {"torch": torch.get_rng_state(),
             "numpy": (name, torch.from_numpy(keys.astype(np.int64)), position, has_gauss,
                       cached),
             "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    name, keys, position, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), position, has_gauss, cached))
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
