"""Bayesian optimisation of run settings (the prior's scale, the temperature, ...) with BoTorch.

A :class:`Study` declares the settings to tune as :class:`Param` ranges, the objective and
the budget; :func:`optimize` runs it: an initial design (scrambled Sobol, or fixed points),
then rounds of ``batch`` candidates proposed by a GP (``SingleTaskGP`` on inputs scaled to
[0, 1], log-scaled settings in log10, standardised outcomes, a learned noise level) and
``qLogNoisyExpectedImprovement``, with the trials still running as ``X_pending``. Each trial
is one fit (:class:`FitObjective`), run by an executor (:mod:`pyrodip.studies.execution`).

The study folder holds ``study.json`` (the settings), ``trials.jsonl`` (one line when a trial
is submitted, one when it finishes, each flushed to disk at once), and at the end ``bo.nc``,
``gp.png`` and ``best.png``; :func:`resume` continues an interrupted study from them.

>>> Param.parse("prior_scale=0.01:0.4:log")
Param(name='prior_scale', low=0.01, high=0.4, log=True)
>>> round(Param.parse("prior_scale=0.01:1:log").from_unit(0.5), 6)
0.1
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import json
import math
import os
import typing
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import xarray as xr
from torch import Tensor
from tqdm.auto import tqdm

from .. import __version__
from ..errors import InvalidInputError, MissingFileError, PyrodipError
from ..io.files import atomic_path
from ..io.results import read_dataset, write_dataset
from .config import RunConfig
from .execution import Executor, SyncExecutor, run_trial

#: What a trial maximises: PSNR or SSIM of the smoothed image against the truth at the last
#: step, the best PSNR over the steps, or the predictive log-likelihood of held-out pixels.
OBJECTIVES = ("psnr", "psnr-best", "ssim", "heldout")
#: Share of the observed pixels the ``heldout`` objective hides from the fit.
HELDOUT_FRACTION = 0.1
#: Settings that define the simulated observation itself, so not tunable.
FIXED_SETTINGS = ("noise_std", "photons")
#: Starting points of the acquisition optimiser, and the random points they are picked from.
NUM_RESTARTS = 10
RAW_SAMPLES = 512
#: Quasi-Monte Carlo samples of the acquisition function.
MC_SAMPLES = 256
#: Successful trials the GP needs; until then candidates continue the Sobol sequence.
MIN_GP_TRIALS = 2
#: Points per axis of the grid on which bo.nc stores the GP and the acquisition (1-D, 2-D).
GRID_POINTS = {1: 200, 2: 40}
STUDY_FILE, TRIALS_FILE, RESULT_FILE = "study.json", "trials.jsonl", "bo.nc"

_DTYPE = torch.float64


def tunable_settings() -> tuple[str, ...]:
    """The RunConfig settings a study can tune: its float ones but :data:`FIXED_SETTINGS`.

    >>> tunable_settings()[:3]
    ('prior_scale', 'temperature', 'kl_weight')
    """
    hints = typing.get_type_hints(RunConfig)
    return tuple(
        name for name, kind in hints.items()
        if float in (typing.get_args(kind) or (kind,)) and name not in FIXED_SETTINGS
    )


@dataclass(frozen=True)
class Param:
    """A setting to tune over [low, high], searched in log10 space when ``log``.

    >>> Param.parse("lr=0.001:0.1:log").to_unit(0.01)
    0.5
    >>> Param.parse("prior_scale=0.4:0.01")
    Traceback (most recent call last):
    ...
    pyrodip.errors.InvalidInputError: --param prior_scale: low 0.4 must be below high 0.01
    """

    name: str
    low: float
    high: float
    log: bool = False

    def __post_init__(self) -> None:
        valid = tunable_settings()
        if self.name not in valid:
            close = difflib.get_close_matches(self.name, valid, n=1)
            hint = f"did you mean {close[0]!r}?" if close else f"choose one of {', '.join(valid)}"
            raise InvalidInputError(f"--param: {self.name!r} is not a tunable setting ({hint})")
        for bound in (self.low, self.high):
            if isinstance(bound, bool) or not isinstance(bound, int | float):
                raise InvalidInputError(f"--param {self.name}: bounds must be numbers")
            if not math.isfinite(bound):
                raise InvalidInputError(f"--param {self.name}: bounds must be finite")
        if not self.low < self.high:
            raise InvalidInputError(
                f"--param {self.name}: low {self.low:g} must be below high {self.high:g}"
            )
        if self.log and self.low <= 0:
            raise InvalidInputError(
                f"--param {self.name}: a log scale needs low > 0, got {self.low:g} (drop :log "
                "or raise low)"
            )

    @classmethod
    def parse(cls, text: str) -> Param:
        """``NAME=LOW:HIGH`` or ``NAME=LOW:HIGH:log``."""
        name, equals, bounds = text.partition("=")
        parts = bounds.split(":")
        log = len(parts) == 3 and parts[2] == "log"
        if not equals or len(parts) not in (2, 3) or (len(parts) == 3 and not log):
            raise InvalidInputError(
                f"--param takes NAME=LOW:HIGH or NAME=LOW:HIGH:log, e.g. "
                f"prior_scale=0.01:0.4:log, got {text!r}"
            )
        try:
            low, high = float(parts[0]), float(parts[1])
        except ValueError:
            raise InvalidInputError(
                f"--param {name}: bounds must be numbers, got {bounds!r}"
            ) from None
        return cls(name.strip(), low, high, log)

    def spec(self) -> str:
        return f"{self.name}={self.low!r}:{self.high!r}" + (":log" if self.log else "")

    def _ends(self) -> tuple[float, float]:
        return (math.log10(self.low), math.log10(self.high)) if self.log else (self.low, self.high)

    def to_unit(self, value: float) -> float:
        """``value`` mapped to [0, 1] (linearly in log10 space when ``log``)."""
        low, high = self._ends()
        return ((math.log10(value) if self.log else value) - low) / (high - low)

    def from_unit(self, unit: float) -> float:
        """The setting at ``unit`` in [0, 1], clipped to [low, high] against rounding."""
        low, high = self._ends()
        value = low + float(unit) * (high - low)
        return min(max(10**value if self.log else value, self.low), self.high)


@dataclass(frozen=True)
class Study:
    """What a study tunes, against what, with which budget.

    The budget is ``init_points`` (or ``len(init)``) initial trials plus ``rounds`` rounds of
    ``batch`` candidates; ``batch`` is also how many trials run at once. ``seed`` seeds the
    Sobol design and each proposal (with the trial count), so a study is reproducible.
    """

    params: tuple[Param, ...] = (Param("prior_scale", 0.01, 0.4, log=True),)
    objective: str = "psnr"
    config: RunConfig = field(default_factory=RunConfig)
    init_points: int = 4
    init: tuple[tuple[float, ...], ...] = ()
    rounds: int = 10
    batch: int = 3
    seed: int = 0

    def __post_init__(self) -> None:
        names = [p.name for p in self.params]
        if not names:
            raise InvalidInputError("a study needs at least one --param")
        if len(set(names)) != len(names):
            raise InvalidInputError(f"--param names repeat: {', '.join(names)}")
        if self.objective not in OBJECTIVES:
            raise InvalidInputError(
                f"unknown objective {self.objective!r}: choose one of {', '.join(OBJECTIVES)}"
            )
        for key, lowest in (("init_points", 1), ("rounds", 0), ("batch", 1), ("seed", 0)):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < lowest:
                raise InvalidInputError(
                    f"{key.replace('_', '-')} must be an integer >= {lowest}, got {value!r}"
                )
        for point in self.init:
            if len(point) != len(self.params):
                raise InvalidInputError(
                    f"--init {','.join(map(str, point))}: give one value per --param "
                    f"({', '.join(names)}), comma-separated"
                )
            for p, value in zip(self.params, point, strict=True):
                if not p.low <= value <= p.high:
                    raise InvalidInputError(
                        f"--init: {p.name} = {value:g} lies outside [{p.low:g}, {p.high:g}]"
                    )
        for p in self.params:  # the bounds must make valid run settings
            self.config.replace(**{p.name: p.low})
            self.config.replace(**{p.name: p.high})

    @property
    def initial(self) -> int:
        """Trials in the initial design."""
        return len(self.init) or self.init_points

    @property
    def budget(self) -> int:
        return self.initial + self.rounds * self.batch

    def round_of(self, trial: int) -> int:
        """0 for the initial design, then 1, 2, ... per ``batch`` trials."""
        return 0 if trial < self.initial else 1 + (trial - self.initial) // self.batch

    def to_json(self) -> str:
        settings = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        settings["params"] = [p.spec() for p in self.params]
        settings["config"] = json.loads(self.config.to_json())
        settings["pyrodip_version"] = __version__
        return json.dumps(settings, indent=1)

    @classmethod
    def from_json(cls, text: str) -> Study:
        settings = json.loads(text)
        settings.pop("pyrodip_version", None)
        settings["params"] = tuple(Param.parse(spec) for spec in settings["params"])
        settings["config"] = RunConfig(**settings["config"])
        settings["init"] = tuple(tuple(point) for point in settings["init"])
        return cls(**settings)


def parse_init(texts: Sequence[str]) -> tuple[tuple[float, ...], ...]:
    """``--init`` values: one point per text, its values comma-separated in --param order.

    >>> parse_init(["0.01", "0.05"])
    ((0.01,), (0.05,))
    """
    try:
        return tuple(tuple(float(v) for v in text.split(",")) for text in texts)
    except ValueError:
        raise InvalidInputError(
            f"--init takes numbers, comma-separated in --param order, got {list(texts)}"
        ) from None


@dataclass
class Trial:
    """One evaluation: ``status`` is running, ok or failed (with ``error``)."""

    trial: int
    round: int
    params: dict[str, float]
    status: str = "running"
    objective: float = math.nan
    wall_time_s: float = math.nan
    error: str = ""


# --- the objective of a trial ----------------------------------------------------------------


@dataclass(frozen=True)
class FitObjective:
    """One trial: fit ``config`` with the trial's settings, return the ``objective``.

    Picklable, so that Dask can send it to the workers. Every trial uses ``config.seed``
    for the fit (the same network initialisation and noise for every setting).
    """

    config: RunConfig
    objective: str = "psnr"

    def __call__(self, params: dict[str, float]) -> float:
        from ..physics.observation import hold_out, prepare_observation
        from .run import fit

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
        from ..physics.observation import hold_out, prepare_observation

        observation = prepare_observation(self.config)
        if self.objective == "heldout":
            if observation.noise.name != "gaussian":
                raise InvalidInputError(
                    f"the heldout objective scores Gaussian noise, not {observation.noise.name}: "
                    "use --noise gaussian or a truth-based objective"
                )
            hold_out(observation, HELDOUT_FRACTION, seed=self.config.seed)
        elif not observation.has_truth:
            raise InvalidInputError(
                f"the {self.objective} objective needs the truth, and an --observed image has "
                "none: use --objective heldout"
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


# --- the loop --------------------------------------------------------------------------------


def optimize(
    study: Study,
    folder: str | os.PathLike,
    *,
    executor: Executor | None = None,
    evaluate: Callable[[dict[str, float]], float] | None = None,
    progress: bool = False,
    figures: bool = True,
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

    A synthetic objective, in-process (``tests/test_optimize.py`` runs such studies)::

        study = Study(params=(Param("prior_scale", 0.01, 0.4, log=True),), rounds=6, batch=1)
        bo = optimize(study, "runs/toy", evaluate=lambda p: -abs(p["prior_scale"] - 0.05))
        json.loads(bo.attrs["best"])["params"]  # {'prior_scale': 0.05...}
    """
    if evaluate is None:
        FitObjective(study.config, study.objective).check()
    create_study(study, folder)
    return resume(folder, executor=executor, evaluate=evaluate, progress=progress, figures=figures)


