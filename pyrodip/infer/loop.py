"""Fitting: SVI on the Bayesian DIP (``TraceMeanField_ELBO``), for every method, tracked step
by step, checked for divergence, checkpointed and resumable.

>>> import torch
>>> from pyrodip import Observation, RunConfig, fit
>>> obs = Observation.simulate(torch.rand(1, 32, 32), noise=0.1, seed=0)
>>> result = fit(obs, RunConfig(steps=3, samples=2), progress=False)
>>> result.history.curves["loss"].shape, result.prediction.mean.shape
((3,), torch.Size([1, 32, 32]))
"""

from __future__ import annotations

import contextlib
import copy
import os
import random
import threading
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyro
import torch
from pyro import poutine
from pyro.infer import TraceMeanField_ELBO
from torch import Tensor
from tqdm.auto import tqdm

from ..bayes.guides import WeightGuide, make_guide
from ..bayes.model import BayesianDIP
from ..bayes.networks import NetConfig
from ..errors import InvalidInputError, MissingFileError, PyrodipError
from ..evaluate.metrics import psnr, ssim
from ..io.files import atomic_path
from ..physics.observation import Observation
from ..studies.config import RunConfig
from ..studies.resources import check_memory
from .local_reparam import LocalReparameterization
from .methods import SGLDNoise, burn_in_steps
from .optimizers import OPTIMIZERS
from .predictive import Prediction, RunningMoments, predict

#: Pyro's distribution and trace checks in :func:`fit` when its ``validate`` is None. Off: they
#: cost 20-50 % per step. The test suite turns them on.
VALIDATE = False


@dataclass
class History:
    """Metric curves over fitting steps (numpy arrays, one entry per step).

    ``loss`` is the negative ELBO (with ``kl_weight``). ``psnr``/``ssim`` compare the smoothed
    image (an exponential moving average of the rendered images) with the truth, and
    ``psnr_current``/``ssim_current`` the image of the step itself; the ``*_observation``
    curves compare A(image) with the observation instead (always present).
    """

    curves: dict[str, np.ndarray]

    @property
    def steps(self) -> np.ndarray:
        return np.arange(1, len(self.curves["loss"]) + 1)


@dataclass
class FitResult:
    """Everything one fit produced."""

    config: RunConfig
    observation: Observation
    model: BayesianDIP
    guide: WeightGuide
    history: History
    prediction: Prediction
    smoothed: Tensor  # the exponential moving average of the rendered images, (C, H, W)
    wall_time_s: float
    events: list[dict] = field(default_factory=list)  # divergences: step, rolled_back_to, lr
    status: str = "completed"  # or "diverged" (stopped early, see fit)


