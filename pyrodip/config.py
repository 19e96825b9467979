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
import tomllib
from dataclasses import dataclass
from pathlib import Path

from .errors import InvalidInputError, MissingFileError
from .guides import GUIDES
from .networks import PRESETS
from .noise import NOISE_MODELS
from .operators import SUPERRESOLUTION_FACTORS
from .priors import PRIORS

TASKS = ("denoise", "superres", "inpaint", "ct")
#: How the likelihood treats the noise level: the simulated (or stated) one, a point estimate
#: fitted with the weights, or one per pixel from an extra output channel (Gaussian only).
NOISE_LEVELS = ("known", "learned", "heteroscedastic")
OPTIMIZERS = ("adam", "adamw")
#: method -> (default guide, default kl_weight)
#: mfvi's 0.3 is a tempered posterior: on the CT demo it kept the predictive mean about 2 dB
#: above w = 1 (see docs/concepts.md).
METHODS = {"mfvi": ("meanfield", 0.3), "dip": ("map", 0.0)}


@dataclass
class RunConfig:
    """The settings of one reconstruction. Defaults are the CPU demo's: the embedded CT slice,
    Gaussian noise 0.1, the small network, mean-field VI."""

    image: str = "sample:ct"
    slice_index: int | None = None  # NIfTI volumes: the slice (None: the middle one)
    observed: bool = False  # the image is the observation itself (no truth, no simulation)
    task: str = "denoise"
    noise: str = "gaussian"
    noise_std: float = 0.1  # gaussian and speckle; for ct, relative to the largest projection
    photons: float = 1000.0  # poisson: expected counts at intensity 1
    factor: int = 4  # superres
    mask: str = "strokes"  # inpaint: PATH, random:FRACTION or strokes
    angles: int = 45  # ct: projections evenly over [0, 180) degrees
    method: str = "mfvi"
    net: str = "small"
    prior: str = "normal"
    prior_scale: float = 0.1
    guide: str | None = None  # None: the method's guide
    kl_weight: float | None = None  # None: the method's (0.3 for mfvi, 0 for dip)
    noise_level: str = "known"  # known, learned or heteroscedastic (see NOISE_LEVELS)
    bayesian_batchnorm: bool = False
    init_loc: str = "pytorch"
    init_scale: float = 0.01
    optimizer: str = "adam"
    lr: float = 0.01
    weight_decay: float = 0.0
    steps: int = 1000
    samples: int = 25
    ema: float = 0.99
    jitter: float = 0.03
    device: str = "cpu"
    seed: int = 0

    def __post_init__(self) -> None:
        name, colon, scale = self.prior.partition(":")
        if colon:
            self.prior, self.prior_scale = name, _number("prior scale", scale)
        _choice("task", self.task, TASKS)
        _choice("method", self.method, METHODS)
        _choice("net", self.net, PRESETS)
        _choice("prior", self.prior, PRIORS)
        _choice("noise_level", self.noise_level, NOISE_LEVELS)
        _choice("optimizer", self.optimizer, OPTIMIZERS)
        if self.guide is not None:
            _choice("guide", self.guide, GUIDES)
        _choice("noise", self.noise, NOISE_MODELS)
        if self.factor not in SUPERRESOLUTION_FACTORS:
            raise InvalidInputError(
                "super-resolution factor must be one of "
                f"{', '.join(map(str, SUPERRESOLUTION_FACTORS))}, got {self.factor!r}"
            )
        for key in ("noise_std", "photons", "prior_scale", "init_scale", "lr"):
            _positive(key, getattr(self, key))
        for key in ("steps", "samples", "angles"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InvalidInputError(f"{key} must be a positive integer, got {value!r}")
        optional = ("kl_weight",) if self.kl_weight is not None else ()
        for key in ("weight_decay", "jitter", *optional):
            value = getattr(self, key)
            if not (isinstance(value, int | float) and math.isfinite(value) and value >= 0):
                raise InvalidInputError(f"{key} must be a number >= 0, got {value!r}")
        for key in ("bayesian_batchnorm", "observed"):
            if not isinstance(getattr(self, key), bool):
                raise InvalidInputError(f"{key} must be true or false, got {getattr(self, key)!r}")
        if self.slice_index is not None and (
            isinstance(self.slice_index, bool) or not isinstance(self.slice_index, int)
        ):
            raise InvalidInputError(f"slice must be an integer, got {self.slice_index!r}")
        if not (isinstance(self.ema, int | float) and 0 <= self.ema < 1):
            raise InvalidInputError(f"ema must be in [0, 1), got {self.ema!r}")
        if self.device != "cpu" and not self.device.startswith("cuda"):
            raise InvalidInputError(f"unknown device {self.device!r}: use cpu, cuda or cuda:N")

    @property
    def resolved_guide(self) -> str:
        return self.guide if self.guide is not None else METHODS[self.method][0]

    @property
    def resolved_kl_weight(self) -> float:
        return self.kl_weight if self.kl_weight is not None else METHODS[self.method][1]

    def replace(self, **changes: object) -> RunConfig:
        """A copy with some settings changed; unknown keys are refused with a suggestion."""
        _check_keys(changes)
        return dataclasses.replace(self, **changes)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_toml(cls, path: str | Path, **overrides: object) -> RunConfig:
        """Read the settings from a TOML file; ``overrides`` (e.g. from the CLI) win."""
        path = Path(path)
        if not path.is_file():
            raise MissingFileError(f"config file not found: {path} (check the path)")
        try:
            settings = tomllib.loads(path.read_text())
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
            raise InvalidInputError(f"config file {path} is not valid TOML: {error}") from None
        settings.update(overrides)
        _check_keys(settings, source=f"config file {path}")
        return cls(**settings)


def _check_keys(settings: dict, source: str = "settings") -> None:
    valid = [f.name for f in dataclasses.fields(RunConfig)]
    for key in settings:
        if key not in valid:
            close = difflib.get_close_matches(key, valid, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else f" (valid: {', '.join(valid)})"
            raise InvalidInputError(f"unknown key {key!r} in {source}{hint}")


def _choice(key: str, value: object, valid) -> None:
    if value not in valid:
        raise InvalidInputError(f"unknown {key} {value!r}: choose one of {', '.join(valid)}")


def _number(key: str, text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise InvalidInputError(f"{key} must be a number, got {text!r}") from None


def _positive(key: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidInputError(f"{key} must be a positive number, got {value!r}")
    if not (math.isfinite(value) and value > 0):
        raise InvalidInputError(f"{key} must be a positive number, got {value!r}")