def create_study(study: Study, folder: str | os.PathLike) -> Path:
    """Write ``study``'s settings to ``folder``/study.json (the folder is created; it must not
    hold a study yet): :func:`resume` then runs it."""
    folder = Path(folder)
    if (folder / STUDY_FILE).exists():
        raise InvalidInputError(
            f"{folder} already holds a study: continue it with --resume {folder} or choose "
            "another --out"
        )
    folder.mkdir(parents=True, exist_ok=True)
    _write_study(study, folder)
    return folder


def resume(
    folder: str | os.PathLike,
    *,
    rounds: int | None = None,
    executor: Executor | None = None,
    evaluate: Callable[[dict[str, float]], float] | None = None,
    progress: bool = False,
    figures: bool = True,
) -> xr.Dataset:
    """Continue the study in ``folder``: trials that finished are kept, those submitted but
    not finished run again with their settings, then proposals continue as in an
    uninterrupted run. ``rounds`` changes the number of rounds (to extend a study)."""
    folder = Path(folder)
    study = load_study(folder)
    if rounds is not None:
        study = dataclasses.replace(study, rounds=rounds)
        _write_study(study, folder)
    return _run(study, folder, read_trials(folder), executor, evaluate, progress, figures)


def load_study(folder: str | os.PathLike) -> Study:
    """The settings of the study in ``folder``."""
    path = Path(folder) / STUDY_FILE
    if not path.is_file():
        raise MissingFileError(f"no study in {folder} ({STUDY_FILE} not found): check the path")
    return Study.from_json(path.read_text())


