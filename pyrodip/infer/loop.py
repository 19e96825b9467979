"""Fitting a model and guide that you built: SVI steps on the negative ELBO (either engine of
:mod:`pyrodip.infer.elbo`), tracked step by step, checked for divergence, checkpointed and
resumable, then the posterior predictive.

The protocol: ``model`` is a Pyro model called as ``model(y)`` (y: the observation with a
batch dim of 1) that keeps the image it rendered, detached, as ``model.last_image``, has an
``operator`` (the forward operator A, for the data-fit curves) and a buffer or parameter on the
fit's device; ``render(jitter=False)`` draws an image (and log-variance or None) for the
posterior predictive. ``guide`` is a Pyro guide over the model's latent sites.
:class:`~pyrodip.bayes.model.BayesianDIP` and the guides of :mod:`pyrodip.bayes.guides` follow
it; :func:`pyrodip.fit` builds them from a run config and calls :func:`fit_model`.

>>> import torch
>>> from pyrodip import BayesianDIP, Observation, make_guide
>>> obs = Observation.simulate(torch.rand(1, 32, 32), noise=0.1, seed=0)
>>> model = BayesianDIP(obs.image_shape, operator=obs.operator)
>>> guide = make_guide("meanfield", model)
>>> result = fit_model(model, guide, obs, Training(steps=3, samples=2), progress=False)
>>> result.history.curves["loss"].shape, result.prediction.mean.shape, result.engine
((3,), torch.Size([1, 32, 32]), 'fast')
"""

from __future__ import annotations

import dataclasses
import json
import threading
from typing import Any

import pyro
from torch import Tensor

from ..errors import InvalidInputError
from ..physics.observation import Observation
from .checkpoints import Checkpointing, read_checkpoint
from .fitting import FitResult, Fitting, Training, model_device
from .methods import Sampler
from .stopping import check_stop_rule

__all__ = ["VALIDATE", "fit_model"]

#: Pyro's distribution and trace checks in :func:`fit_model` when its ``validate`` is None.
#: Off: they cost 20-50 % per step. The test suite turns them on.
VALIDATE = False


def fit_model(
    model: Any,
    guide: Any,
    observation: Observation,
    training: Training | None = None,
    *,
    sampler: Sampler | None = None,
    progress: bool = True,
    validate: bool | None = None,
    checkpoint: Checkpointing | None = None,
    resume: bool = False,
    stop: threading.Event | None = None,
    fingerprint: str | None = None,
    config: Any = None,
    heldout: Tensor | None = None,
) -> FitResult:
    """Fit ``guide`` (and the model's own parameters) to ``observation`` and summarise the
    posterior predictive. Model and guide must already be on the fit's device; seed the
    random number generators before building them for reproducible fits.

    A NaN or infinite loss or parameter (checked every
    :data:`~pyrodip.infer.fitting.CHECK_EVERY` steps) rolls the fit back to the last good state
    and multiplies the learning rate by :data:`~pyrodip.infer.fitting.LR_FACTOR`; after
    :data:`~pyrodip.infer.fitting.MAX_DIVERGENCES` such events the fit stops and returns what it
    had (``status="diverged"``). Every event is listed in ``FitResult.events``.

    Args:
        training: steps, optimiser, engine, smoothing and predictive samples.
        sampler: a method's work after each step (SGLD), which then gives the predictive.
        progress: show a progress bar with the loss and PSNR.
        validate: Pyro's distribution and trace checks (slow: for tests and debugging);
            None follows :data:`VALIDATE`.
        checkpoint: where and how often to save the fit's whole state (atomically).
        resume: continue from ``checkpoint.path`` instead of starting afresh; the result is
            the one an uninterrupted fit gives (identical on the CPU).
        stop: when set (e.g. by a SIGTERM handler), the fit saves a checkpoint (if
            ``checkpoint``) and raises :class:`~pyrodip.infer.checkpoints.Interrupted`.
        fingerprint: the settings a checkpoint must have been written with to be resumed
            (default: ``training``'s).
        config: kept as ``FitResult.config``.
        heldout: the observed values held out of the fit, a bool `(1, H', W')` tensor
            (True = held out; y's positions without its channels, see
            :func:`~pyrodip.physics.observation.hold_out`): their residual is tracked as the
            ``mse_heldout`` curve, which ``stop_rule="heldout"`` watches.

    Returns:
        A :class:`~pyrodip.infer.fitting.FitResult`, its prediction `(C, H, W)` tensors.
    """
    training = training or Training()
    if fingerprint is None:
        fingerprint = json.dumps(dataclasses.asdict(training), sort_keys=True)
    check_stop_rule(training.stop_rule, guide, sampler, heldout)
    fitting = Fitting(model, guide, observation, training, sampler, fingerprint, heldout)
    if resume:
        if checkpoint is None:
            raise InvalidInputError("resume needs checkpoint=Checkpointing(path) to read")
        fitting.load_state_dict(read_checkpoint(checkpoint.path, model_device(model)))
    with pyro.validation_enabled(VALIDATE if validate is None else validate):
        fitting.run(progress=progress, checkpoint=checkpoint, stop=stop)
        return fitting.result(config)
