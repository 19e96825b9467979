"""Every setting of a run in one validated :class:`RunConfig`, from Python, TOML or the command
line. The settings are declared (:class:`~pyrodip.settings.Option`): the general ones here
(:data:`GENERAL`), the others by the task, method, prior, guide or noise model they belong to,
with its registration (superres's ``factor``, sgld's ``burn_in``, a plugin task's
``kernel_size``); :func:`declared_settings` has them all.

>>> config = RunConfig(steps=500, prior="normal:0.1")
>>> config.prior, config.prior_scale, config.factor
('normal', 0.1, 4)
>>> RunConfig(stepz=5)
Traceback (most recent call last):
...
pyrodip.errors.InvalidInputError: unknown key 'stepz' in settings (did you mean 'steps'?)

A TOML file holds the same keys at top level (``steps = 500``, ``prior = "normal:0.1"``);
see ``experiments/ct_denoise.toml``.
"""

from __future__ import annotations

import difflib
import json
import re
import tomllib
from functools import partial
from pathlib import Path
from typing import Any

from ..bayes.guides import GUIDES, guide_usage
from ..bayes.image_priors import IMAGE_PRIORS
from ..bayes.model import DEFAULT_JITTER, DEFAULT_PRIOR, DEFAULT_PRIOR_SCALE
from ..bayes.networks import NORMALIZATIONS, PRESETS
from ..bayes.priors import PRIORS
from ..bayes.sure import DATA_TERMS, check_data_term
from ..errors import InvalidInputError, MissingFileError
from ..infer.averaging import READOUTS, check_readout
from ..infer.capture import check_capture
from ..infer.elbo import ENGINES
from ..infer.methods import METHODS, method_defaults
from ..infer.optimizers import OPTIMIZERS
from ..infer.recalibration import CALIBRATIONS, CONFORMAL_COVERAGE, HELDOUT_FRACTION
from ..infer.stopping import STOP_PATIENCE, STOP_RULES
from ..physics.noise import NOISE_MODELS
from ..physics.tasks import DEFAULT_NOISE_STD, DEFAULT_PHOTONS, TASKS
from ..plugins import load_plugins
from ..registry import Registry
from ..settings import Option, fraction, listing, non_negative, positive_int, share
from ..validation import below_one, choice, positive_setting
from .prior_spec import check_layer_priors, check_prior, prior_help, scale_apart
from .steps import DEFAULT_STEPS, default_steps, steps_help

#: How the likelihood treats the noise level: the simulated (or stated) one, a point estimate
#: fitted with the weights, or one per pixel from an extra output channel (Gaussian only).
NOISE_LEVELS = ("known", "learned", "heteroscedastic")
#: The registries whose entries declare settings of their own, by the setting that names one.
COMPONENTS: dict[str, Registry] = {
    "task": TASKS, "noise": NOISE_MODELS, "method": METHODS, "prior": PRIORS, "guide": GUIDES,
    "image_prior": IMAGE_PRIORS,
}


def check_index(name: str, value: object) -> int:
    """A slice or volume index: an integer >= 0 (named without ``_index`` in the message)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidInputError(
            f"{name.removesuffix('_index')} must be an integer >= 0, got {value!r}"
        )
    return value


def check_guide(name: str, value: str) -> str:
    """A guide spec ``NAME[:ARGUMENT]`` whose NAME is registered."""
    choice("guide", value.partition(":")[0], GUIDES)
    return value


def check_device(name: str, value: str) -> str:
    """``cpu``, ``cuda`` or ``cuda:N``."""
    if not re.fullmatch(r"cpu|cuda(:[0-9]+)?", value):
        raise InvalidInputError(f"unknown device {value!r}: use cpu, cuda or cuda:N")
    return value


def check_seed(name: str, value: object) -> int:
    """A seed: an integer from 0 to 2^32 - 1."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**32:
        raise InvalidInputError(f"seed must be an integer from 0 to {2**32 - 1}, got {value!r}")
    return value


def check_plugins(name: str, value: object) -> list:
    """Module names (a list or tuple of strings)."""
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        raise InvalidInputError(
            f"plugins must be a list of module names, e.g. ['my_priors'], got {value!r}"
        )
    return value


def guide_help() -> str:
    return f"the guide: {listing(map(guide_usage, GUIDES))}"


#: Settings whose default depends on the method (None in RunConfig: see pyrodip.infer.methods).
METHOD_DEFAULTS = (
    "guide", "temperature", "optimizer", "weight_decay", "dropout", "lr", "init_loc", "init_scale",
    "lr_decay", "average", "readout", "calibration", "stop_rule",
)
ESTIMATED = "--observed: estimated from the image"

