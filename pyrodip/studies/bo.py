"""Bayesian optimisation of run settings (the prior's scale, the temperature, ...) with BoTorch.

A :class:`Study` declares the settings to tune as :class:`Param` ranges, the objective and
the budget; :func:`optimize` runs it: an initial design (scrambled Sobol, or fixed points),
then rounds of ``batch`` candidates proposed by a GP (``SingleTaskGP`` on inputs scaled to
[0, 1], log-scaled settings in log10, standardised outcomes, a learned noise level) and
``qLogNoisyExpectedImprovement``, with the trials still running as ``X_pending``. Each trial
is one fit (:class:`FitObjective`), run by an executor (:mod:`pyrodip.studies.execution`).

The study folder holds ``study.json`` (the settings), ``trials.jsonl`` (one line when a trial
is submitted, one when it finishes, each flushed to disk at once), and at the end ``bo.nc``,
``gp.png`` and ``best.png``, written as one set (:func:`write_results`); :func:`resume`
continues an interrupted study from them. A trial's fit keeps a checkpoint in the folder
(``trialNNN.checkpoint.pt``) and resumes from it when the trial runs again after a preemption,
a worker's death or an interrupted study (:func:`~pyrodip.studies.bo_objective.run_fit_trial`).

>>> Param.parse("prior_scale=0.01:0.4:log")
Param(name='prior_scale', low=0.01, high=0.4, log=True)
>>> round(Param.parse("prior_scale=0.01:1:log").from_unit(0.5), 6)
0.1
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
import xarray as xr
from torch import Tensor
from tqdm.auto import tqdm

from ..errors import PyrodipError
from ..infer.checkpoints import Checkpointing
from ..run.results import write_dataset
from .bo_objective import (
    HELDOUT_FRACTION,
    FitObjective,
    heldout_log_likelihood,
    run_fit_trial,
    score,
)
from .bo_results import (
    DTYPE,
    GRID_POINTS,
    MC_SAMPLES,
    MIN_GP_TRIALS,
    best_parameters,
    fit_gp,
    gp_context,
    study_dataset,
    summary,
    unit_points,
)
from .bo_study import (
    FIXED_SETTINGS,
    OBJECTIVES,
    RESULT_FILE,
    STUDY_FILE,
    TRIALS_FILE,
    Param,
    Study,
    Trial,
    append_record,
    create_study,
    load_study,
    parse_init,
    read_trials,
    record_outcome,
    result_record,
    trial_outcomes,
    tunable_settings,
    write_study,
)
from .execution import Executor, Retrying, SyncExecutor, run_trial, run_trials

__all__ = [
    "FIXED_SETTINGS", "GRID_POINTS", "HELDOUT_FRACTION", "MC_SAMPLES", "MIN_GP_TRIALS",
    "NUM_RESTARTS", "OBJECTIVES", "RAW_SAMPLES", "RESULT_FILE", "STUDY_FILE", "TRIALS_FILE",
    "FitObjective", "Param", "Study", "Trial", "best_parameters", "create_study",
    "heldout_log_likelihood", "load_study", "optimize", "parse_init", "read_trials", "resume",
    "score", "study_dataset", "summary", "tunable_settings", "write_results",
]

#: Starting points of the acquisition optimiser, and the random points they are picked from.
NUM_RESTARTS = 10
RAW_SAMPLES = 512


def optimize(
    study: Study,
    folder: str | os.PathLike,
    *,
    executor: Executor | None = None,
    evaluate: Callable[[dict[str, float]], float] | None = None,
    progress: bool = False,
    figures: bool = True,
    checkpoint_every: int | None = None,
) -> xr.Dataset:
    """Run ``study`` in ``folder`` (created; it must not hold a study) and return the
    ``bo.nc`` dataset.

    Args:
        executor: runs the trials (default :class:`~pyrodip.studies.execution.SyncExecutor`: one
            after another in this process); see :func:`pyrodip.studies.execution.dask_executor`.
        evaluate: the objective of one trial, settings -> number to maximise (default
            :class:`FitObjective` of the study's config and objective).
        progress: a progress bar over the trials.
        figures: write the GP figure of every proposal and ``gp.png``, ``best.png``.
        checkpoint_every: each trial's fit (:class:`FitObjective`, one fit per task) saves
            its state to ``folder/trialNNN.checkpoint.pt`` every this many steps (default
            every 5 minutes), to resume from when the trial runs again.

    A synthetic objective, in-process (``tests/studies/test_bo.py`` runs such studies)::

        study = Study(params=(Param("prior_scale", 0.01, 0.4, log=True),), rounds=6, batch=1)
        bo = optimize(study, "runs/toy", evaluate=lambda p: -abs(p["prior_scale"] - 0.05))
        json.loads(bo.attrs["best"])["params"]  # {'prior_scale': 0.05...}
    """
    if evaluate is None:
        FitObjective(study.config, study.objective).check(study.fits_at_once)
    create_study(study, folder)
    return resume(folder, executor=executor, evaluate=evaluate, progress=progress, figures=figures,
                  checkpoint_every=checkpoint_every)


def resume(
    folder: str | os.PathLike,
    *,
    rounds: int | None = None,
    executor: Executor | None = None,
    evaluate: Callable[[dict[str, float]], float] | None = None,
    progress: bool = False,
    figures: bool = True,
    retry_failed: bool = False,
    checkpoint_every: int | None = None,
) -> xr.Dataset:
    """Continue the study in ``folder``: trials that finished are kept, those submitted but
    not finished run again with their settings (a fit resumes from its checkpoint), then
    proposals continue as in an uninterrupted run. ``rounds`` changes the number of rounds (to
    extend a study); ``retry_failed`` runs the failed trials again with their settings (the
    proposals made since are kept); ``checkpoint_every`` as in :func:`optimize`."""
    folder = Path(folder)
    study = load_study(folder)
    if rounds is not None:
        study = dataclasses.replace(study, rounds=rounds)
        write_study(study, folder)
    trials = read_trials(folder)
    if retry_failed:
        for trial in [t for t in trials.values() if t.status == "failed"]:
            append_record(folder, {"event": "resubmitted", "trial": trial.trial})
        trials = read_trials(folder)
    return _run(study, folder, trials, executor, evaluate, progress, figures, checkpoint_every)


def _run(study, folder, trials, executor, evaluate, progress, figures,
         checkpoint_every) -> xr.Dataset:
    if evaluate is None:
        evaluate = FitObjective(study.config, study.objective)
    def retried(task) -> None:
        for trial in running[task]:
            append_record(folder, {"event": "retried", "trial": trial.trial,
                                   "error": task.errors[-1]})

    executor = Retrying(executor if executor is not None else SyncExecutor(), on_retry=retried)
    running: dict = {}  # task -> its trials
    together = study.batched and isinstance(evaluate, FitObjective)

    def submit(group: list[Trial]) -> None:
        if together and len(group) > 1:
            task = executor.submit(run_trials, evaluate.scores, [t.params for t in group])
            running[task] = group
            return
        for trial in group:
            if isinstance(evaluate, FitObjective):  # workers may run in another folder
                checkpoint = Checkpointing(folder.absolute() / f"trial{trial.trial:03d}"
                                           ".checkpoint.pt", every_steps=checkpoint_every)
                task = executor.submit(run_fit_trial, evaluate, trial.params, checkpoint)
            else:
                task = executor.submit(run_trial, evaluate, trial.params)
            running[task] = [trial]

    def propose() -> None:
        first = len(trials)
        busy = sum(map(len, running.values()))
        if first < study.initial:  # the whole initial design at once
            count = study.initial - first
        else:  # keep ``batch`` trials running, within the budget
            count = min(study.budget - first, study.batch - busy)
        if count <= 0:
            return
        pending = [t for group in running.values() for t in group]
        candidates, gp = _candidates(study, trials, pending, first, count)
        if figures and gp is not None and len(study.params) <= 2:
            from ..plots import plot_bo_surface

            surface = _proposal_dataset(study, trials, *gp, candidates, busy)
            plot_bo_surface(surface, folder / f"gp_trial{first:03d}.png")
        group = []
        for offset, settings in enumerate(candidates):
            number = first + offset
            trial = Trial(number, study.round_of(number), settings)
            trials[number] = trial
            append_record(folder, {"event": "submitted", "trial": number, "round": trial.round,
                             "params": trial.params})
            group.append(trial)
        submit(group)

    finished = [t for t in trials.values() if t.status != "running"]
    with tqdm(
        total=study.budget, initial=len(finished), desc="trials", unit="trial",
        disable=not progress,
    ) as bar:
        submit(sorted((t for t in trials.values() if t.status == "running"),
                      key=lambda t: t.trial))
        propose()
        while running:
            for task in executor.next_completed():
                group = running.pop(task)
                for trial, outcome in zip(group, trial_outcomes(task, len(group)), strict=True):
                    record_outcome(trial, outcome)
                    append_record(folder, {"event": "finished", **result_record(trial)})
                    bar.update()
                bar.set_postfix(best=_best_observed_text(trials), refresh=False)
            propose()
    dataset = study_dataset(study, trials)
    write_results(dataset, folder, figures)
    if not any(t.status == "ok" for t in trials.values()):
        first_error = next((t.error for t in trials.values() if t.error), "")
        raise PyrodipError(
            f"every trial failed (first error: {first_error}): see {folder / RESULT_FILE}"
        )
    return dataset


def write_results(dataset: xr.Dataset, folder: str | os.PathLike, figures: bool = True) -> None:
    """Write ``bo.nc`` and (``figures``) ``gp.png`` (1-D and 2-D studies) and ``best.png`` into
    ``folder`` together or not at all (:func:`pyrodip.io.files.result_set`)."""
    from ..io.files import result_set
    from ..plots import plot_bo_progress, plot_bo_surface

    with result_set(folder) as staging:
        write_dataset(dataset, staging / RESULT_FILE)
        if figures:
            if "gp_mean" in dataset:
                plot_bo_surface(dataset, staging / "gp.png")
            plot_bo_progress(dataset, staging / "best.png")


def _best_observed_text(trials: dict[int, Trial]) -> str:
    values = [t.objective for t in trials.values() if t.status == "ok"]
    return f"{max(values):.4g}" if values else "-"


def _settings(params: Sequence[Param], unit: Sequence[float]) -> dict[str, float]:
    return {p.name: p.from_unit(u) for p, u in zip(params, unit, strict=True)}


def _sobol(study: Study, first: int, count: int) -> Tensor:
    """Points ``first`` to ``first + count - 1`` of the study's scrambled Sobol sequence."""
    engine = torch.quasirandom.SobolEngine(len(study.params), scramble=True, seed=study.seed)
    return engine.draw(first + count, dtype=DTYPE)[first:]


def _candidates(study, trials, running, first: int, count: int):
    """The settings of ``count`` new trials from trial number ``first`` on, and (when the GP
    proposed them) the GP model and its acquisition function."""
    names = [p.name for p in study.params]
    if first < study.initial and study.init:
        return [dict(zip(names, point, strict=True)) for point in study.init[first:]], None
    ok = _successful(trials)
    if first < study.initial or len(ok) < MIN_GP_TRIALS:
        return [_settings(study.params, u) for u in _sobol(study, first, count)], None
    from botorch.acquisition.logei import qLogNoisyExpectedImprovement
    from botorch.optim import optimize_acqf
    from botorch.sampling import SobolQMCNormalSampler

    seed = study.seed * 100_003 + first
    x = unit_points(study.params, ok)
    pending = unit_points(study.params, running) if running else None
    d = len(study.params)
    with torch.random.fork_rng(devices=[]), gp_context():
        torch.manual_seed(seed)
        model = fit_gp(x, ok)
        acquisition = qLogNoisyExpectedImprovement(
            model, x, sampler=SobolQMCNormalSampler(torch.Size([MC_SAMPLES]), seed=seed),
            X_pending=pending,
        )
        points, _ = optimize_acqf(
            acquisition, torch.tensor([[0.0] * d, [1.0] * d], dtype=DTYPE), q=count,
            num_restarts=NUM_RESTARTS, raw_samples=RAW_SAMPLES, options={"seed": seed},
        )
    points = points.detach().clamp(0, 1)
    return [_settings(study.params, u) for u in points], (model, acquisition)


def _proposal_dataset(study, trials, model, acquisition, candidates, running: int):
    """What the figure of one proposal shows: the study so far (trials still running have
    status ``running``), the GP and acquisition that chose the candidates, ``candidate_*``."""
    surface = study_dataset(study, trials, model, acquisition)
    for p in study.params:
        surface[f"candidate_{p.name}"] = ("candidate", [c[p.name] for c in candidates])
    ok = int((surface["status"] == "ok").sum())
    surface.attrs["title"] = (
        f"round {study.round_of(len(trials))}: GP on {ok} trials, {running} running, "
        f"{len(candidates)} new"
    )
    return surface


def _successful(trials: dict[int, Trial]) -> list[Trial]:
    return [trials[n] for n in sorted(trials) if trials[n].status == "ok"]
