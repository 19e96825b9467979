"""Every setting of a run in one validated dataclass, from Python, TOML or the command line.

>>> config = RunConfig(steps=500, prior="normal:0.1")
>>> config.prior, config.prior_scale
('normal', 0.1)
>>> RunConfig(stepz=5)
Traceback (most recent call last):
...
TypeError: RunConfig.__init__() got an unexpected keyword argument 'stepz'

A TOML file holds the same keys at top level (``steps = 500``, ``prior = "normal:0.1"``);
see ``experiments/ct_denoise.toml``.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

from ..bayes.guides import GUIDES
from ..bayes.networks import NORMALIZATIONS, PRESETS
from ..bayes.priors import PRIORS
from ..errors import InvalidInputError, MissingFileError
from ..infer.elbo import ENGINES
from ..infer.methods import METHODS, SGLD_VARIANTS
from ..infer.optimizers import OPTIMIZERS
from ..infer.recalibration import CALIBRATIONS, CONFORMAL_COVERAGE, HELDOUT_FRACTION
from ..infer.stopping import STOP_PATIENCE, STOP_RULES
from ..physics.noise import NOISE_MODELS
from ..physics.operators import SUPERRESOLUTION_FACTORS
from ..physics.tasks import TASKS
from ..plugins import load_plugins
from ..validation import choice, number, positive_setting

#: How the likelihood treats the noise level: the simulated (or stated) one, a point estimate
#: fitted with the weights, or one per pixel from an extra output channel (Gaussian only).
NOISE_LEVELS = ("known", "learned", "heteroscedastic")
#: Settings whose default depends on the method (None in RunConfig: see pyrodip.infer.methods).
METHOD_DEFAULTS = (
    "guide", "temperature", "optimizer", "weight_decay", "dropout", "lr", "init_loc", "init_scale",
    "calibration", "stop_rule",
)


@dataclass
class RunConfig:
    """The settings of one reconstruction. Defaults are the CPU demo's: the embedded CT slice,
    Gaussian noise 0.1, the small network, mean-field VI."""

    image: str = "sample:ct"
    size: int | None = None  # resize the image so that its longer side has this many pixels
    slice_index: int | None = None  # NIfTI volumes, DICOM series: the slice (None: the middle)
    volume_index: int | None = None  # 4-D NIfTI: the volume (needed when it holds several)
    observed: bool = False  # the image is the observation itself (no truth, no simulation)
    task: str = "denoise"
    noise: str = "gaussian"
    # gaussian and speckle; for ct, relative to the largest projection. None: 0.1 when
    # simulating, estimated from an observed image (pyrodip.physics.noise_estimate)
    noise_std: float | None = None
    photons: float | None = None  # poisson: expected counts at intensity 1 (None: as noise_std)
    factor: int = 4  # superres
    mask: str = "strokes"  # inpaint: PATH, random:FRACTION or strokes
    angles: int = 45  # ct: projections evenly over [0, 180) degrees
    method: str = "mfvi"
    net: str = "small"
    normalization: str = "batch"  # the network's: batch, none or scaled (see NORMALIZATIONS)
    prior: str = "normal"
    prior_scale: float = 0.1
    layer_priors: dict[str, str] = dataclasses.field(default_factory=dict)  # pattern -> prior
    guide: str | None = None  # None: the method's guide
    temperature: float | None = None  # T, the KL's weight (1: the ELBO); None: the method's
    noise_level: str = "known"  # known, learned or heteroscedastic (see NOISE_LEVELS)
    bayesian_batchnorm: bool = False
    init_loc: str | None = None  # None: the method's (pytorch, or normal:STD)
    init_scale: float | None = None  # None: the method's (0.01)
    local_reparam: bool = False  # mfvi: local reparameterisation as the gradient estimator
    dropout: float | None = None  # None: the method's (0.3 for mcdropout, else 0)
    optimizer: str | None = None  # None: the method's (adamw for mcdropout, else adam)
    lr: float | None = None  # None: the method's (0.01)
    weight_decay: float | None = None  # None: the method's (1e-4 for mcdropout, else 0)
    sgld: str = "adam"  # sgld variant: adam (the papers') or textbook (see pyrodip.infer.methods)
    burn_in: int | None = None  # sgld: steps before sampling (None: min(7000, steps // 2))
    sample_every: int = 50  # sgld: steps between posterior samples
    calibration: str | None = None  # none, scale or conformal (CALIBRATIONS); None: the method's
    calibration_coverage: float = CONFORMAL_COVERAGE  # what conformal calibration targets
    heldout_fraction: float = HELDOUT_FRACTION  # observed values held out to calibrate on
    calibration_refit: bool = False  # fit again on all observed values after calibrating
    stop_rule: str | None = None  # none, wmv or heldout (STOP_RULES); None: the method's
    stop_patience: int = STOP_PATIENCE  # steps without a new minimum before the rule stops
    steps: int = 1000
    samples: int = 25
    ema: float = 0.99
    jitter: float = 0.03
    device: str = "cpu"
    engine: str = "auto"
    seed: int = 0
    plugins: list[str] = dataclasses.field(default_factory=list)  # modules imported first

    def __post_init__(self) -> None:
        if not isinstance(self.plugins, list | tuple) or not all(
            isinstance(name, str) for name in self.plugins
        ):
            raise InvalidInputError(
                f"plugins must be a list of module names, e.g. ['my_priors'], got {self.plugins!r}"
            )
        self.plugins = list(self.plugins)
        load_plugins(self.plugins)  # before the names below are checked: they may add some
        for f in dataclasses.fields(self):  # e.g. from TOML: prior = 3
            value = getattr(self, f.name)
            if f.type in ("str", "str | None") and not (
                isinstance(value, str) or (value is None and f.type == "str | None")
            ):
                raise InvalidInputError(f"{f.name} must be a string, got {value!r}")
        # NAME[:SCALE[:ARG...]]: SCALE moves to prior_scale, leaving NAME or NAME::ARG...
        name, _, rest = self.prior.partition(":")
        scale, _, arguments = rest.partition(":")
        if scale:
            self.prior_scale = number("prior scale", scale)
        self.prior = f"{name}::{arguments}" if arguments else name
        choice("task", self.task, TASKS)
        choice("method", self.method, METHODS)
        choice("net", self.net, PRESETS)
        choice("normalization", self.normalization, NORMALIZATIONS)
        choice("prior", name, PRIORS)
        choice("noise_level", self.noise_level, NOISE_LEVELS)
        if self.optimizer is not None:
            choice("optimizer", self.optimizer, OPTIMIZERS)
        if self.guide is not None:
            choice("guide", self.guide.partition(":")[0], GUIDES)
        if self.calibration is not None:
            choice("calibration", self.calibration, CALIBRATIONS)
        for key in ("calibration_coverage", "heldout_fraction"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < 1:
                raise InvalidInputError(f"{key} must be a number in (0, 1), got {value!r}")
        if self.stop_rule is not None:
            choice("stop_rule", self.stop_rule, STOP_RULES)
        if self.resolved("stop_rule") == "heldout" and self.calibration_refit:
            raise InvalidInputError(
                "stop_rule=heldout watches held-out values, which a refit on all values lacks: "
                "drop calibration_refit"
            )
        choice("sgld variant", self.sgld, SGLD_VARIANTS)
        choice("engine", self.engine, ENGINES)
        choice("noise", self.noise, NOISE_MODELS)
        factor = self.factor
        if isinstance(factor, bool) or not isinstance(factor, int) or (
            factor not in SUPERRESOLUTION_FACTORS
        ):
            raise InvalidInputError(
                "super-resolution factor must be one of "
                f"{', '.join(map(str, SUPERRESOLUTION_FACTORS))}, got {self.factor!r}"
            )
        for key in ("noise_std", "photons", "prior_scale", "init_scale", "lr"):
            if getattr(self, key) is not None:
                positive_setting(key, getattr(self, key))
        optional = tuple(key for key in ("size", "burn_in") if getattr(self, key) is not None)
        for key in ("steps", "samples", "angles", "sample_every", "stop_patience", *optional):
            value = getattr(self, key)
            lowest, what = (0, "an integer >= 0") if key == "burn_in" else (1, "a positive integer")
            if isinstance(value, bool) or not isinstance(value, int) or value < lowest:
                raise InvalidInputError(f"{key} must be {what}, got {value!r}")
        optional = tuple(
            key for key in ("temperature", "weight_decay", "dropout")
            if getattr(self, key) is not None
        )
        for key in ("jitter", *optional):
            value = getattr(self, key)
            if not (isinstance(value, int | float) and math.isfinite(value) and value >= 0):
                raise InvalidInputError(f"{key} must be a number >= 0, got {value!r}")
        if self.method == "sgld" and self.burn_in is not None and self.burn_in >= self.steps:
            raise InvalidInputError(
                f"burn_in ({self.burn_in}) must be below steps ({self.steps}): sgld collects "
                "its samples after the burn-in"
            )
        if self.dropout is not None and self.dropout >= 1:
            raise InvalidInputError(f"dropout must be in [0, 1), got {self.dropout!r}")
        if not isinstance(self.layer_priors, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in self.layer_priors.items()
        ):
            raise InvalidInputError(
                f"layer_priors must map layer-name patterns to prior specs, e.g. "
                f"{{'net.head.*' = 'laplace:0.05'}}, got {self.layer_priors!r}"
            )
        for key in ("bayesian_batchnorm", "observed", "local_reparam", "calibration_refit"):
            if not isinstance(getattr(self, key), bool):
                raise InvalidInputError(f"{key} must be true or false, got {getattr(self, key)!r}")
        for key in ("slice_index", "volume_index"):
            value = getattr(self, key)
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int) or value < 0
            ):
                name = key.removesuffix("_index")
                raise InvalidInputError(f"{name} must be an integer >= 0, got {value!r}")
        if not (isinstance(self.ema, int | float) and 0 <= self.ema < 1):
            raise InvalidInputError(f"ema must be in [0, 1), got {self.ema!r}")
        if not re.fullmatch(r"cpu|cuda(:[0-9]+)?", self.device):
            raise InvalidInputError(f"unknown device {self.device!r}: use cpu, cuda or cuda:N")
        seed = self.seed
        if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**32:
            raise InvalidInputError(f"seed must be an integer from 0 to {2**32 - 1}, got {seed!r}")

    def resolved(self, key: str):
        """The setting ``key``, or the method's default for it when it is None.

        >>> RunConfig(method="mcdropout").resolved("dropout")
        0.3
        """
        value = getattr(self, key)
        return getattr(METHODS[self.method], key) if value is None else value

    def replace(self, **changes: object) -> RunConfig:
        """A copy with some settings changed; unknown keys are refused with a suggestion."""
        _check_keys(changes)
        return dataclasses.replace(self, **changes)

    def to_json(self) -> str:
        """The settings as JSON (``plugins`` only when there are some, so that runs without
        plugins keep the JSON they always had)."""
        settings = dataclasses.asdict(self)
        if not settings["plugins"]:
            del settings["plugins"]
        return json.dumps(settings, sort_keys=True)

    @classmethod
    def from_toml(cls, path: str | Path, **overrides: object) -> RunConfig:
        """Read the settings from a TOML file; ``overrides`` (e.g. from the CLI) win."""
        settings = read_toml(path, "config file")
        settings.update(overrides)
        _check_keys(settings, source=f"config file {path}")
        return cls(**settings)


def read_toml(path: str | Path, what: str) -> dict:
    """The TOML file ``path`` as a dict; ``what`` names it in errors (e.g. "config file")."""
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"{what} not found: {path} (check the path)")
    try:
        return tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise InvalidInputError(f"{what} {path} is not valid TOML: {error}") from None


#: Settings of earlier versions -> what replaced them.
RENAMED = {"kl_weight": "'temperature' (the same number: the KL term's weight, 1 = the ELBO)"}


def _check_keys(settings: dict, source: str = "settings") -> None:
    valid = [f.name for f in dataclasses.fields(RunConfig)]
    for key in settings:
        if key in RENAMED:
            raise InvalidInputError(f"{key!r} in {source} is now {RENAMED[key]}")
        if key not in valid:
            close = difflib.get_close_matches(key, valid, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else f" (valid: {', '.join(valid)})"
            raise InvalidInputError(f"unknown key {key!r} in {source}{hint}")
