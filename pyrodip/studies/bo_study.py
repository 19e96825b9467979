"""A Bayesian-optimisation study's settings (:class:`Study`, :class:`Param`), its trials
(:class:`Trial`) and its folder: ``study.json`` and ``trials.jsonl`` (one line when a trial is
submitted, one when it finishes, each flushed to disk at once). The loop is in
:mod:`pyrodip.studies.bo`.

>>> Param.parse("prior_scale=0.01:0.4:log")
Param(name='prior_scale', low=0.01, high=0.4, log=True)
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import InvalidInputError, MissingFileError
from ..io.files import atomic_path
from ..run.config import RunConfig, declared_settings
from ..version import __version__
from .execution import Failed

#: What a trial maximises: PSNR or SSIM of the smoothed image against the truth at the last
#: step, the best PSNR over the steps, or the predictive log-likelihood of held-out pixels.
OBJECTIVES = ("psnr", "psnr-best", "ssim", "heldout")
#: Settings that define the simulated observation itself, so not tunable.
FIXED_SETTINGS = ("noise_std", "photons")
STUDY_FILE, TRIALS_FILE, RESULT_FILE = "study.json", "trials.jsonl", "bo.nc"


def tunable_settings() -> tuple[str, ...]:
    """The run settings a study can tune: the float ones (a loaded plugin's too) but
    :data:`FIXED_SETTINGS`.

    >>> tunable_settings()[:3]
    ('prior_scale', 'temperature', 'init_scale')
    """
    return tuple(
        name for name, option in declared_settings().items()
        if option.type is float and name not in FIXED_SETTINGS
    )


@dataclass(frozen=True)
class Param:
    """A setting to tune over [low, high], searched in log10 space when ``log``.

    >>> Param.parse("lr=0.001:0.1:log").to_unit(0.01)
    0.5
    >>> Param.parse("prior_scale=0.4:0.01")
    Traceback (most recent call last):
    ...
    pyrodip.errors.InvalidInputError: `param` prior_scale: low 0.4 must be below high 0.01
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
            raise InvalidInputError(f"`param`: {self.name!r} is not a tunable setting ({hint})")
        for bound in (self.low, self.high):
            if isinstance(bound, bool) or not isinstance(bound, int | float):
                raise InvalidInputError(f"`param` {self.name}: bounds must be numbers")
            if not math.isfinite(bound):
                raise InvalidInputError(f"`param` {self.name}: bounds must be finite")
        if not self.low < self.high:
            raise InvalidInputError(
                f"`param` {self.name}: low {self.low:g} must be below high {self.high:g}"
            )
        if self.log and self.low <= 0:
            raise InvalidInputError(
                f"`param` {self.name}: a log scale needs low > 0, got {self.low:g} (drop :log "
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
                f"`param` takes NAME=LOW:HIGH or NAME=LOW:HIGH:log, e.g. "
                f"prior_scale=0.01:0.4:log, got {text!r}"
            )
        try:
            low, high = float(parts[0]), float(parts[1])
        except ValueError:
            raise InvalidInputError(
                f"`param` {name}: bounds must be numbers, got {bounds!r}"
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


#: The prior scales worth searching, per network normalisation (``docs/bo.md``): none for
#: BatchNorm, where the fitted posterior does not depend on the prior's scale.
PRIOR_SCALE_RANGES = {"none": (0.01, 0.3), "scaled": (0.1, 3.0)}
#: The temperatures worth searching (``docs/concepts.md``).
TEMPERATURE_RANGE = (0.03, 3.0)


def default_search(config: RunConfig) -> tuple[Param, ...]:
    """What a study tunes when it names nothing: the temperature (log scale) and, for a network
    in which the prior's scale acts (``normalization`` none or scaled), the prior's scale too.

    >>> [p.spec() for p in default_search(RunConfig())]
    ['temperature=0.03:3.0:log']
    >>> [p.spec() for p in default_search(RunConfig(normalization="scaled"))]
    ['temperature=0.03:3.0:log', 'prior_scale=0.1:3.0:log']
    """
    params = (Param("temperature", *TEMPERATURE_RANGE, log=True),)
    if config.normalization in PRIOR_SCALE_RANGES:
        params += (Param("prior_scale", *PRIOR_SCALE_RANGES[config.normalization], log=True),)
    return params


@dataclass(frozen=True)
class Study:
    """What a study tunes, against what, with which budget.

    The budget is ``init_points`` (or ``len(init)``) initial trials plus ``rounds`` rounds of
    ``batch`` candidates; ``batch`` is also how many trials run at once. ``seed`` seeds the
    Sobol design and each proposal (with the trial count), so a study is reproducible.
    ``batched``: the trials proposed together (the initial design, a round's candidates) are
    fitted as one batched computation (:func:`pyrodip.fit_batch`) on one worker; the study
    may then tune only :data:`~pyrodip.run.fit.BATCH_VARIES`.
    """

    params: tuple[Param, ...] | None = None  # None: default_search(config)
    objective: str = "psnr"
    config: RunConfig = field(default_factory=RunConfig)
    init_points: int = 4
    init: tuple[tuple[float, ...], ...] = ()
    rounds: int = 10
    batch: int = 3
    seed: int = 0
    batched: bool = False

    def __post_init__(self) -> None:
        if self.params is None:
            object.__setattr__(self, "params", default_search(self.config))
        names = [p.name for p in self.params]
        if not names:
            raise InvalidInputError("a study needs at least one `param`")
        if len(set(names)) != len(names):
            raise InvalidInputError(f"`param` names repeat: {', '.join(names)}")
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
                    f"`init` {','.join(map(str, point))}: give one value per `param` "
                    f"({', '.join(names)}), comma-separated"
                )
            for p, value in zip(self.params, point, strict=True):
                if not p.low <= value <= p.high:
                    raise InvalidInputError(
                        f"`init`: {p.name} = {value:g} lies outside [{p.low:g}, {p.high:g}]"
                    )
        for p in self.params:  # the bounds must make valid run settings
            self.config.replace(**{p.name: p.low})
            self.config.replace(**{p.name: p.high})
        if self.batched:
            self._check_batched()

    def _check_batched(self) -> None:
        from ..run.fit import BATCH_VARIES, batchable

        reason = batchable(self.config)
        if reason is not None:
            raise InvalidInputError(f"`batched`: {reason}; drop --batched")
        other = [p.name for p in self.params if p.name not in BATCH_VARIES]
        if other:
            raise InvalidInputError(
                f"`batched`: a batch's fits may differ only in {', '.join(BATCH_VARIES)}, and "
                f"the study tunes {other[0]}: drop --batched or that `param`"
            )

    @property
    def initial(self) -> int:
        """Trials in the initial design."""
        return len(self.init) or self.init_points

    @property
    def fits_at_once(self) -> int:
        """The most fits one batch holds: 1 unless ``batched``."""
        return max(self.initial, self.batch) if self.batched else 1

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
        settings["config"] = RunConfig(**settings["config"])  # its plugins may declare params
        settings["params"] = tuple(Param.parse(spec) for spec in settings["params"])
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
            f"`init` takes numbers, comma-separated in `param` order, got {list(texts)}"
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
    resumed_at: list[int] = field(default_factory=list)  # steps its fit resumed at


def create_study(study: Study, folder: str | os.PathLike) -> Path:
    """Write ``study``'s settings to ``folder``/study.json (the folder is created; it must not
    hold a study yet): :func:`resume` then runs it."""
    folder = Path(folder)
    if (folder / STUDY_FILE).exists():
        raise InvalidInputError(
            f"{folder} already holds a study: continue it with `resume={folder}` or choose "
            "another `out` folder"
        )
    folder.mkdir(parents=True, exist_ok=True)
    write_study(study, folder)
    return folder


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
        elif event == "resubmitted" and record["trial"] in trials:  # a failed trial, rerun
            trial = trials[record["trial"]]
            trials[trial.trial] = Trial(trial.trial, trial.round, trial.params)
        elif event == "finished" and record["trial"] in trials:
            number = record.pop("trial")
            objective = record.pop("objective")
            trial = dataclasses.replace(trials[number], **record)
            trial.objective = math.nan if objective is None else objective
            trials[number] = trial
    return trials


def write_study(study: Study, folder: Path) -> None:
    """Write the study's settings to ``folder/study.json``, atomically."""
    with atomic_path(folder / STUDY_FILE) as tmp:
        tmp.write_text(study.to_json())


def append_record(folder: Path, record: dict) -> None:
    """One line appended to trials.jsonl and forced to disk (after a line torn by a crash
    while it was written, on a line of its own)."""
    path = folder / TRIALS_FILE
    torn = False
    if path.exists() and path.stat().st_size > 0:
        with open(path, "rb") as log:
            log.seek(-1, os.SEEK_END)
            torn = log.read(1) != b"\n"
    with open(path, "a") as log:
        log.write(("\n" if torn else "") + json.dumps(record) + "\n")
        log.flush()
        os.fsync(log.fileno())


def trial_outcomes(task, count: int) -> list[tuple | Failed]:
    """The (value, wall time, error[, steps its fit resumed at]) of each of the ``count`` trials
    a finished task evaluated (one, or a batch), or its
    :class:`~pyrodip.studies.execution.Failed` outcome for each."""
    outcome = task.outcome
    if isinstance(outcome, Failed):
        return [outcome] * count
    return outcome if isinstance(outcome, list) else [outcome]


def record_outcome(trial: Trial, outcome: tuple | Failed) -> None:
    """Fill in ``trial`` from its outcome (:func:`trial_outcomes`): ok, or failed with the
    error."""
    if isinstance(outcome, Failed):
        value, error = math.nan, f"{outcome.error} (after {outcome.attempts} attempts)"
    else:
        value, trial.wall_time_s, error, *resumed = outcome
        trial.resumed_at = resumed[0] if resumed else []
    if not error and not math.isfinite(value):
        error = f"diverged: the objective is {value}"
    trial.status, trial.error = ("failed", error) if error else ("ok", "")
    trial.objective = value if not error else math.nan


def result_record(trial: Trial) -> dict:
    """The record of a finished trial, as trials.jsonl holds it."""
    objective = None if math.isnan(trial.objective) else trial.objective
    return {"trial": trial.trial, "status": trial.status, "objective": objective,
            "wall_time_s": trial.wall_time_s, "error": trial.error,
            "resumed_at": trial.resumed_at}
