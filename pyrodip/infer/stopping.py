"""Early stopping without ground truth, for point-estimate fits (plain DIP, MAP).

A rule watches one curve that needs no truth and stops the fit ``patience`` steps after the
curve's last new minimum; the result is the image of the minimum's step (also when the rule
never fires: the lowest point of the curve so far, the last step only where it still falls).

- ``wmv``: the windowed moving variance of Wang et al., "Early Stopping for Deep Image Prior"
  (ES-WMV, arXiv:2112.06074, a preprint; not a TMLR paper): the variance of the last
  :data:`WMV_WINDOW` rendered images, per pixel, averaged over the pixels. It is lowest when the
  fit has found the image and not yet started fitting the noise.
- ``heldout``: the mean squared residual at held-out observed values (see
  :func:`pyrodip.physics.observation.hold_out`): the fit never sees them, so it rises once the
  fit reproduces noise.

The window and the patience are ES-WMV's (W = 100, P = 1000).

>>> curve = np.r_[np.linspace(1.0, 0.2, 50), np.linspace(0.2, 1.0, 100)]
>>> stop_step(curve, patience=30)
49
>>> stop_step(curve, patience=500) is None
True
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..bayes.guides import MAPGuide
from ..errors import InvalidInputError

#: The stopping rules by name; "none" runs every step.
STOP_RULES = ("none", "wmv", "heldout")
#: Images in ES-WMV's window.
WMV_WINDOW = 100
#: Steps without a new minimum after which a rule stops the fit.
STOP_PATIENCE = 1000
#: The curve each rule watches, as :class:`~pyrodip.infer.tracking.Tracker` names it.
RULE_CURVES = {"wmv": "window_variance", "heldout": "mse_heldout"}


def stop_step(
    curve: np.ndarray, patience: int = STOP_PATIENCE, check_every: int = 1
) -> int | None:
    """The step (0-based index) a rule watching ``curve`` chooses: the minimum so far, at the
    first step that lies ``patience`` steps after it; None if the curve never rests that long.
    With ``check_every``, only every ``check_every``-th step is checked (as a fit does, see
    :data:`pyrodip.infer.fitting.CHECK_EVERY`). NaN entries (a window not yet full) are skipped.

    >>> stop_step(np.array([np.nan, 3.0, 2.0, 2.5, 2.6, 1.0]), patience=2)
    2
    """
    values = np.where(np.isnan(curve), np.inf, np.asarray(curve, dtype=float))
    if not np.isfinite(values).any():
        return None
    running_min = np.minimum.accumulate(values)
    new_min = np.r_[True, running_min[1:] < running_min[:-1]] & np.isfinite(values)
    best = np.maximum.accumulate(np.where(new_min, np.arange(len(values)), -1))
    waited = np.arange(len(values)) - best
    checked = (np.arange(len(values)) + 1) % check_every == 0
    stops = np.flatnonzero((best >= 0) & (waited >= patience) & checked)
    return int(best[stops[0]]) if len(stops) else None


def check_stop_rule(rule: str, guide: Any, sampler: Any, heldout: Tensor | None) -> None:
    """Refuse stop rule ``rule`` (see :data:`STOP_RULES`) for a fit it cannot stop: one with a
    method's ``sampler`` or a guide other than :class:`~pyrodip.bayes.guides.MAPGuide`, or the
    ``heldout`` rule without held-out values."""
    if rule == "none":
        return
    if sampler is not None or not isinstance(guide, MAPGuide):
        raise InvalidInputError(
            f"stop_rule={rule!r} stops a point-estimate fit: use method dip or map, or "
            "`stop_rule=none`"
        )
    if rule == "heldout" and heldout is None:
        raise InvalidInputError(
            "stop_rule='heldout' needs held-out values: pass heldout= (see "
            "pyrodip.physics.observation.hold_out)"
        )


class WindowVariance:
    """ES-WMV's statistic, kept on the device: the images of the last ``window`` steps in a
    ring buffer, and their per-pixel variance averaged over the pixels (NaN until full).

    >>> wmv = WindowVariance(window=2)
    >>> float(wmv.update(torch.zeros(1, 1, 2, 2))).__repr__()
    'nan'
    >>> float(wmv.update(torch.full((1, 1, 2, 2), 2.0)))
    1.0
    """

    def __init__(self, window: int = WMV_WINDOW) -> None:
        self.window = window
        self.images: Tensor | None = None
        self.count = 0

    @torch.no_grad()
    def update(self, image: Tensor) -> Tensor:
        """Add this step's image; return the window's variance as a 0-d tensor."""
        if self.images is None:
            self.images = image.new_zeros((self.window, image.numel()))
        self.images[self.count % self.window] = image.reshape(-1)
        self.count += 1
        if self.count < self.window:
            return image.new_tensor(float("nan"))
        return self.images.var(dim=0, unbiased=False).mean()

    def state_dict(self) -> dict:
        return {"images": self.images, "count": self.count}

    def load_state_dict(self, state: dict) -> None:
        self.images, self.count = state["images"], state["count"]


class EarlyStopping:
    """A rule applied during a fit: the minimum of its curve, its step and the image there
    are kept on the device (no sync per step); :meth:`due` syncs once to ask whether
    ``patience`` steps have passed since.

    >>> stopping = EarlyStopping("heldout", patience=2)
    >>> for step, value in enumerate([3.0, 1.0, 2.0, 2.0]):
    ...     stopping.observe(step, torch.tensor(value), torch.full((1, 1, 2, 2), value))
    >>> stopping.due(step=3), stopping.best_step, float(stopping.image.mean())
    (True, 1, 1.0)
    """

    def __init__(self, rule: str, patience: int = STOP_PATIENCE) -> None:
        self.rule, self.patience = rule, patience
        self.curve = RULE_CURVES[rule]
        self.best: Tensor | None = None
        self.step: Tensor | None = None
        self.image: Tensor | None = None

    @torch.no_grad()
    def observe(self, step: int, value: Tensor, image: Tensor) -> None:
        """This step's value of the rule's curve and its image."""
        if self.best is None:
            self.best = torch.full_like(value, float("inf"))
            self.step = torch.full_like(value, -1, dtype=torch.long)
            self.image = image.clone()
        better = value < self.best  # False for NaN
        self.best = torch.where(better, value, self.best)
        self.step = torch.where(better, step, self.step)
        self.image = torch.where(better, image, self.image)

    @property
    def best_step(self) -> int | None:
        """The step (0-based) of the minimum so far, None before the curve had a value."""
        return None if self.step is None or int(self.step) < 0 else int(self.step)

    def due(self, step: int) -> bool:
        """Whether ``step`` (0-based, the last one run) is ``patience`` steps past the minimum."""
        best = self.best_step
        return best is not None and step - best >= self.patience

    def state_dict(self) -> dict:
        return {"best": self.best, "step": self.step, "image": self.image}

    def load_state_dict(self, state: dict) -> None:
        self.best, self.step, self.image = state["best"], state["step"], state["image"]
