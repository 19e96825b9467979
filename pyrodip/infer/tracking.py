"""What a fit records step by step: the loss and the quality of the smoothed and current
images, kept on the device until the fit ends."""

from __future__ import annotations

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