#: The settings of every run, whatever its components (RunConfig's own).
GENERAL: tuple[Option, ...] = (
    Option("image", str, "sample:ct",
           "image file (PNG, JPEG, TIFF, DICOM, NIfTI, .npy) or sample:NAME"),
    Option("size", int, None, "resize the image so that its longer side has N pixels",
           check=positive_int, metavar="N", shown_default="its own size"),
    Option("slice_index", int, None, "NIfTI volumes and DICOM series (a folder): the slice",
           check=check_index, metavar="N", flag_name="--slice", shown_default="the middle"),
    Option("volume_index", int, None, "4-D NIfTI: the volume (needed when the file holds "
           "several)", check=check_index, metavar="T", flag_name="--volume"),
    Option("observed", bool, False, "the image is the observation itself (ct: a sinogram, "
           "detectors x angles, .npy or an image): nothing simulated, no truth metrics, the "
           "noise level estimated unless given"),
    Option("task", str, "denoise", "the inverse problem", choices=TASKS),
    Option("noise", str, "gaussian", "noise model", choices=NOISE_MODELS),
    Option("noise_std", float, None, "std of gaussian or speckle noise (ct: relative to the "
           "largest projection)", check=positive_setting,
           shown_default=f"{DEFAULT_NOISE_STD}; {ESTIMATED}"),
    Option("clip", bool, False, "clip the simulated observation to [0, 1], as 8-bit scans "
           "are (gaussian noise; not ct)"),
    Option("censoring", str, "auto", "gaussian noise on an observation clipped to [0, 1]: "
           "auto scores the values at 0 and 1 as censored (the Tobit likelihood) when there "
           "are any; off: as plain values", choices=("auto", "off")),
    Option("photons", float, None, "poisson: expected counts at intensity 1",
           check=positive_setting, shown_default=f"{DEFAULT_PHOTONS:g}; {ESTIMATED}"),
    Option("method", str, "mfvi", "the fitting method", choices=METHODS),
    Option("net", str, "small", "network preset", choices=PRESETS),
    Option("normalization", str, "batch", "the network's normalisation",
           choices=NORMALIZATIONS),
    Option("prior", str, DEFAULT_PRIOR, prior_help, check=check_prior),
    Option("prior_scale", float, DEFAULT_PRIOR_SCALE, "scale of the weight prior",
           check=positive_setting),
    Option("data_term", str, "likelihood", "the fit's data term: likelihood, or sure (Gaussian "
           "denoising: SURE, the network fed y; pyrodip.bayes.sure)", choices=DATA_TERMS),
    Option("image_prior", str, "none", "a prior on the rendered image beside the weight prior "
           "(pyrodip.bayes.image_priors)", choices=IMAGE_PRIORS),
    Option("layer_priors", dict, {}, "a prior for the layers whose name matches PATTERN, e.g. "
           "'net.head.*=laplace:0.05' (repeatable)", check=check_layer_priors,
           metavar="PATTERN=PRIOR", flag_name="--layer-prior"),
    Option("guide", str, None, guide_help, check=check_guide,
           shown_default=partial(method_defaults, "guide")),
    Option("temperature", float, None, "posterior temperature T, the weight of the KL term "
           "(1: the ELBO; 0: no prior)", check=non_negative,
           shown_default=partial(method_defaults, "temperature")),
    Option("noise_level", str, "known", "the likelihood's noise level", choices=NOISE_LEVELS),
    Option("bayesian_batchnorm", bool, False, "make BatchNorm scales and shifts random too"),
    Option("init_loc", str, None, "initial guide means: pytorch or normal:STD",
           shown_default=partial(method_defaults, "init_loc")),
    Option("init_scale", float, None, "initial std of the guide", check=positive_setting,
           shown_default=partial(method_defaults, "init_scale")),
    Option("local_reparam", bool, False,
           "mfvi: local reparameterisation as the training gradient estimator"),
    Option("dropout", float, None, "dropout rate after each conv", check=below_one,
           shown_default=partial(method_defaults, "dropout")),
    Option("optimizer", str, None, "the optimiser", choices=OPTIMIZERS,
           shown_default=partial(method_defaults, "optimizer")),
    Option("lr", float, None, "learning rate", check=positive_setting,
           shown_default=partial(method_defaults, "lr")),
    Option("weight_decay", float, None, "decoupled weight decay", check=non_negative,
           shown_default=partial(method_defaults, "weight_decay")),
    Option("lr_decay", float, None, "anneal the learning rate to 0 (half cosine) over this "
           "last fraction of the steps", check=share,
           shown_default=partial(method_defaults, "lr_decay")),
    Option("average", float, None, "average the rendered images and the parameters over "
           "this last fraction of the steps", check=share,
           shown_default=partial(method_defaults, "average")),
    Option("readout", str, None, "the returned predictive: final (samples at the final "
           "parameters), renders (the renders averaged over the last steps) or params "
           "(samples at the averaged parameters)", choices=READOUTS,
           shown_default=partial(method_defaults, "readout")),
    Option("calibration", str, None, "rescale the std on held-out observed values",
           choices=CALIBRATIONS, shown_default=partial(method_defaults, "calibration")),
    Option("calibration_coverage", float, CONFORMAL_COVERAGE,
           "conformal: the coverage the intervals target", check=fraction, metavar="C"),
    Option("heldout_fraction", float, HELDOUT_FRACTION,
           "share of the observed values held out to calibrate on", check=fraction,
           metavar="F"),
    Option("calibration_refit", bool, False,
           "after calibrating, fit again on all observed values (twice the time)"),
    Option("stop_rule", str, None, "stop without ground truth and keep the image of the "
           "chosen step (wmv: ES-WMV's window variance; heldout: the held-out residual)",
           choices=STOP_RULES, shown_default=partial(method_defaults, "stop_rule")),
    Option("stop_patience", int, STOP_PATIENCE,
           "steps without a new minimum before the rule stops", check=positive_int,
           metavar="N"),
    Option("steps", int, DEFAULT_STEPS, "fitting steps", check=positive_int,
           shown_default=steps_help()),
    Option("samples", int, 25, "posterior samples for the predictive", check=positive_int),
    Option("ema", float, 0.99, "smoothing of the tracked image", check=below_one),
    Option("jitter", float, DEFAULT_JITTER, "std of the input noise jitter per step",
           check=non_negative),
    Option("device", str, "cpu", "cpu, cuda or cuda:N", check=check_device),
    Option("engine", str, "auto", "loss computation", choices=ENGINES),
    Option("capture", bool, False, "cuda: record each step as a CUDA graph and replay it "
           "(single fits on the fast engine; off until measured faster on a GPU)"),
    Option("seed", int, 0, "random seed", check=check_seed),
    Option("ensemble", int, 1, "fit K members of different fit seeds to the same observation "
           "and return their mixture (pyrodip.run.ensemble; K times the time)",
           check=positive_int, metavar="K"),
    Option("plugins", list, [], "import MODULE first: what it registers (priors, tasks, ...) "
           "can be named here (repeatable; recorded in the run's settings)",
           check=check_plugins, metavar="MODULE", flag_name="--plugin"),
)


