"""What was observed: the observation y, the operator A that produced it, and the truth x when
the observation was simulated from a clean image.

>>> truth = torch.rand(1, 32, 32)
>>> obs = Observation.simulate(truth, noise_std=0.1, seed=0)
>>> obs.observation.shape, obs.has_truth
(torch.Size([1, 32, 32]), True)
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from .data import add_gaussian_noise, center_crop, load_image
from .networks import NetConfig
from .operators import Identity


@dataclass
class Observation:
    """An inverse problem instance: y = noise(A(x)).

    Attributes:
        observation: y, shaped (C, H', W') as A produces it.
        truth: x, shaped (C, H, W), or None for a real observation (no truth metrics then).
        image_shape: (C, H, W) of the image to reconstruct.
        noise_std: the noise level, when known.
        operator: the forward operator A.
        name: where it came from (a path or ``sample:NAME``).
    """

    observation: Tensor
    truth: Tensor | None
    image_shape: tuple[int, int, int]
    noise_std: float | None = None
    operator: nn.Module = field(default_factory=Identity)
    name: str = ""

    @property
    def has_truth(self) -> bool:
        return self.truth is not None

    @classmethod
    def simulate(
        cls,
        truth: Tensor,
        noise_std: float = 0.1,
        seed: int = 0,
        operator: nn.Module | None = None,
        name: str = "",
    ) -> Observation:
        """y = A(truth) + N(0, noise_std^2), the noise drawn from a generator seeded by ``seed``."""
        operator = operator if operator is not None else Identity()
        generator = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            clean = operator(truth.unsqueeze(0))[0]
        noisy = add_gaussian_noise(clean, noise_std, generator=generator)
        return cls(noisy, truth, tuple(truth.shape), noise_std, operator, name)

    @classmethod
    def observed(
        cls, observation: Tensor, noise_std: float | None = None, name: str = ""
    ) -> Observation:
        """A real observation for denoising: no truth is known."""
        return cls(observation, None, tuple(observation.shape), noise_std, Identity(), name)


def prepare_observation(config) -> Observation:
    """Load ``config.image``, crop it to the network's multiple and simulate the observation.

    Uses ``config.image``, ``config.net``, ``config.noise_std`` and ``config.seed`` (the
    noise generator is seeded from it, independently of the network's initialisation).
    """
    min_side = NetConfig.preset(config.net).min_side
    truth = torch.from_numpy(center_crop(load_image(config.image), min_side))
    return Observation.simulate(truth, config.noise_std, seed=config.seed, name=config.image)
