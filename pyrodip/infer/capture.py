"""A fit's gradient step recorded as a CUDA graph and replayed (``capture``). On a GPU one
step of a small network is launch-bound: hundreds of small kernels, each launched from Python.
A replayed graph launches them all at once.

Only the gradient step is recorded: the loss, its backward pass and the optimiser's update.
Everything between steps runs as before, outside the graph, on the graph's output tensors:
the learning-rate schedule, tracking, averaging, divergence checks, checkpoints, stop rules
and a sampler's work. The first :data:`WARMUP_STEPS` steps run eagerly on a side stream, as
capture requires. Loading a saved state (a roll-back after a divergence, or a resume) records
the graph again, since loading an optimiser's state replaces its tensors. The optimiser is
built ``capturable`` with its learning rate as a tensor, so the schedule reaches the graph.

Capture needs a CUDA device and the fast engine (:mod:`pyrodip.infer.elbo`); elsewhere it is
refused with the reason:

>>> try:
...     check_capture(torch.device("cpu"), "fast")
... except InvalidInputError as error:
...     print(error)
capture needs a CUDA device, not cpu: use --device cuda, or drop --capture
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from ..errors import InvalidInputError

__all__ = ["WARMUP_STEPS", "CapturedStep", "check_capture"]

#: Eager steps before the graph is recorded (after the start and after each restore).
WARMUP_STEPS = 3


def check_capture(device: torch.device | str, engine: str) -> None:
    """Refuse capture where it cannot run: off CUDA, or on Pyro's engine (whose per-step
    tracing is Python work a graph cannot replay). ``auto`` counts as the fast engine: which
    one it picks is known once the fit builds its loss."""
    device = torch.device(device)
    if device.type != "cuda":
        raise InvalidInputError(
            f"capture needs a CUDA device, not {device.type}: use --device cuda, or drop "
            "--capture"
        )
    if engine not in ("fast", "auto"):
        raise InvalidInputError(
            f"capture records the fast engine's step, and this fit runs the {engine} engine: "
            "use a model, guide and prior the fast engine supports (see `engine`), or drop "
            "--capture"
        )


class CapturedStep:
    """``step()`` (zero the gradients, compute the loss, backward, update: returns the loss)
    run eagerly :data:`WARMUP_STEPS` times, then recorded once and replayed at each call.
    The loss returned after recording is the graph's output tensor, rewritten by each replay;
    so are the tensors the step leaves behind (the model's ``last_image``). Refused
    (:func:`check_capture`) off CUDA and on any engine but the fast one."""

    def __init__(self, step: Callable[[], Tensor], device: torch.device, engine: str) -> None:
        check_capture(device, engine)
        self.step = step
        self.reset()

    def reset(self) -> None:
        """Record the graph again after the next warm-up steps (call after loading state)."""
        self.graph: torch.cuda.CUDAGraph | None = None
        self.loss: Tensor | None = None
        self.warmup_left = WARMUP_STEPS

    def __call__(self) -> Tensor:
        if self.graph is None and self.warmup_left:
            self.warmup_left -= 1
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                loss = self.step()
            torch.cuda.current_stream().wait_stream(side)
            return loss
        if self.graph is None:
            self.graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(self.graph):
                self.loss = self.step()
        self.graph.replay()
        return self.loss