def declared_settings() -> dict[str, Option]:
    """Every setting by name: :data:`GENERAL`, then those the registered components declare
    (read now, so a plugin's are included once it is loaded).

    >>> settings = declared_settings()
    >>> settings["steps"].default, settings["angles"].default
    (1000, 45)
    """
    table = {option.name: option for option in GENERAL}
    for registry in COMPONENTS.values():
        for name in registry:
            for option in registry.options(name):
                if table.setdefault(option.name, option) != option:
                    raise InvalidInputError(
                        f"setting {option.name!r} of {registry.kind} {name!r} is declared "
                        "differently elsewhere: give it another name"
                    )
    return table


#: The settings pyrodip itself declares: every run's JSON records them (a plugin's only where
#: the run uses it, see :meth:`RunConfig.to_json`).
BUILT_IN_SETTINGS = frozenset(declared_settings())


class RunConfig:
    """The settings of one reconstruction, by keyword (:func:`declared_settings`: those of
    :data:`GENERAL` and those the registered components declare), each an attribute. Defaults
    are the CPU demo's: the embedded CT slice, Gaussian noise 0.1, the small network, mean-field
    VI. The ``plugins`` are imported first, so that what they register and declare is
    accepted."""

    __hash__ = None  # type: ignore[assignment]  # mutable, compared by value

    def __init__(self, **settings: Any) -> None:
        self._assign(settings, "settings")

    def _assign(self, settings: dict[str, Any], source: str) -> None:
        plugins = settings.get("plugins", [])
        check_plugins("plugins", plugins)
        load_plugins(plugins)  # before the names below are checked: they may add some
        table = declared_settings()
        _check_keys(settings, table, source)
        values = {name: settings[name] if name in settings else option.initial()
                  for name, option in table.items()}
        values.update(scale_apart(settings, source))
        if "steps" not in settings:
            values["steps"] = default_steps(values["task"], values["noise"])
        values["plugins"] = list(plugins)
        for key, option in table.items():
            option.validate(values[key])
        self.__dict__.update(values)
        if self.resolved("stop_rule") == "heldout" and self.calibration_refit:
            raise InvalidInputError("stop_rule=heldout watches held-out values, which a refit "
                                    "on all values lacks: drop calibration_refit")
        check_readout(self.resolved("readout"), self.resolved("average"))
        check_data_term(self)
        if self.clip and (self.observed or self.noise != "gaussian" or self.task == "ct"):
            raise InvalidInputError("`clip` clips a simulated image-space observation with "
                                    "gaussian noise: drop it for this one")
        if self.capture:
            check_capture(self.device, self.engine)
            if not IMAGE_PRIORS[self.image_prior].batchable:
                raise InvalidInputError(f"image_prior={self.image_prior} works between steps, "
                                        "which a captured step cannot: drop --capture")
        METHODS[self.method].check(self)

    def settings(self) -> dict[str, Any]:
        """Every setting by name (a copy)."""
        return dict(self.__dict__)

    def component_settings(self) -> set[str]:
        """The settings that the components this config names (its task, noise model, method,
        prior and guide) declare.

        >>> sorted(RunConfig(method="sgld", task="ct").component_settings())
        ['angles', 'burn_in', 'sample_every', 'sgld']
        """
        return {
            option.name for key, registry in COMPONENTS.items()
            for option in registry.options(str(self.resolved(key)).partition(":")[0])
        }

    def resolved(self, key: str):
        """The setting ``key``, or the method's default for it when it is None.

        >>> RunConfig(method="mcdropout").resolved("dropout")
        0.3
        """
        value = getattr(self, key)
        return getattr(METHODS[self.method], key) if value is None else value

    def replace(self, **changes: object) -> RunConfig:
        """A copy with some settings changed (a new ``prior_scale`` wins over the scale of
        this config's prior; a config at its default steps takes those of its new task and
        noise); unknown keys are refused with a suggestion.

        >>> RunConfig(prior="laplace:0.05").replace(prior_scale=0.2).prior_scale
        0.2
        """
        settings = {**self.settings(), **scale_apart(changes, "the changes")}
        if "steps" not in changes and self.steps == default_steps(self.task, self.noise):
            del settings["steps"]
        return RunConfig(**settings)

    def to_json(self) -> str:
        """The settings as JSON: those of :data:`BUILT_IN_SETTINGS` (``plugins`` only when
        there are some) and a plugin's when this config uses the component that declares it
        or gives it another value than its default, so that runs without plugin settings keep
        the JSON they always had.

        >>> json.loads(RunConfig(steps=3).to_json())["steps"]
        3
        """
        table, chosen = declared_settings(), self.component_settings()
        settings = {
            key: value for key, value in self.__dict__.items()
            if key in BUILT_IN_SETTINGS or key in chosen or key not in table
            or value != table[key].default
        }
        if not settings["plugins"]:
            del settings["plugins"]
        return json.dumps(settings, sort_keys=True)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, RunConfig):
            return NotImplemented
        return self.to_json() == other.to_json()

    def __repr__(self) -> str:
        return f"RunConfig({', '.join(f'{k}={v!r}' for k, v in self.__dict__.items())})"

    @classmethod
    def from_toml(cls, path: str | Path, **overrides: object) -> RunConfig:
        """Read the settings from a TOML file; ``overrides`` (e.g. from the CLI) win, a
        ``prior_scale`` among them over a scale in the file's ``prior`` too."""
        source = f"config file {path}"
        in_file = read_toml(path, "config file")
        _check_file_values(in_file, overrides.get("plugins", in_file.get("plugins", [])), source)
        settings = scale_apart(in_file, source)
        settings.update(scale_apart(overrides, "the overrides"))
        config = cls.__new__(cls)
        config._assign(settings, source)
        return config


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


def _check_file_values(settings: dict, plugins: object, source: str) -> None:
    """Check each known setting of a file on its own, naming the file in the error, so that a
    bad value is refused even where an override replaces it (``plugins`` are imported first:
    they may declare some)."""
    try:
        check_plugins("plugins", plugins)
        load_plugins(plugins)
        table = declared_settings()
        for key, value in settings.items():
            if key in table:
                table[key].validate(value)
    except InvalidInputError as error:
        raise InvalidInputError(f"{source}: {error}") from None


def _check_keys(settings: dict, table: dict[str, Option], source: str) -> None:
    valid = list(table)
    for key in settings:
        if key in RENAMED:
            raise InvalidInputError(f"{key!r} in {source} is now {RENAMED[key]}")
        if key not in valid:
            close = difflib.get_close_matches(key, valid, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else f" (valid: {', '.join(valid)})"
            raise InvalidInputError(f"unknown key {key!r} in {source}{hint}")