def read_trials(folder: str | os.PathLike) -> dict[int, Trial]:
    """The trials logged in ``folder``'s trials.jsonl, by number (a torn last line, from a
    crash while it was written, is ignored)."""
    path = Path(folder) / TRIALS_FILE
    trials: dict[int, Trial] = {}
    if not path.exists():
        return trials
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        event = record.pop("event")
        if event == "submitted":
            trials[record["trial"]] = Trial(**record)
        elif record["trial"] in trials:
            number = record.pop("trial")
            objective = record.pop("objective")
            trial = dataclasses.replace(trials[number], **record)
            trial.objective = math.nan if objective is None else objective
            trials[number] = trial
    return trials


def best_parameters(path: str | os.PathLike) -> dict[str, float]:
    """The best settings of a finished study (its ``bo.nc``, or the study folder).

    Apply them with ``config.replace(**best_parameters(path))``.
    """
    path = Path(path)
    if path.is_dir():
        path = path / RESULT_FILE
    if not path.is_file():
        raise MissingFileError(f"study result not found: {path} (give a bo.nc or its folder)")
    try:
        best = json.loads(read_dataset(path).attrs["best"])
    except (OSError, KeyError, ValueError):
        raise InvalidInputError(f"{path} is not a pyrodip bo.nc (no 'best' attribute)") from None
    if best is None:
        raise InvalidInputError(f"the study in {path} has no successful trial to take")
    return best["params"]


