"""What a fit records step by step: the loss and the quality of the smoothed and current
images, kept on the device until the fit ends."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from ..evaluate.metrics import psnr, ssim
from .stopping import WindowVariance


@dataclass
class History:
    """Metric curves over fitting steps (numpy arrays, one entry per step).

    ``loss`` is the negative ELBO (KL times the temperature). ``psnr``/``ssim`` compare the smoothed
    image (an exponential moving average of the rendered images) with the truth, and
    ``psnr_current``/``ssim_current`` the image of the step itself; the ``*_observation``
    curves compare A(image) with the observation instead (always present). With a stopping rule
    (:mod:`pyrodip.infer.stopping`), ``window_variance`` is ES-WMV's statistic of the current
    images; with held-out values, ``mse_heldout`` is the mean squared residual of A(current
    image) there.
    """

    curves: dict[str, np.ndarray]

    @property
    def steps(self) -> np.ndarray:
        return np.arange(1, len(self.curves["loss"]) + 1)


class Tracker:
    """Per-step metrics kept on the device (no host sync) until the fit ends."""

    def __init__(self, steps, observation, truth, operator, ema, device, data_range,
                 heldout: Tensor | None = None, window_variance: bool = False) -> None:
        self.observation, self.truth, self.operator, self.ema = observation, truth, operator, ema
        self.data_range = data_range
        names = ["loss", "psnr_observation", "ssim_observation"]
        names += ["psnr_current_observation", "ssim_current_observation"]
        if truth is not None:
            names += ["psnr", "ssim", "psnr_current", "ssim_current"]
        self.heldout = None  # the held-out values' weights in their mean (no sync per step)
        if heldout is not None:
            held = heldout.to(device=device, dtype=observation.dtype).expand_as(observation)
            self.heldout = held / held.sum()
            names.append("mse_heldout")
        self.window = WindowVariance() if window_variance else None
        if window_variance:
            names.append("window_variance")
        self.curves = {name: torch.empty(steps, device=device) for name in names}
        self.smoothed: Tensor | None = None

    @torch.no_grad()
    def update(self, step: int, loss: Tensor, image: Tensor) -> None:
        if self.smoothed is None:
            self.smoothed = image.clone()
        else:
            self.smoothed.lerp_(image, 1 - self.ema)
        c = self.curves
        c["loss"][step] = loss
        for suffix, estimate in (("", self.smoothed), ("_current", image)):
            predicted = self.operator(estimate)
            y, data_range = self.observation, self.data_range
            c[f"psnr{suffix}_observation"][step] = psnr(predicted, y, data_range)[0]
            c[f"ssim{suffix}_observation"][step] = ssim(predicted, y, data_range)[0]
            if self.truth is not None:
                c[f"psnr{suffix}"][step] = psnr(estimate, self.truth)[0]
                c[f"ssim{suffix}"][step] = ssim(estimate, self.truth)[0]
        if self.heldout is not None:  # ``predicted`` is A(image) from the loop's last pass
            residual = predicted - self.observation
            c["mse_heldout"][step] = (residual.square() * self.heldout).sum()
        if self.window is not None:
            c["window_variance"][step] = self.window.update(image)

    def state_dict(self) -> dict:
        return {"smoothed": self.smoothed,
                "window": self.window.state_dict() if self.window is not None else None}

    def load_state_dict(self, state: dict) -> None:
        self.smoothed = state["smoothed"]
        if self.window is not None:
            self.window.load_state_dict(state["window"])

    def summary(self, step: int) -> dict[str, str]:
        key = "psnr" if self.truth is not None else "psnr_observation"
        return {"loss": f"{self.curves['loss'][step]:.4g}", key: f"{self.curves[key][step]:.2f}"}

    def numpy(self, steps: int) -> dict[str, np.ndarray]:
        """The curves of the first ``steps`` steps."""
        return {name: values[:steps].cpu().numpy() for name, values in self.curves.items()}


class TrackerBatch:
    """The trackers of a batch of fits (:mod:`pyrodip.infer.batched`) updated together: one
    metric computation per curve for all fits, where one tracker each would launch the same
    kernels once per fit. Each tracker's curves and smoothed image become rows of the batch's
    tensors, so it reads as before. ``operator`` maps the fits' images (B, C, H, W) to what
    each fit's operator observes of its image."""

    def __init__(self, trackers: Sequence[Tracker], operator: Callable[[Tensor], Tensor]) -> None:
        first = trackers[0]
        self.trackers, self.operator, self.ema = list(trackers), operator, first.ema
        self.data_range = first.data_range
        self.observation = torch.cat([t.observation for t in trackers])
        self.truth = None if first.truth is None else torch.cat([t.truth for t in trackers])
        self.heldout = None if first.heldout is None else torch.cat([t.heldout for t in trackers])
        self.curves = {name: torch.stack([t.curves[name] for t in trackers])
                       for name in first.curves}
        for index, tracker in enumerate(trackers):
            tracker.curves = {name: values[index] for name, values in self.curves.items()}
        self.smoothed: Tensor | None = None

    @staticmethod
    def supports(trackers: Sequence[Tracker]) -> bool:
        """Whether the trackers record alike: the same curves, smoothing and data range, and
        no stop rule's window variance (which keeps a state per fit)."""
        first = trackers[0]
        return all(
            t.curves.keys() == first.curves.keys() and t.ema == first.ema
            and t.data_range == first.data_range and t.window is None
            and t.smoothed is None for t in trackers
        )

    @torch.no_grad()
    def update(self, step: int, losses: Tensor, images: Tensor, running: Tensor) -> None:
        """Record step ``step`` of every fit: ``losses`` (B,), ``images`` (B, C, H, W);
        ``running`` (B,) is 1 for the fits still running, 0 for those held (their smoothed
        image stays as it is)."""
        if self.smoothed is None:
            self.smoothed = images.clone()
            for index, tracker in enumerate(self.trackers):
                tracker.smoothed = self.smoothed[index : index + 1]
        else:
            self.smoothed.lerp_(images, (1 - self.ema) * running.view(-1, 1, 1, 1))
        c = self.curves
        c["loss"][:, step] = losses
        for suffix, estimate in (("", self.smoothed), ("_current", images)):
            predicted = self.operator(estimate)
            y, data_range = self.observation, self.data_range
            c[f"psnr{suffix}_observation"][:, step] = psnr(predicted, y, data_range)
            c[f"ssim{suffix}_observation"][:, step] = ssim(predicted, y, data_range)
            if self.truth is not None:
                c[f"psnr{suffix}"][:, step] = psnr(estimate, self.truth)
                c[f"ssim{suffix}"][:, step] = ssim(estimate, self.truth)
        if self.heldout is not None:  # ``predicted`` is A(image) from the loop's last pass
            residual = predicted - self.observation
            c["mse_heldout"][:, step] = (residual.square() * self.heldout).sum((-3, -2, -1))

