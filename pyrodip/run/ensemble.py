"""Ensembles of fits: K fits of one observation that differ only in their own randomness
(network input and initial weights, weight noise, jitter), combined as an equal-weight mixture.

Member k fits with the seed :func:`pyrodip.seeding.member_seed` gives (member 0: the run's own
seed, so it is the single fit of the run); the observation, its simulated noise, masks and
held-out values come from the run's seed and are the same for every member. The mixture of the
members' predictives has (the law of total variance)

- mean ``m = (1/K) sum_k m_k``;
- variance ``(1/K) sum_k v_k + (1/K) sum_k (m_k - m)^2``: the members' own (uncalibrated)
  variances plus the spread of their means, which carries the error a single posterior misses
  in the operator's null space; the spread's std is kept as ``std_between``.

:func:`pyrodip.fit` then rescales the mixture's std on the held-out values as for one fit.

>>> import torch
>>> from pyrodip.infer.predictive import Prediction
>>> def member(mean, std):
...     return Prediction(torch.full((1, 1, 1), mean), torch.full((1, 1, 1), std), None,
...                       torch.full((1, 1, 1), std), num_samples=4)
>>> mixed = mixture([member(0.0, 0.3), member(1.0, 0.4)])
>>> float(mixed.mean), round(float(mixed.std_total.square()), 4), float(mixed.std_between)
(0.5, 0.375, 0.5)
"""

from __future__ import annotations

import dataclasses

import torch
from torch import Tensor

from ..errors import InvalidInputError
from ..infer.fitting import FitResult
from ..infer.predictive import Prediction
from ..seeding import member_seed
from .config import RunConfig

__all__ = ["combined", "member_configs", "mixture"]


def member_configs(config: RunConfig) -> list[RunConfig]:
    """The configs of ``config``'s ``ensemble`` members: each a single fit (``ensemble=1``)
    with its member's seed (:func:`pyrodip.seeding.member_seed`); the first is ``config``'s own
    fit.

    >>> [c.seed for c in member_configs(RunConfig(seed=3, ensemble=2))][0]
    3
    """
    return [config.replace(seed=member_seed(config.seed, k), ensemble=1)
            for k in range(config.ensemble)]


def _mixed(values: list[Tensor]) -> tuple[Tensor, Tensor]:
    """The mean over the members (the first axis of the stack) and the population variance."""
    stacked = torch.stack(values)
    return stacked.mean(0), stacked.var(0, unbiased=False)


def mixture(predictions: list[Prediction]) -> Prediction:
    """The equal-weight mixture of the members' ``predictions`` (uncalibrated): mean of the
    means; epistemic variance the mean of the members' plus the variance of their means; the
    aleatoric variance (a heteroscedastic likelihood's) the mean of the members'; the measured
    summaries likewise; the samples, where every member kept them, all of them. See the module
    docstring for an example."""
    if not predictions:
        raise InvalidInputError("an ensemble needs at least one member: use `ensemble=1` or more")
    mean, between = _mixed([p.mean for p in predictions])
    epistemic = torch.stack([p.std_epistemic.square() for p in predictions]).mean(0) + between
    aleatoric = None
    if all(p.std_aleatoric is not None for p in predictions):
        aleatoric = torch.stack([p.std_aleatoric.square() for p in predictions]).mean(0)
    total = epistemic + (aleatoric if aleatoric is not None else 0)
    measured_mean = measured_std = None
    if all(p.measured_mean is not None for p in predictions):
        measured_mean, measured_between = _mixed([p.measured_mean for p in predictions])
        measured_var = torch.stack([p.measured_std.square() for p in predictions]).mean(0)
        measured_std = (measured_var + measured_between).sqrt()
    samples = None
    if all(p.samples is not None for p in predictions):
        samples = torch.cat([p.samples for p in predictions])
    return Prediction(
        mean=mean, std_epistemic=epistemic.sqrt(),
        std_aleatoric=None if aleatoric is None else aleatoric.sqrt(), std_total=total.sqrt(),
        num_samples=sum(p.num_samples for p in predictions), samples=samples,
        measured_mean=measured_mean, measured_std=measured_std, std_between=between.sqrt(),
    )


def combined(results: list[FitResult], config: RunConfig, batched: bool = False) -> FitResult:
    """One result for the ensemble ``config`` from its members' ``results`` (uncalibrated):
    the :func:`mixture` of their predictives, the means of their smoothed and readout images,
    each member's mean (``member_means``), the wall time of all (``batched``: of the one batch
    they ran in, which each result holds), every member's divergences
    (with its ``member`` index) and ``diverged`` if one diverged; the model, guide, curves
    and chosen step are the first member's (the run's own seed)."""
    first = results[0]
    readouts = {name: torch.stack([r.readouts[name] for r in results]).mean(0)
                for name in first.readouts if all(name in r.readouts for r in results)}
    diverged = any(r.status == "diverged" for r in results)
    return dataclasses.replace(
        first,
        prediction=mixture([r.prediction for r in results]),
        smoothed=torch.stack([r.smoothed for r in results]).mean(0),
        wall_time_s=max(r.wall_time_s for r in results) if batched
        else sum(r.wall_time_s for r in results),
        events=[{**event, "member": k} for k, r in enumerate(results) for event in r.events],
        status="diverged" if diverged else first.status,
        config=config,
        readouts=readouts,
        member_means=torch.stack([r.prediction.mean for r in results]),
    )
