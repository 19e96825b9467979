"""One reconstruction from a run config: the one place where a :class:`RunConfig` becomes
objects (model and guide: :func:`build_model`; method, training settings) for
:func:`pyrodip.infer.loop.fit_model`.

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

from ..bayes.censored import censored_range
from ..bayes.guides import WeightGuide, make_guide
from ..bayes.image_priors import make_image_prior
from ..bayes.likelihoods import GaussianLikelihood
from ..bayes.model import BayesianDIP
from ..bayes.networks import NetConfig
from ..bayes.noise_likelihoods import noise_likelihood
from ..bayes.sure import SureDivergence
from ..errors import InvalidInputError
from ..infer.batched import fit_generator, fit_models
from ..infer.checkpoints import Checkpointing
from ..infer.fitting import FitResult, Training
from ..infer.loop import fit_model
from ..infer.methods import METHODS
from ..infer.predictive import measure
from ..infer.recalibration import recalibrate, rescaled
from ..physics.observation import Observation, hold_out
from .config import RunConfig
from .ensemble import combined, member_configs
from .resources import check_memory


def resolve_device(name: str) -> torch.device:
    """``cpu``, ``cuda`` or ``cuda:N``; refuses CUDA when this machine has none."""
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise InvalidInputError(
            f"device {name!r} requested but CUDA is not available: use `device=cpu`"
        )
    return torch.device(name)


def build_model(config: RunConfig, observation: Observation) -> tuple[BayesianDIP, WeightGuide]:
    """The model and guide that ``config`` describes for ``observation``, exactly as
    ``pyrodip run`` (and :func:`fit`) builds them, on the CPU: every setting the config leaves
    to its method (guide, temperature, dropout, the guide's initialisation) resolved. Seed first
    (``pyro.set_rng_seed(config.seed)``) for the weights of a run.

    >>> import torch
    >>> from pyrodip import Observation, RunConfig, build_model
    >>> obs = Observation.simulate(torch.rand(1, 32, 32), noise=0.1, seed=0)
    >>> model, guide = build_model(RunConfig(), obs)
    >>> model.prior.spec(), model.temperature, model.jitter, type(guide).__name__
    ('normal:0.1', 0.1, 0.03, 'MeanFieldGuide')
    """
    likelihood = noise_likelihood(
        observation.noise,
        learn=config.noise_level == "learned",
        heteroscedastic=config.noise_level == "heteroscedastic",
    )
    if config.censoring == "auto" and isinstance(likelihood, GaussianLikelihood):
        likelihood.censored = censored_range(observation)
    name, _, arguments = config.prior.partition(":")  # NAME or NAME::ARG... (see RunConfig)
    sure = None
    if config.data_term == "sure":  # the network's input is y; held-out values hidden
        mask = getattr(observation.operator, "observed_mask", None)
        sure = SureDivergence(observation.observation[None], mask)
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
        image_prior=make_image_prior(config.image_prior, config),
        sure=sure,
    )
    guide = make_guide(
        config.resolved("guide"), model, init_loc=config.resolved("init_loc"),
        init_scale=config.resolved("init_scale"),
    )
    return model, guide


def temperature(config: RunConfig, observation: Observation) -> float:
    """The posterior temperature of ``config`` for ``observation``: its own, or its method's
    (for ``mfvi-paper``, the one its beta implies at this image's size and noise level: for
    speckle, the std in the log domain, where its likelihood is Gaussian)."""
    if config.temperature is not None:
        return config.temperature
    noise = observation.noise
    noise_std = noise.std if noise.name in ("gaussian", "speckle") else None
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
        lr_decay=config.resolved("lr_decay"),
        average=config.resolved("average"),
        readout=config.resolved("readout"),
        capture=config.capture,
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

    With ``config.ensemble`` K > 1, K members fit the same observation (and held-out values)
    with their own fit seeds, one after another, or as one batch on a GPU where
    :func:`batchable`; their mixture (:mod:`pyrodip.run.ensemble`) is calibrated as one fit's
    predictive. An ensemble keeps no checkpoint and cannot be resumed.
    """
    config = config or RunConfig()
    device = resolve_device(config.device)
    check_memory(config, observation.image_shape, device)
    calibration = config.resolved("calibration")
    if config.ensemble > 1:
        return _fit_ensemble(observation, config, device, progress, validate, resume, stop)
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
    return _recalibrated(result, scored, observation, held, config)


def _recalibrated(result: FitResult, scored: FitResult, observation: Observation, held,
                  config: RunConfig) -> FitResult:
    """``result`` with its std rescaled by ``config``'s calibration, scored on the values
    ``held`` out of the fit ``scored``."""
    calibration = config.resolved("calibration")
    if calibration == "none":
        return result
    if scored.prediction.measured_mean is None:
        warnings.warn(
            f"the {config.method} method's predictive has no measured summaries, so its std "
            "was not recalibrated: give RunningMoments.add the measure(model, image) of each "
            "image, or use `calibration=none`",
            stacklevel=3,
        )
        return result
    samples = scored.prediction.samples  # kept: the held-out values' mixture predictive
    if samples is not None:
        samples = torch.stack([measure(scored.model, image) for image in samples])
    result.calibration = recalibrate(
        scored.prediction, scored.model.likelihood, observation.observation, held,
        calibration, config.calibration_coverage, censored_range(observation), samples,
    )
    result.prediction = rescaled(result.prediction, result.calibration.scale)
    return result


def _fit_ensemble(observation, config, device, progress, validate, resume, stop):
    """:func:`fit` of an ensemble (``config.ensemble`` > 1): the members, then the mixture."""
    if resume:
        raise InvalidInputError(f"an ensemble (ensemble={config.ensemble}) keeps no checkpoint "
                                "to resume: run it again without resuming")
    configs = member_configs(config)
    batched = (device.type == "cuda" and not config.capture
               and batchable(configs[0]) is None)
    if batched:
        check_memory(configs[0], observation.image_shape, device, fits=len(configs))
    holds = (config.resolved("calibration") != "none"
             or config.resolved("stop_rule") == "heldout")
    fit_observation, held = (hold_out(observation, config.heldout_fraction, config.seed)
                             if holds else (observation, None))

    def members(obs, heldout):
        if not batched:
            return combined([_fit_once(obs, member, device, progress, validate, None, False,
                                       stop, heldout) for member in configs], config)
        results = _fit_batch_once([obs] * len(configs), configs, device, progress, stop,
                                  [heldout] * len(configs))
        results = [  # a member that diverged in the batch is fitted again on its own
            _fit_once(obs, member, device, False, validate, None, False, stop, heldout)
            if result.status == "diverged" else result
            for result, member in zip(results, configs, strict=True)
        ]
        return combined(results, config, batched=True)

    scored = result = members(fit_observation, held)
    if not holds:
        return result
    if config.calibration_refit:
        result = members(observation, None)
    result.observation = observation
    return _recalibrated(result, scored, observation, held, config)


#: The settings in which the fits of one batch may differ (the slice: of one volume).
BATCH_VARIES = ("seed", "prior_scale", "temperature", "slice_index")


def batchable(config: RunConfig) -> str | None:
    """Why fits of ``config`` cannot run in a batch (:func:`fit_batch`), or None."""
    if config.ensemble > 1:
        return "an ensemble fits its members in a batch of its own"
    if METHODS[config.method].sampler(config.steps, 0.01) is not None:
        return f"method {config.method} samples with its own optimiser steps (SGLD)"
    if config.local_reparam or config.engine == "pyro":
        return "a batch runs the fast engine (no local reparameterisation, not `engine=pyro`)"
    if config.data_term == "sure":
        return "data_term=sure draws its probe from the global generator, not a fit's own"
    return None


def fit_batch(
    observations: list[Observation], configs: list[RunConfig], *, progress: bool = True,
    stop: threading.Event | None = None,
) -> list[FitResult]:
    """:func:`fit` of each observation with its config, the fits run as one batched
    computation (:mod:`pyrodip.infer.batched`): on a GPU, 16 small fits take 2.7 times one
    fit's step (docs/performance.md). The configs may differ in ``seed``, ``prior_scale``,
    ``temperature`` and ``slice_index`` (and the observations in their values); everything
    else must be equal. A fit that diverges in the batch is fitted again on its own (where it
    is rolled back), so every result is the one :func:`fit` gives, up to float rounding. Each
    result's ``wall_time_s`` is the batch's. A batch keeps no checkpoint.

    >>> import torch
    >>> from pyrodip import Observation, RunConfig
    >>> configs = [RunConfig(steps=3, samples=2, seed=seed) for seed in (0, 1)]
    >>> observations = [Observation.simulate(torch.rand(1, 32, 32), noise=0.1, seed=config.seed)
    ...                 for config in configs]
    >>> [result.config.seed for result in fit_batch(observations, configs, progress=False)]
    [0, 1]
    """
    if len(observations) != len(configs) or not configs:
        raise InvalidInputError("a batch needs one observation per config, and at least one")
    first = configs[0]
    for config in configs:
        reason = batchable(config)
        if reason is not None:
            raise InvalidInputError(f"these fits cannot run in a batch: {reason}; use `batch=1`")
        if config.replace(**{key: getattr(first, key) for key in BATCH_VARIES}) != first:
            raise InvalidInputError(
                f"the batch's configs differ in more than {', '.join(BATCH_VARIES)}: batch "
                "only fits of one kind"
            )
    device = resolve_device(first.device)
    check_memory(first, observations[0].image_shape, device, fits=len(configs))
    calibration = first.resolved("calibration")
    holds = calibration != "none" or first.resolved("stop_rule") == "heldout"
    held = [hold_out(obs, config.heldout_fraction, config.seed) if holds else (obs, None)
            for obs, config in zip(observations, configs, strict=True)]
    fitted = [obs for obs, _ in held]
    heldouts = [values for _, values in held]
    scored = results = _fit_batch_once(fitted, configs, device, progress, stop, heldouts)
    if holds and first.calibration_refit:
        results = _fit_batch_once(observations, configs, device, progress, stop)
    final = []
    for index, (observation, config) in enumerate(zip(observations, configs, strict=True)):
        if results[index].status == "diverged" or scored[index].status == "diverged":
            final.append(fit(observation, config, progress=False))
            continue
        result = results[index]
        result.observation = observation
        final.append(_recalibrated(result, scored[index], observation, heldouts[index], config))
    return final


def _fit_batch_once(observations, configs, device, progress, stop, heldouts=None):
    """One batched fit of each config to its observation, each built under its seed."""
    models, guides, generators = [], [], []
    for observation, config in zip(observations, configs, strict=True):
        pyro.set_rng_seed(config.seed)
        model, guide = build_model(config, observation)
        models.append(model.to(device))
        guides.append(guide.to(device))
        generators.append(fit_generator(device))
    return fit_models(models, guides, observations, generators, training(configs[0]),
                      progress=progress, stop=stop, configs=configs, heldouts=heldouts)


def _fit_once(observation, config, device, progress, validate, checkpoint, resume, stop,
              heldout=None):
    """One fit of ``config`` to ``observation``, seeded from ``config.seed``."""
    sampler = METHODS[config.method].sampler(  # with the settings the method declares
        config.steps, config.resolved("lr"),
        **{option.name: getattr(config, option.name) for option in METHODS.options(config.method)},
    )
    pyro.set_rng_seed(config.seed)
    model, guide = build_model(config, observation)
    model.to(device)
    guide.to(device)
    return fit_model(
        model, guide, observation, training(config), sampler=sampler, progress=progress,
        validate=validate, checkpoint=checkpoint, resume=resume, stop=stop,
        fingerprint=config.to_json(), config=config, heldout=heldout,
    )
