"""Deblurring: A is a Gaussian blur whose kernel side (`kernel_size`) and std (`blur_std`) are
run settings; the classical baseline is Richardson-Lucy."""

import numpy as np
import torch
import torch.nn.functional as F
from skimage import restoration

from pyrodip.errors import InvalidInputError
from pyrodip.physics.operators import LinearOperator
from pyrodip.physics.tasks import TASKS, Task
from pyrodip.settings import Option
from pyrodip.validation import positive_setting


def odd_size(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1 or value % 2 == 0:
        raise InvalidInputError(f"{name} must be an odd positive integer, e.g. 5, got {value!r}")
    return value


class GaussianBlur(LinearOperator):
    def __init__(self, size: int, std: float) -> None:
        super().__init__()
        x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
        profile = torch.exp(-(x**2) / (2 * std**2))
        kernel = torch.outer(profile, profile)
        self.register_buffer("kernel", (kernel / kernel.sum()).float())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        channels, pad = x.shape[1], self.kernel.shape[-1] // 2
        kernel = self.kernel.to(x.dtype).expand(channels, 1, *self.kernel.shape)
        return F.conv2d(F.pad(x, (pad, pad, pad, pad), mode="reflect"), kernel, groups=channels)


class DeblurTask(Task):
    name = "deblur"
    operator_type = GaussianBlur

    def operator(self, settings, shape, mask=None):
        return GaussianBlur(settings.kernel_size, settings.blur_std)

    def baselines(self, observation):
        blur = observation.operator
        blur = getattr(blur, "operator", blur)  # inside a Subset when values are held out
        psf = blur.kernel.cpu().double().numpy()
        y = observation.observation.detach().cpu().double().clamp(0, 1).numpy()
        return {"richardson-lucy": np.stack(
            [restoration.richardson_lucy(channel, psf, num_iter=20) for channel in y])}


TASKS.register("deblur", DeblurTask(), options=[
    Option("kernel_size", int, 5, "deblur: side of the blur kernel (odd)", check=odd_size),
    Option("blur_std", float, 1.0, "deblur: std of the blur, in pixels", check=positive_setting),
])
