"""One reconstruction from a run config: the one place where a :class:`RunConfig` becomes
objects (model, guide, method, training settings) for :func:`pyrodip.infer.loop.fit_model`.

>>> import torch
>>> from pyrodip import Observation, RunConfig, fit
>>> obs = Observation.simulate(torch.rand(1, 32, 32), noise=0.1, seed=0)
>>> result = fit(obs, RunConfig(steps=3, samples=2), progress=False)
>>> result.history.curves["loss"].shape, result.prediction.mean.shape
((3,), torch.Size([1, 32, 32]))
"""

from __future__ import annotations

import threading
import warnings

import pyro
import torch

from ..bayes.guides import WeightGuide, make_guide
from ..bayes.model import BayesianDIP
from ..bayes.networks import NetConfig
from ..errors import InvalidInputError
from ..infer.checkpoints import Checkpointing
from ..infer.loop import FitResult, Training, fit_model
from ..infer.methods import METHODS
from ..infer.recalibration import censored_range, recalibrate, rescaled
from ..physics.observation import Observation, hold_out
from .config import RunConfig
from .resources import check_memory


def resolve_device(name: str) -> torch.device:
    """``cpu``, ``cuda`` or ``cuda:N``; refuses CUDA when this machine has none."""
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise InvalidInputError(
            f"device {name!r} requested but CUDA is not available: use `device=cpu`"
        )
    return torch.device(name)


def build(config: RunConfig, observation: Observation) -> tuple[BayesianDIP, WeightGuide]:
    """The model and guide that ``config`` describes, for ``observation`` (on the CPU)."""
    likelihood = observation.noise.likelihood(
        learn=config.noise_level == "learned",
        heteroscedastic=config.noise_level == "heteroscedastic",
    )
    name, _, arguments = config.prior.partition(":")  # NAME or NAME::ARG... (see RunConfig)
    model = BayesianDIP(
        observation.image_shape,
        net=NetConfig.preset(
            config.net, dropout=config.resolved("dropout"), normalization=config.normalization
        ),
        prior=f"{name}:{config.prior_scale}{arguments}",
        layer_priors=config.layer_priors,
        likelihood=likelihood,
        operator=observation.operator,
        temperature=temperature(config, observation),
        jitter=config.jitter,
        bayesian_batchnorm=config.bayesian_batchnorm,
    )
    guide = make_guide(
        config.resolved("guide"), model, init_loc=config.resolved("init_loc"),
        init_scale=config.resolved("init_scale"),
    )
    return model, guide


def temperature(config: RunConfig, observation: Observation) -> float:
    """The posterior temperature of ``config`` for ``observation``: its own, or its method's
    (for ``mfvi-paper``, the one its beta implies at this image's size and noise level)."""
    if config.temperature is not None:
        return config.temperature
    noise_std = observation.noise.std if observation.noise.name == "gaussian" else None
    return METHODS[config.method].temperature_for(observation.observed_values, noise_std)


def training(config: RunConfig) -> Training:
    """The training settings of ``config`` (its method's defaults filled in)."""
    return Training(
        steps=config.steps,
        lr=config.resolved("lr"),
        optimizer=config.resolved("optimizer"),
        weight_decay=config.resolved("weight_decay"),
        engine=config.engine,
        ema=config.ema,
        samples=config.samples,
        local_reparam=config.local_reparam,
        stop_rule=config.resolved("stop_rule"),
        patience=config.stop_patience,
    )


def fit(
    observation: Observation,
    config: RunConfig | None = None,
    *,
    progress: bool = True,
    validate: bool | None = None,
    checkpoint: Checkpointing | None = None,
    resume: bool = False,
    stop: threading.Event | None = None,
) -> FitResult:
    """Fit the model that ``config`` describes (its ``method``) to ``observation`` and
    summarise the posterior predictive. Seeds every random number generator from
    ``config.seed`` first, so equal configs give equal results (on the same device). The
    keyword arguments are those of :func:`pyrodip.infer.loop.fit_model`; a checkpoint is
    resumed only with the same config.

    With a calibration (the method's, or ``config.calibration``), ``config.heldout_fraction``
    of the observed values (drawn from ``config.seed``) are held out of the fit and the std is
    rescaled on them (:mod:`pyrodip.infer.recalibration`); with ``config.calibration_refit``
    the model is then fitted again on all of them (twice the time; the held-out fit keeps no
    checkpoint, so a resumed run repeats it) and the scale is applied to that fit's std. The
    result's ``observation`` is the whole one, its ``calibration`` says how. The values are
    held out too for ``stop_rule="heldout"``, which watches them.
    """
    config = config or RunConfig()
    device = resolve_device(config.device)
    check_memory(config, observation.image_shape, device)
    calibration = config.resolved("calibration")
    if calibration == "none" and config.resolved("stop_rule") != "heldout":
        return _fit_once(observation, config, device, progress, validate, checkpoint, resume,
                         stop)
    fit_observation, held = hold_out(observation, config.heldout_fraction, config.seed)
    scored = result = _fit_once(fit_observation, config, device, progress, validate,
                                None if config.calibration_refit else checkpoint,
                                resume and not config.calibration_refit, stop, held)
    if config.calibration_refit:
        # an interruption of the held-out fit left no checkpoint: then start the refit afresh
        resume = resume and checkpoint is not None and checkpoint.path.exists()
        result = _fit_once(observation, config, device, progress, validate, checkpoint, resume,
                           stop)
    result.observation = observation
    if calibration == "none":
        return result
    if scored.prediction.measured_mean is None:
        warnings.warn(
            f"the {config.method} method's predictive has no measured summaries, so its std "
            "was not recalibrated: give RunningMoments.add the measure(model, image) of each "
            "image, or use `calibration=none`",
            stacklevel=2,
        )
        return result
    result.calibration = recalibrate(
        scored.prediction, scored.model.likelihood, observation.observation, held,
        calibration, config.calibration_coverage, censored_range(observation),
    )
    result.prediction = rescaled(result.prediction, result.calibration.scale)
    return result


def _fit_once(observation, config, device, progress, validate, checkpoint, resume, stop,
              heldout=None):
    """One fit of ``config`` to ``observation``, seeded from ``config.seed``."""
    sampler = METHODS[config.method].sampler(
        config.steps, config.resolved("lr"), variant=config.sgld, burn_in=config.burn_in,
        sample_every=config.sample_every,
    )
    pyro.set_rng_seed(config.seed)
    model, guide = build(config, observation)
    model.to(device)
    guide.to(device)
    return fit_model(
        model, guide, observation, training(config), sampler=sampler, progress=progress,
        validate=validate, checkpoint=checkpoint, resume=resume, stop=stop,
        fingerprint=config.to_json(), config=config, heldout=heldout,
    )