def _write_study(study: Study, folder: Path) -> None:
    with atomic_path(folder / STUDY_FILE) as tmp:
        tmp.write_text(study.to_json())


def _append(folder: Path, record: dict) -> None:
    """One line appended to trials.jsonl and forced to disk."""
    with open(folder / TRIALS_FILE, "a") as log:
        log.write(json.dumps(record) + "\n")
        log.flush()
        os.fsync(log.fileno())


def _run(study, folder, trials, executor, evaluate, progress, figures) -> xr.Dataset:
    if evaluate is None:
        evaluate = FitObjective(study.config, study.objective)
    executor = executor if executor is not None else SyncExecutor()
    running: dict = {}  # future -> Trial

    def submit(trial: Trial) -> None:
        running[executor.submit(run_trial, evaluate, trial.params)] = trial

    def propose() -> None:
        first = len(trials)
        if first < study.initial:  # the whole initial design at once
            count = study.initial - first
        else:  # keep ``batch`` trials running, within the budget
            count = min(study.budget - first, study.batch - len(running))
        if count <= 0:
            return
        candidates, gp = _candidates(study, trials, running.values(), first, count)
        if figures and gp is not None and len(study.params) <= 2:
            from ..plots import plot_bo_surface

            surface = _proposal_dataset(study, trials, *gp, candidates, len(running))
            plot_bo_surface(surface, folder / f"gp_trial{first:03d}.png")
        for offset, settings in enumerate(candidates):
            number = first + offset
            trial = Trial(number, study.round_of(number), settings)
            trials[number] = trial
            _append(folder, {"event": "submitted", "trial": number, "round": trial.round,
                             "params": trial.params})
            submit(trial)

    finished = [t for t in trials.values() if t.status != "running"]
    with tqdm(
        total=study.budget, initial=len(finished), desc="trials", unit="trial",
        disable=not progress,
    ) as bar:
        for trial in sorted(trials.values(), key=lambda t: t.trial):
            if trial.status == "running":
                submit(trial)
        propose()
        while running:
            for future in executor.next_completed():
                trial = running.pop(future)
                _record(trial, future)
                _append(folder, {"event": "finished", **_result_record(trial)})
                bar.update()
                bar.set_postfix(best=_best_observed_text(trials), refresh=False)
            propose()
    dataset = study_dataset(study, trials)
    write_dataset(dataset, folder / RESULT_FILE)
    if figures:
        from ..plots import plot_bo_progress, plot_bo_surface

        if "gp_mean" in dataset:
            plot_bo_surface(dataset, folder / "gp.png")
        plot_bo_progress(dataset, folder / "best.png")
    if not any(t.status == "ok" for t in trials.values()):
        first_error = next((t.error for t in trials.values() if t.error), "")
        raise PyrodipError(
            f"every trial failed (first error: {first_error}): see {folder / RESULT_FILE}"
        )
    return dataset


