"""What a fit does over its last steps: the learning rate annealed (:func:`lr_factor`), and the
rendered images and the parameters averaged (:class:`TailAverage`).

Both act over the last fraction of the steps (``Training.lr_decay``, ``Training.average``).
The averaged renders give a readout whose mean, std and held-out residuals come from one
distribution: the training renders of those steps (one weight draw and one input jitter
each, along the trajectory), as the reference codes report their running average.

>>> [round(lr_factor(step, 10, 0.5), 2) for step in range(10)]
[1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.85, 0.5, 0.15, 0.0]
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterable, Iterator, Sequence

import torch
from torch import Tensor

from ..errors import InvalidInputError
from ..validation import choice
from .predictive import Prediction, RunningMoments, predict

#: What a fit returns as its posterior predictive: ``final``: weight samples from the guide at
#: its final parameters; ``renders``: the training renders of the last ``average`` steps;
#: ``params``: weight samples from the guide at its parameters averaged over those steps.
READOUTS = ("final", "renders", "params")


def check_readout(readout: str, average: float) -> None:
    """Refuse a readout that averages the last steps of a fit that averages none.

    >>> check_readout("renders", 0.0)
    Traceback (most recent call last):
    ...
    pyrodip.errors.InvalidInputError: readout 'renders' averages the last steps: give \
`average` > 0, or `readout` final
    """
    choice("readout", readout, READOUTS)
    if readout != "final" and not average:
        raise InvalidInputError(f"readout {readout!r} averages the last steps: give "
                                "`average` > 0, or `readout` final")


def tail_start(steps: int, fraction: float) -> int:
    """The first step (0-based) of the last ``fraction`` of a ``steps``-step fit.

    >>> tail_start(1000, 0.3), tail_start(1000, 0.0)
    (700, 1000)
    """
    return steps - round(fraction * steps)


def lr_factor(step: int, steps: int, decay: float) -> float:
    """The learning rate's factor at ``step`` (0-based): 1, then a half cosine from 1 to 0
    over the last ``decay`` fraction of the steps (0 at the last step)."""
    start = tail_start(steps, decay)
    if step < start:
        return 1.0
    span = steps - 1 - start
    return 0.0 if span <= 0 else 0.5 * (1 + math.cos(math.pi * (step - start) / span))


def set_lr(optimizer: torch.optim.Optimizer, base_lrs: Sequence[float], factor: float) -> None:
    """Set each parameter group's learning rate to its base one times ``factor`` (in place
    where it is a tensor, as a captured step reads it: :mod:`pyrodip.infer.capture`)."""
    for group, lr in zip(optimizer.param_groups, base_lrs, strict=True):
        if isinstance(group["lr"], torch.Tensor):
            group["lr"].fill_(lr * factor)
        else:
            group["lr"] = lr * factor


class TailAverage:
    """From step ``start`` on: the moments of the rendered images (:meth:`prediction`) and
    the running mean of the parameters (:meth:`swapped` puts it in place).

    >>> weight = torch.zeros(2)
    >>> tail = TailAverage(start=1)
    >>> for step in range(3):
    ...     _ = weight.fill_(step)
    ...     tail.update(step, torch.full((1, 1, 1), float(step)), None, [weight])
    >>> float(tail.prediction().mean), tail.count
    (1.5, 2)
    >>> with tail.swapped([weight]):
    ...     float(weight[0])
    1.5
    >>> float(weight[0])
    2.0
    """

    def __init__(self, start: int) -> None:
        self.start = start
        self.count = 0
        self.renders = RunningMoments()
        self.params: list[Tensor] | None = None

    @torch.no_grad()
    def update(self, step: int, image: Tensor, measured: Tensor | None,
               parameters: Sequence[Tensor]) -> None:
        """Add step ``step``'s rendered image (C, H, W), its ``measured`` form and the
        parameters after the step (nothing before ``start``)."""
        if step < self.start:
            return
        self.count += 1
        self.renders.add(image, None, measured)
        if self.params is None:
            self.params = [p.detach().clone() for p in parameters]
        else:
            for mean, param in zip(self.params, parameters, strict=True):
                mean.lerp_(param.detach(), 1 / self.count)

    def prediction(self) -> Prediction | None:
        """The moments of the averaged renders (None before ``start``)."""
        return self.renders.prediction() if self.count else None

    @contextlib.contextmanager
    def swapped(self, parameters: Sequence[Tensor]) -> Iterator[None]:
        """The averaged parameters in place of ``parameters`` for the block."""
        if self.params is None:
            yield
            return
        kept = [p.detach().clone() for p in parameters]
        with torch.no_grad():
            for param, mean in zip(parameters, self.params, strict=True):
                param.copy_(mean)
        try:
            yield
        finally:
            with torch.no_grad():
                for param, value in zip(parameters, kept, strict=True):
                    param.copy_(value)

    def state_dict(self) -> dict:
        return {"count": self.count, "renders": self.renders.state_dict(),
                "params": self.params}

    def load_state_dict(self, state: dict) -> None:
        self.count, self.params = state["count"], state["params"]
        self.renders = RunningMoments()
        self.renders.load_state_dict(state["renders"])


def readouts_of(model, guide, tail: TailAverage | None, parameters: Iterable[Tensor],
                samples: int) -> dict[str, Prediction]:
    """Every readout (:data:`READOUTS`) a fit has: ``final`` (``samples``
    weight draws at the guide's final parameters) and, where ``tail`` averaged at least two
    steps (a std needs two), ``renders`` and ``params`` (``samples`` draws at the averaged
    ``parameters``)."""
    found = {"final": predict(model, guide, num_samples=samples)}
    averaged = tail.prediction() if tail is not None else None
    if averaged is not None and averaged.num_samples > 1:
        found["renders"] = averaged
        with tail.swapped(list(parameters)):
            found["params"] = predict(model, guide, num_samples=samples)
    return found