def resolve_device(name: str) -> torch.device:
    """``cpu``, ``cuda`` or ``cuda:N``; refuses CUDA when this machine has none."""
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise InvalidInputError(
            f"device {name!r} requested but CUDA is not available: use --device cpu"
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
        net=NetConfig.preset(config.net, dropout=config.resolved("dropout")),
        prior=f"{name}:{config.prior_scale}{arguments}",
        layer_priors=config.layer_priors,
        likelihood=likelihood,
        operator=observation.operator,
        kl_weight=config.resolved("kl_weight") * config.temperature,
        jitter=config.jitter,
        bayesian_batchnorm=config.bayesian_batchnorm,
    )
    # Temperature T: every prior's variance x T (and the KL weight x T above).
    for prior in (model.prior, *model.layer_priors.values()):
        prior.scale = prior.scale * config.temperature**0.5
    guide = make_guide(
        config.resolved("guide"), model, init_loc=config.init_loc, init_scale=config.init_scale
    )
    return model, guide


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
    ``config.seed`` first, so equal configs give equal results (on the same device).

    A NaN or infinite loss or parameter (checked every :data:`CHECK_EVERY` steps) rolls the fit
    back to the last good state and multiplies the learning rate by :data:`LR_FACTOR`; after
    :data:`MAX_DIVERGENCES` such events the fit stops and returns what it had
    (``status="diverged"``). Every event is listed in ``FitResult.events``.

    Args:
        progress: show a progress bar with the loss and PSNR.
        validate: Pyro's distribution and trace checks (slow: for tests and debugging);
            None follows :data:`VALIDATE`.
        checkpoint: where and how often to save the fit's whole state (atomically).
        resume: continue from ``checkpoint.path`` instead of starting afresh; the result is
            the one an uninterrupted fit gives (identical on the CPU).
        stop: when set (e.g. by a SIGTERM handler), the fit saves a checkpoint (if
            ``checkpoint``) and raises :class:`Interrupted`.
    """
    config = config or RunConfig()
    device = resolve_device(config.device)
    check_memory(config, observation.image_shape, device)
    pyro.set_rng_seed(config.seed)
    model, guide = build(config, observation)
    model.to(device)
    guide.to(device)
    fitting = _Fitting(model, guide, observation, config)
    if resume:
        if checkpoint is None:
            raise InvalidInputError("resume needs checkpoint=Checkpointing(path) to read")
        fitting.load_state_dict(read_checkpoint(checkpoint.path, device))
    with pyro.validation_enabled(VALIDATE if validate is None else validate):
        fitting.run(progress=progress, checkpoint=checkpoint, stop=stop)
        start = time.perf_counter()
        if fitting.moments is not None:
            prediction = fitting.moments.prediction()
        else:
            prediction = predict(model, guide, num_samples=config.samples)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return FitResult(
        config=config,
        observation=observation,
        model=model,
        guide=guide,
        history=History(fitting.tracker.numpy(fitting.step)),
        prediction=prediction,
        smoothed=smoothed[0] if (smoothed := fitting.tracker.smoothed) is not None else
        prediction.mean,
        wall_time_s=fitting.elapsed + time.perf_counter() - start,
        events=fitting.events,
        status=fitting.status,
    )


@dataclass
class Checkpointing:
    """Where :func:`fit` saves its state, and how often: every ``every_steps`` steps, or, when
    that is None, every ``every_seconds`` of wall time (checked every :data:`CHECK_EVERY`
    steps). Files are written whole or not at all."""

    path: Path
    every_steps: int | None = None
    every_seconds: float = 300.0


class Interrupted(PyrodipError):
    """The fit was asked to stop (SIGTERM, SIGINT); its state is in the checkpoint, if any."""

    def __init__(self, step: int, path: Path | None) -> None:
        saved = f"; state saved to {path}" if path is not None else ""
        super().__init__(f"interrupted at step {step}{saved}")
        self.step, self.path = step, path


def read_checkpoint(path: str | os.PathLike, device: torch.device | str = "cpu") -> dict:
    """The state saved by a fit's checkpoint (its ``config`` as JSON among it)."""
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"no checkpoint at {path}: nothing to resume")
    try:
        return torch.load(path, map_location=device, weights_only=False)
    except Exception as error:  # a damaged file: name it, whatever torch raises
        raise InvalidInputError(f"checkpoint {path} cannot be read ({error})") from None