def _record(trial: Trial, future) -> None:
    """Fill in ``trial`` from its finished future: ok, or failed with the error."""
    try:
        value, trial.wall_time_s, error = future.result()
    except Exception as exc:  # the worker died, or the call never ran
        value, error = math.nan, " ".join(f"{type(exc).__name__}: {exc}".split())
    if not error and not math.isfinite(value):
        error = f"diverged: the objective is {value}"
    trial.status, trial.error = ("failed", error) if error else ("ok", "")
    trial.objective = value if not error else math.nan


def _result_record(trial: Trial) -> dict:
    objective = None if math.isnan(trial.objective) else trial.objective
    return {"trial": trial.trial, "status": trial.status, "objective": objective,
            "wall_time_s": trial.wall_time_s, "error": trial.error}


def _best_observed_text(trials: dict[int, Trial]) -> str:
    values = [t.objective for t in trials.values() if t.status == "ok"]
    return f"{max(values):.4g}" if values else "-"


def _settings(params: Sequence[Param], unit: Sequence[float]) -> dict[str, float]:
    return {p.name: p.from_unit(u) for p, u in zip(params, unit, strict=True)}


def _unit(params: Sequence[Param], trials) -> Tensor:
    """The trials' settings scaled to [0, 1], shaped (n, d)."""
    rows = [[p.to_unit(t.params[p.name]) for p in params] for t in trials]
    return torch.tensor(rows, dtype=_DTYPE).reshape(len(rows), len(params))


