"""The objective of a Bayesian-optimisation trial: one fit of the study's settings, scored.

>>> OBJECTIVES
('psnr', 'psnr-best', 'ssim', 'heldout')
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass

import torch
from torch import Tensor

from ..errors import InvalidInputError
from ..infer.checkpoints import Checkpointing, read_checkpoint
from ..infer.recalibration import HELDOUT_FRACTION
from ..plugins import load_plugins
from ..run.config import RunConfig
from .bo_study import OBJECTIVES

__all__ = ["OBJECTIVES", "FitObjective", "heldout_log_likelihood", "run_fit_trial", "score"]



@dataclass(frozen=True)
class FitObjective:
    """One trial: fit ``config`` with the trial's settings, return the ``objective``.

    Picklable, so that Dask can send it to the workers. Every trial uses ``config.seed``
    for the fit (the same network initialisation and noise for every setting). A trial's fit
    is not recalibrated (``calibration=none``): no objective scores the std's scale, and the
    ``heldout`` objective holds out its own values.
    """

    config: RunConfig
    objective: str = "psnr"

    def __call__(self, params: dict[str, float]) -> float:
        return self.evaluate(params)[0]

    def evaluate(self, params: dict[str, float], checkpoint: Checkpointing | None = None,
                 stop: threading.Event | None = None) -> tuple[float, list[int]]:
        """The trial's objective, and the steps at which its fit resumed from ``checkpoint``.

        With ``checkpoint``, the fit saves its state there as :func:`pyrodip.fit` does and
        resumes from it when it holds this trial's fit (one of other settings is removed);
        the checkpoint is removed once the fit has ended. ``stop`` (default: the Dask worker
        this runs on being stopped, as when SLURM preempts its job) ends the fit with its
        state saved (:class:`~pyrodip.infer.checkpoints.Interrupted`), to resume where the
        trial runs again.
        """
        from ..physics.observation import hold_out
        from ..run.fit import fit
        from ..run.observe import prepare_observation
        from .execution import WorkerStopping

        load_plugins(self.config.plugins)  # on a worker: unpickling the config does not
        config = self.config.replace(**params, calibration="none")
        observation = prepare_observation(config)
        held = None
        if self.objective == "heldout":
            observation, held = hold_out(observation, HELDOUT_FRACTION, seed=config.seed)
        resume = checkpoint is not None and checkpoint.path.exists()
        if resume and read_checkpoint(checkpoint.path)["config"] != config.to_json():
            checkpoint.path.unlink()  # a fit of other settings, left in the folder: start afresh
            resume = False
        result = fit(observation, config, progress=False, checkpoint=checkpoint, resume=resume,
                     stop=stop or WorkerStopping.here())
        if checkpoint is not None:
            checkpoint.path.unlink(missing_ok=True)
        if result.status == "diverged":
            raise RuntimeError(f"the fit diverged and stopped at step {len(result.history.steps)}")
        return score(result, self.objective, held), result.resumed_at

    def scores(self, trials: list[dict[str, float]]) -> list[tuple[float, str]]:
        """Each trial's (objective, error), the fits run as one batch (:func:`pyrodip.fit_batch`;
        the trials may differ only in :data:`~pyrodip.run.fit.BATCH_VARIES`)."""
        from ..physics.observation import hold_out
        from ..run.fit import fit_batch
        from ..run.observe import prepare_observation

        load_plugins(self.config.plugins)
        configs = [self.config.replace(**params, calibration="none") for params in trials]
        observations, helds = [], []
        for config in configs:
            observation, held = prepare_observation(config), None
            if self.objective == "heldout":
                observation, held = hold_out(observation, HELDOUT_FRACTION, seed=config.seed)
            observations.append(observation)
            helds.append(held)
        outcomes = []
        for result, held in zip(fit_batch(observations, configs, progress=False), helds,
                                strict=True):
            if result.status == "diverged":
                steps = len(result.history.steps)
                outcomes.append((math.nan, f"RuntimeError: the fit diverged and stopped at step "
                                           f"{steps}"))
            else:
                outcomes.append((score(result, self.objective, held), ""))
        return outcomes

    def check(self, fits: int = 1) -> None:
        """Refuse, before any fit, an objective that this config cannot give, or ``fits``
        fits at once (a batch) that the memory estimate says will not fit."""
        from ..physics.observation import hold_out
        from ..run.observe import prepare_observation
        from ..run.resources import check_memory

        observation = prepare_observation(self.config)
        if fits > 1:
            check_memory(self.config, observation.image_shape, fits=fits)
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


def run_fit_trial(objective: FitObjective, params: dict[str, float],
                  checkpoint: Checkpointing) -> tuple[float, float, str, list[int]]:
    """:func:`~pyrodip.studies.execution.run_trial` for a trial's fit that keeps ``checkpoint``
    (:meth:`FitObjective.evaluate`): (value, wall time in s, ``""``: no error, the steps at
    which the fit resumed)."""
    start = time.perf_counter()
    value, resumed_at = objective.evaluate(params, checkpoint)
    return value, time.perf_counter() - start, "", resumed_at


def score(result, objective: str, held: Tensor | None = None) -> float:
    """The ``objective`` of a fit (a :class:`pyrodip.infer.fitting.FitResult`); ``heldout`` needs
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
    """Mean log N(y | m, s^2 + sigma^2) over the held-out values (and channels): m and s^2 the
    mean and variance of A(x) over the posterior images, sigma^2 the noise's variance
    (heteroscedastic: the network's per pixel), all in the domain where the noise is additive
    (:meth:`pyrodip.bayes.likelihoods.Likelihood.additive`)."""
    prediction = result.prediction
    likelihood = result.model.likelihood
    mean = prediction.measured_mean.double()
    if prediction.std_aleatoric is not None:
        noise = prediction.std_aleatoric.double() ** 2
    else:
        noise = likelihood.noise_variance(mean)
    variance = prediction.measured_std.double() ** 2 + noise
    y = likelihood.additive(result.observation.observation.double().to(mean.device))
    log_density = -0.5 * ((y - mean) ** 2 / variance + torch.log(2 * math.pi * variance))
    return float(log_density[held.to(log_density.device).expand_as(log_density)].mean())