def make_optimizer(loss_fn: torch.nn.Module, config: RunConfig) -> torch.optim.Optimizer:
    """Adam or AdamW over the guide's and the model's parameters. Weight decay (if any) acts
    on locations and deterministic parameters, never on the guide's scales: decaying those
    would pull the posterior standard deviation towards softplus(0) = 0.69."""
    decay, no_decay = [], []
    for name, param in loss_fn.named_parameters():
        (no_decay if ".rhos." in name else decay).append(param)
    groups = [
        {"params": decay, "weight_decay": config.resolved("weight_decay")},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    optimizer = OPTIMIZERS[config.resolved("optimizer")]
    return optimizer([g for g in groups if g["params"]], lr=config.lr)


def make_loss(model: BayesianDIP, guide: WeightGuide, engine: str = "auto") -> torch.nn.Module:
    """The negative ELBO of ``model`` and ``guide`` as a module: ``loss_fn(y)`` is a scalar
    whose gradients reach the guide's and the model's parameters. ``engine`` (see
    :data:`pyrodip.studies.config.ENGINES`): ``pyro`` is Pyro's ``TraceMeanField_ELBO``;
    ``fast`` the
    :class:`pyrodip.infer.elbo.FastELBO` derived from it (same loss and gradients, or an
    InvalidInputError saying why it cannot be); ``auto`` the fast one where it is supported."""
    from ..studies.config import ENGINES
    from .elbo import FastELBO, supports

    if engine not in ENGINES:
        raise InvalidInputError(f"unknown engine {engine!r}: choose one of {', '.join(ENGINES)}")
    if engine == "fast" or (engine == "auto" and supports(model, guide)):
        return FastELBO(model, guide)
    return TraceMeanField_ELBO()(model, guide)


#: Steps between the divergence checks (each syncs with the device once).
CHECK_EVERY = 25
#: The learning rate is multiplied by this after each divergence.
LR_FACTOR = 0.5
#: Divergences after which a fit stops and keeps what it had.
MAX_DIVERGENCES = 3


class _Fitting:
    """The state of one fit between steps: model, guide, optimiser, curves, step counter, SGLD
    samples; it runs steps, checks them, rolls back, and saves and restores itself."""

    def __init__(self, model, guide, observation: Observation, config: RunConfig) -> None:
        self.model, self.guide, self.config = model, guide, config
        device = model.z.device
        self.y = observation.observation.unsqueeze(0).to(device)
        truth = observation.truth.unsqueeze(0).to(device) if observation.has_truth else None
        self.local_reparam = contextlib.nullcontext()
        engine = config.engine
        if config.local_reparam:
            if engine == "fast":
                raise InvalidInputError(
                    "local reparameterisation runs on the pyro engine: use --engine auto"
                )
            self.local_reparam, engine = LocalReparameterization(model, guide), "pyro"
        self.loss_fn = make_loss(model, guide, engine)
        self.optimizer = make_optimizer(self.loss_fn, config)
        self.tracker = _Tracker(
            config.steps, self.y, truth, model.operator, config.ema, device,
            observation.observation_range,
        )
        self.sgld = None
        self.moments: RunningMoments | None = None
        if config.method == "sgld":
            self.sgld = SGLDNoise(guide.parameters(), config.lr, config.sgld)
            self.burn_in = burn_in_steps(config.burn_in, config.steps)
            self.moments = RunningMoments()
        self.step = 0
        self.elapsed = 0.0  # seconds of fitting before this process (resumed fits)
        self.events: list[dict] = []
        self.status = "completed"

    def run(self, progress: bool, checkpoint: Checkpointing | None, stop) -> None:
        config, tracker = self.config, self.tracker
        self.model.train()
        good = self._snapshot()
        started, last_save = time.perf_counter() - self.elapsed, time.perf_counter()
        bar = tqdm(
            total=config.steps, initial=self.step, desc=f"fitting ({config.method})", unit="step",
            disable=not progress, leave=False,
        )
        while self.step < config.steps:
            self._one_step()
            self.step += 1
            bar.update()
            interrupted = stop is not None and stop.is_set()
            if self.step % CHECK_EVERY and self.step < config.steps and not interrupted:
                continue
            if not self._finite(good["step"]):
                if not self._roll_back(good):
                    break
                bar.n = self.step
                continue
            good = self._snapshot()
            if progress:
                bar.set_postfix(tracker.summary(self.step - 1), refresh=False)
            self.elapsed = time.perf_counter() - started
            due = checkpoint is not None and (
                interrupted
                or (checkpoint.every_steps and self.step % checkpoint.every_steps == 0)
                or (not checkpoint.every_steps and
                    time.perf_counter() - last_save >= checkpoint.every_seconds)
            )
            if due and self.step < config.steps:
                self.save(checkpoint.path)
                last_save = time.perf_counter()
            if interrupted:
                bar.close()
                raise Interrupted(self.step, checkpoint.path if checkpoint else None)
        bar.close()
        self.elapsed = time.perf_counter() - started

    def _one_step(self) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        with self.local_reparam:
            loss = self.loss_fn(self.y)
        loss.backward()
        self.optimizer.step()
        if self.sgld is not None:
            self.sgld()
        self.tracker.update(self.step, loss.detach(), self.model.last_image)
        if self.moments is not None and self.step >= self.burn_in:
            if (self.step - self.burn_in) % self.config.sample_every == 0:
                self.moments.add(*_render_sample(self.model, self.guide))

    def _finite(self, since: int) -> bool:
        """Whether the losses since step ``since`` and all parameters are finite (one sync)."""
        checks = [torch.isfinite(self.tracker.curves["loss"][since : self.step]).all()]
        checks += [torch.isfinite(p).all() for p in self.loss_fn.parameters()]
        return bool(torch.stack(checks).all())

    def _roll_back(self, good: dict) -> bool:
        """Restore the last good state with a lower learning rate; False when giving up."""
        lrs = [group["lr"] for group in self.optimizer.param_groups]
        event = {"step": self.step, "rolled_back_to": good["step"], "lr": lrs[0] * LR_FACTOR}
        self.events.append(event)
        self._restore(good)  # this also restores the optimiser's learning rates
        if len(self.events) > MAX_DIVERGENCES:
            event["lr"] = lrs[0]
            self.status = "diverged"
            warnings.warn(
                f"the fit diverged {len(self.events)} times (non-finite loss or weights); "
                f"stopped and kept step {self.step}: lower --lr",
                stacklevel=4,
            )
            return False
        for group, lr in zip(self.optimizer.param_groups, lrs, strict=True):
            group["lr"] = lr * LR_FACTOR
        warnings.warn(
            f"non-finite loss or weights by step {event['step']}: rolled back to step "
            f"{good['step']} and lowered the learning rate to {event['lr']:.3g}",
            stacklevel=4,
        )
        return True

    def _snapshot(self) -> dict:
        return copy.deepcopy(self._state())

    def _restore(self, state: dict) -> None:
        self._load(copy.deepcopy(state))

    def _state(self) -> dict:
        return {
            "step": self.step,
            "model": self.model.state_dict(),
            "guide": self.guide.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "smoothed": self.tracker.smoothed,
            "moments": vars(self.moments).copy() if self.moments is not None else None,
        }

    def _load(self, state: dict) -> None:
        self.step = state["step"]
        self.model.load_state_dict(state["model"])
        self.guide.load_state_dict(state["guide"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.tracker.smoothed = state["smoothed"]
        if self.moments is not None:
            vars(self.moments).update(state["moments"])

    def state_dict(self) -> dict:
        """Everything a resumed fit needs, the random number generators' states included."""
        return {
            **self._state(),
            "config": self.config.to_json(),
            "curves": {name: values[: self.step] for name, values in self.tracker.curves.items()},
            "events": self.events,
            "elapsed": self.elapsed,
            "rng": _rng_state(),
        }

    def load_state_dict(self, state: dict) -> None:
        if state["config"] != self.config.to_json():
            raise InvalidInputError(
                "the checkpoint was written with other settings than this run's: resume "
                "without changing options"
            )
        self._load(state)
        for name, values in state["curves"].items():
            self.tracker.curves[name][: self.step] = values
        self.events, self.elapsed = state["events"], state["elapsed"]
        _set_rng_state(state["rng"])

    def save(self, path: Path) -> None:
        with atomic_path(path) as tmp:
            torch.save(self.state_dict(), tmp)


def _rng_state() -> dict:
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(),
             "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


@torch.no_grad()
def _render_sample(model: BayesianDIP, guide: WeightGuide) -> tuple[Tensor, Tensor | None]:
    """One posterior image (C, H, W) from a weight draw of ``guide`` (no input jitter), and
    its noise variance for a heteroscedastic likelihood."""
    was_training = model.training
    model.train(False)
    try:
        with poutine.replay(trace=poutine.trace(guide).get_trace()):
            image, log_variance = model.render(jitter=False)
    finally:
        model.train(was_training)
    return image[0], log_variance[0].exp() if log_variance is not None else None


class _Tracker:
    """Per-step metrics kept on the device (no host sync) until the fit ends."""

    def __init__(self, steps, observation, truth, operator, ema, device, data_range) -> None:
        self.observation, self.truth, self.operator, self.ema = observation, truth, operator, ema
        self.data_range = data_range
        names = ["loss", "psnr_observation", "ssim_observation"]
        names += ["psnr_current_observation", "ssim_current_observation"]
        if truth is not None:
            names += ["psnr", "ssim", "psnr_current", "ssim_current"]
        self.curves = {name: torch.empty(steps, device=device) for name in names}
        self.smoothed: Tensor | None = None

    @torch.no_grad()
    def update(self, step: int, loss: Tensor, image: Tensor) -> None:
        if self.smoothed is None:
            self.smoothed = image.clone()
        else:
            self.smoothed.lerp_(image, 1 - self.ema)
        c = self.curves
        c["loss"][step] = loss
        for suffix, estimate in (("", self.smoothed), ("_current", image)):
            predicted = self.operator(estimate)
            y, data_range = self.observation, self.data_range
            c[f"psnr{suffix}_observation"][step] = psnr(predicted, y, data_range)[0]
            c[f"ssim{suffix}_observation"][step] = ssim(predicted, y, data_range)[0]
            if self.truth is not None:
                c[f"psnr{suffix}"][step] = psnr(estimate, self.truth)[0]
                c[f"ssim{suffix}"][step] = ssim(estimate, self.truth)[0]

    def summary(self, step: int) -> dict[str, str]:
        key = "psnr" if self.truth is not None else "psnr_observation"
        return {"loss": f"{self.curves['loss'][step]:.4g}", key: f"{self.curves[key][step]:.2f}"}

    def numpy(self, steps: int) -> dict[str, np.ndarray]:
        """The curves of the first ``steps`` steps."""
        return {name: values[:steps].cpu().numpy() for name, values in self.curves.items()}