def _sobol(study: Study, first: int, count: int) -> Tensor:
    """Points ``first`` to ``first + count - 1`` of the study's scrambled Sobol sequence."""
    engine = torch.quasirandom.SobolEngine(len(study.params), scramble=True, seed=study.seed)
    return engine.draw(first + count, dtype=_DTYPE)[first:]


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
    x = _unit(study.params, ok)
    pending = _unit(study.params, running) if running else None
    d = len(study.params)
    with torch.random.fork_rng(devices=[]), _gp_context():
        torch.manual_seed(seed)
        model = _fit_gp(x, ok)
        acquisition = qLogNoisyExpectedImprovement(
            model, x, sampler=SobolQMCNormalSampler(torch.Size([MC_SAMPLES]), seed=seed),
            X_pending=pending,
        )
        points, _ = optimize_acqf(
            acquisition, torch.tensor([[0.0] * d, [1.0] * d], dtype=_DTYPE), q=count,
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


@contextlib.contextmanager
def _gp_context() -> Iterator[None]:
    """One torch thread (the GP's matrices are tiny: more threads only contend, with each
    other and with the fits) and quiet routine numerics: jitter added to a near-singular
    covariance (close trials), acquisition restarts that stopped early (BoTorch retries, then
    returns its best candidates all the same)."""
    from botorch.exceptions.warnings import OptimizationWarning
    from linear_operator.utils.warnings import NumericalWarning

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NumericalWarning)
            warnings.simplefilter("ignore", OptimizationWarning)
            warnings.filterwarnings("ignore", category=RuntimeWarning, module="botorch")
            yield
    finally:
        torch.set_num_threads(threads)


def _successful(trials: dict[int, Trial]) -> list[Trial]:
    return [trials[n] for n in sorted(trials) if trials[n].status == "ok"]


def _fit_gp(x: Tensor, ok: list[Trial]):
    """SingleTaskGP on (x, objective), outcomes standardised, noise learned; fitted by ML-II."""
    from botorch.fit import fit_gpytorch_mll
    from botorch.models import SingleTaskGP
    from gpytorch.mlls import ExactMarginalLogLikelihood

    y = torch.tensor([[t.objective] for t in ok], dtype=_DTYPE)
    model = SingleTaskGP(x, y)
    fit_gpytorch_mll(ExactMarginalLogLikelihood(model.likelihood, model))
    return model


def _best(model, x: Tensor, ok: list[Trial]) -> dict:
    """The evaluated point with the highest GP posterior mean."""
    with torch.no_grad():
        mean = model.posterior(x).mean[:, 0]
    trial = ok[int(mean.argmax())]
    return {"params": trial.params, "objective": float(mean.max()),
            "observed": trial.objective, "trial": trial.trial}


# --- results ---------------------------------------------------------------------------------


def study_dataset(
    study: Study, trials: dict[int, Trial], model=None, acquisition=None
) -> xr.Dataset:
    """The ``bo.nc`` dataset of ``trials``: over ``trial`` each setting, ``objective``,
    ``status``, ``round``, ``wall_time_s``, ``error``; for 1-D and 2-D studies the GP's
    posterior mean and std and the acquisition (log expected improvement of one more point)
    on a grid over ``grid_<setting>``; attribute ``best`` (JSON: the evaluated settings with
    the highest GP mean, that mean as ``objective``, the ``observed`` value and the ``trial``;
    ``null`` when no trial succeeded) and ``best_observed`` (the same for the highest value
    observed). Without ``model``, the GP is fitted on the successful trials."""
    shown = [trials[n] for n in sorted(trials)]
    ok = [t for t in shown if t.status == "ok"]
    data = {p.name: ("trial", [t.params[p.name] for t in shown]) for p in study.params}
    data.update({
        "objective": ("trial", np.array([t.objective for t in shown], dtype=float)),
        "status": ("trial", np.array([t.status for t in shown], dtype=str)),
        "round": ("trial", np.array([t.round for t in shown], dtype=int)),
        "wall_time_s": ("trial", np.array([t.wall_time_s for t in shown], dtype=float)),
        "error": ("trial", np.array([t.error for t in shown], dtype=str)),
    })
    coords = {"trial": [t.trial for t in shown]}
    best = best_observed = None
    if ok:
        top = max(ok, key=lambda t: t.objective)
        best_observed = {"params": top.params, "objective": top.objective,
                         "observed": top.objective, "trial": top.trial}
        best = best_observed
    if model is not None or len(ok) >= MIN_GP_TRIALS:
        with torch.random.fork_rng(devices=[]), _gp_context():
            torch.manual_seed(study.seed)
            if model is None:
                model = _fit_gp(_unit(study.params, ok), ok)
            best = _best(model, _unit(study.params, ok), ok)
            if len(study.params) <= 2:
                grid_data, grid_coords = _grid(study, model, acquisition, ok)
                data.update(grid_data)
                coords.update(grid_coords)
    attrs = {
        "objective_name": study.objective,
        "params": json.dumps([dataclasses.asdict(p) for p in study.params]),
        "best": json.dumps(best),
        "best_observed": json.dumps(best_observed),
        "study": study.to_json(),
        "config": study.config.to_json(),
        "pyrodip_version": __version__,
    }
    return xr.Dataset(data, coords=coords, attrs=attrs)


