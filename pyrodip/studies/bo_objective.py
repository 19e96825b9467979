"""The objective of a Bayesian-optimisation trial: one fit of the study's settings, scored.

>>> OBJECTIVES
('psnr', 'psnr-best', 'ssim', 'heldout')
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from ..errors import InvalidInputError
from ..plugins import load_plugins
from .bo_study import OBJECTIVES
from .config import RunConfig

__all__ = ["HELDOUT_FRACTION", "OBJECTIVES", "FitObjective", "heldout_log_likelihood", "score"]

#: Share of the observed pixels the ``heldout`` objective hides from the fit.
HELDOUT_FRACTION = 0.1


@dataclass(frozen=True)
class FitObjective:
    """One trial: fit ``config`` with the trial's settings, return the ``objective``.

    Picklable, so that Dask can send it to the workers. Every trial uses ``config.seed``
    for the fit (the same network initialisation and noise for every setting).
    """

    config: RunConfig
    objective: str = "psnr"

    def __call__(self, params: dict[str, float]) -> float:
        from ..physics.observation import hold_out
        from .observe import prepare_observation
        from .run import fit

        load_plugins(self.config.plugins)  # on a worker: unpickling the config does not
        config = self.config.replace(**params)
        observation = prepare_observation(config)
        held = None
        if self.objective == "heldout":
            observation, held = hold_out(observation, HELDOUT_FRACTION, seed=config.seed)
        result = fit(observation, config, progress=False)
        if result.status == "diverged":
            raise RuntimeError(f"the fit diverged and stopped at step {len(result.history.steps)}")
        return score(result, self.objective, held)

    def check(self) -> None:
        """Refuse, before any fit, an objective that this config cannot give."""
        from ..physics.observation import hold_out
        from .observe import prepare_observation

        observation = prepare_observation(self.config)
        if self.objective == "heldout":
            if observation.noise.name != "gaussian":
                raise InvalidInputError(
                    f"the heldout objective scores Gaussian noise, not {observation.noise.name}: "
                    "use `noise=gaussian` or a truth-based objective"
                )
            hold_out(observation, HELDOUT_FRACTION, seed=self.config.seed)
        elif not observation.has_truth:
            raise InvalidInputError(
                f"the {self.objective} objective needs the truth, and an `observed` image has "
                "none: use `objective=heldout`"
            )


def score(result, objective: str, held: Tensor | None = None) -> float:
    """The ``objective`` of a fit (a :class:`pyrodip.infer.loop.FitResult`); ``heldout`` needs
    the held-out pixels from :func:`pyrodip.physics.observation.hold_out`."""
    curves = result.history.curves
    if objective == "psnr":
        return float(curves["psnr"][-1])
    if objective == "psnr-best":
        return float(curves["psnr"].max())
    if objective == "ssim":
        return float(curves["ssim"][-1])
    return heldout_log_likelihood(result, held)


def heldout_log_likelihood(result, held: Tensor) -> float:
    """Mean log N(y | mean, std_total^2 + sigma^2) over the held-out pixels (and channels):
    the posterior predictive of a Gaussian likelihood with noise std sigma (heteroscedastic:
    std_total already holds the per-pixel noise)."""
    prediction = result.prediction
    variance = prediction.std_total.double() ** 2
    if not result.model.likelihood.heteroscedastic:
        variance = variance + float(result.model.likelihood.std()) ** 2
    y = result.observation.observation.double().to(variance.device)
    mean = prediction.mean.double()
    log_density = -0.5 * ((y - mean) ** 2 / variance + torch.log(2 * math.pi * variance))
    return float(log_density[held.to(log_density.device).expand_as(log_density)].mean())