def _grid(study, model, acquisition, ok):
    """GP mean, std and acquisition on a regular grid (in each setting's own scale)."""
    from botorch.acquisition.logei import qLogNoisyExpectedImprovement
    from botorch.sampling import SobolQMCNormalSampler

    d = len(study.params)
    axis = torch.linspace(0, 1, GRID_POINTS[d], dtype=_DTYPE)
    units = torch.cartesian_prod(*[axis] * d).reshape(-1, d)
    if acquisition is None:  # the next proposal's: no trial running
        sampler = SobolQMCNormalSampler(torch.Size([MC_SAMPLES]), seed=study.seed)
        acquisition = qLogNoisyExpectedImprovement(
            model, _unit(study.params, ok), sampler=sampler
        )
    with torch.no_grad():
        posterior = model.posterior(units)
        mean = posterior.mean[:, 0]
        std = posterior.variance[:, 0].clamp_min(0).sqrt()
        acq = torch.cat([acquisition(chunk[:, None]) for chunk in units.split(400)])
    dims = tuple(f"grid_{p.name}" for p in study.params)
    shape = (GRID_POINTS[d],) * d
    data = {name: (dims, values.reshape(shape).numpy())
            for name, values in (("gp_mean", mean), ("gp_std", std), ("acquisition", acq))}
    coords = {dim: [p.from_unit(u) for u in axis] for dim, p in zip(dims, study.params,
                                                                      strict=True)}
    return data, coords


def summary(dataset: xr.Dataset, folder: Path, elapsed_s: float | None = None) -> str:
    """A few lines: trials, failures, the best settings and how to reuse them."""
    study = Study.from_json(dataset.attrs["study"])
    status = list(dataset["status"].values)
    ok, failed = status.count("ok"), status.count("failed")
    lines = [
        f"pyrodip bo: {len(status)} trials ({ok} ok, {failed} failed) of {study.config.task} on "
        f"{study.config.image}, objective {study.objective}, {study.config.steps} steps each"
    ]
    for key, label in (("best", "best (GP mean)"), ("best_observed", "best observed ")):
        best = json.loads(dataset.attrs[key])
        if best is not None:
            settings = "  ".join(f"{k}={v:.4g}" for k, v in best["params"].items())
            lines.append(
                f"  {label}  {settings}  objective {best['objective']:.4g} "
                f"(observed {best['observed']:.4g}, trial {best['trial']})"
            )
    if failed:
        first = next(e for e, s in zip(dataset["error"].values, status, strict=True) if s != "ok")
        lines.append(f"  first failure: {first}")
    took = f"time {elapsed_s:.1f} s; " if elapsed_s is not None else ""
    figures = "gp.png and best.png" if "gp_mean" in dataset else "best.png"
    lines.append(f"  {took}wrote {folder / RESULT_FILE}, {figures}")
    lines.append(f"  reuse: pyrodip run --prior-from {folder / RESULT_FILE} --image ...")
    return "\n".join(lines)
