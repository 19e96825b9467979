"""One fit's settings (:class:`Training`), its state between steps (:class:`Fitting`) and
what it produced (:class:`FitResult`): SVI steps on the negative ELBO, tracked, checked for
divergence and rolled back, checkpointed and resumed. :func:`pyrodip.infer.loop.fit_model`
drives one fit; :func:`pyrodip.infer.batched.fit_models` steps many together.

>>> Training(steps=3).optimizer, CHECK_EVERY
('adam', 25)
"""

from __future__ import annotations

import contextlib
import copy
import io
import threading
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from tqdm.auto import tqdm

from ..errors import InvalidInputError
from ..io.files import atomic_path
from ..physics.observation import Observation
from ..settings import non_negative, share
from ..validation import below_one, choice, positive, positive_int
from .averaging import TailAverage, check_readout, lr_factor, readouts_of, set_lr, tail_start
from .capture import CapturedStep
from .checkpoints import Checkpointing, Interrupted, rng_state, set_rng_state
from .elbo import ENGINES, make_loss
from .local_reparam import LocalReparameterization
from .methods import Sampler
from .optimizers import OPTIMIZERS, make_optimizer
from .predictive import Prediction, RunningMoments, measure
from .recalibration import Recalibration
from .stopping import STOP_PATIENCE, STOP_RULES, EarlyStopping
from .tracking import History, Tracker

__all__ = ["CHECK_EVERY", "FitResult", "Fitting", "Training", "model_device"]


@dataclass(frozen=True)
class Training:
    """How :func:`~pyrodip.infer.loop.fit_model` trains and predicts.

    ``engine``: see :data:`pyrodip.infer.elbo.ENGINES`; ``ema``: the weight of the running
    image in the smoothed one; ``samples``: posterior images drawn for the predictive;
    ``local_reparam``: local reparameterisation as the gradient estimator (pyro engine);
    ``stop_rule``: stop a point-estimate fit without ground truth
    (:data:`~pyrodip.infer.stopping.STOP_RULES`) ``patience`` steps after its curve's minimum,
    and return the image of that step (a fit too short for the rule's curve to have a value
    keeps its last step). ``lr_decay``, ``average``, ``readout``: anneal the learning rate over
    the last fraction ``lr_decay`` of the steps, average over the last ``average``, return the
    ``readout`` (:mod:`pyrodip.infer.averaging`). ``capture``: record the gradient step as a
    CUDA graph and replay it (:mod:`pyrodip.infer.capture`; CUDA and the fast engine only).
    """

    steps: int = 1000
    lr: float = 0.01
    optimizer: str = "adam"
    weight_decay: float = 0.0
    engine: str = "auto"
    ema: float = 0.99
    samples: int = 25
    local_reparam: bool = False
    stop_rule: str = "none"
    patience: int = STOP_PATIENCE
    lr_decay: float = 0.0
    average: float = 0.0
    readout: str = "final"
    capture: bool = False

    def __post_init__(self) -> None:
        choice("optimizer", self.optimizer, OPTIMIZERS)
        choice("engine", self.engine, ENGINES)
        choice("stop_rule", self.stop_rule, STOP_RULES)
        share("lr_decay", self.lr_decay)
        share("average", self.average)
        check_readout(self.readout, self.average)
        positive("lr", self.lr)
        for key in ("steps", "samples", "patience"):
            positive_int(key, getattr(self, key))
        non_negative("weight_decay", self.weight_decay)
        below_one("ema", self.ema)
        if self.local_reparam and self.engine == "fast":
            raise InvalidInputError(
                "local reparameterisation runs on the pyro engine: use `engine=auto`")


@dataclass
class FitResult:
    """Everything one fit produced. ``engine`` is the loss engine that ran; ``config`` what
    the caller described the fit with (the run config, for :func:`pyrodip.fit`).

    Attributes:
        prediction: the posterior predictive, `(C, H, W)` tensors.
        smoothed: the moving average of the rendered images, a `(C, H, W)` tensor.
        history: the curves, one value per step.
    """

    observation: Observation
    model: Any
    guide: Any
    history: History
    prediction: Prediction
    smoothed: Tensor  # the exponential moving average of the rendered images, (C, H, W)
    wall_time_s: float
    engine: str
    events: list[dict] = field(default_factory=list)  # divergences: step, rolled_back_to, lr
    status: str = "completed"  # "stopped" by training.stop_rule, or "diverged" (see Fitting)
    config: Any = None
    calibration: Recalibration | None = None  # how the std was rescaled (pyrodip.fit)
    chosen_step: int | None = None  # a stop rule's step (1-based), whose image is the result
    resumed_at: list[int] = field(default_factory=list)  # steps it was resumed at (checkpoints)
    readouts: dict[str, Tensor] = field(default_factory=dict)  # mean image of each READOUTS
    readout: str = "none"  # the one returned; none for a sampler's or a stop rule's
    member_means: Tensor | None = None  # an ensemble's members' means, (K, C, H, W)


def model_device(model: Any) -> torch.device:
    """The device of the model's first buffer or parameter."""
    tensor = next(iter(model.buffers()), None)
    if tensor is None:
        tensor = next(iter(model.parameters()))
    return tensor.device


#: Steps between the divergence checks (each syncs with the device once).
CHECK_EVERY = 25
#: The learning rate is multiplied by this after each divergence.
LR_FACTOR = 0.5
#: Divergences after which a fit stops and keeps what it had.
MAX_DIVERGENCES = 3


class Fitting:
    """The state of one fit between steps: model, guide, optimiser, curves, step counter, the
    method's sampler; it runs steps, checks them, rolls back, and saves and restores itself.

    :func:`~pyrodip.infer.loop.fit_model` runs one; :func:`~pyrodip.infer.batched.fit_models`
    builds one per fit and steps them together.

    Args:
        model: the model, as :mod:`pyrodip.infer.loop` describes it, on the fit's device.
        guide: its guide, likewise.
        observation: the observation; its y, a `(C, H', W')` tensor, is fitted.
        training: the fit's settings (stop rule checked by
            :func:`~pyrodip.infer.stopping.check_stop_rule`).
        sampler: a method's work after each step (SGLD), or None.
        fingerprint: the settings a checkpoint must match to be resumed.
        heldout: the held-out values, a bool `(1, H', W')` tensor, or None.
    """

    def __init__(self, model: Any, guide: Any, observation: Observation, training: Training,
                 sampler: Sampler | None, fingerprint: str, heldout: Tensor | None) -> None:
        self.model, self.guide, self.training = model, guide, training
        self.observation, self.fingerprint = observation, fingerprint
        device = model_device(model)
        self.y = observation.observation.unsqueeze(0).to(device)
        truth = observation.truth.unsqueeze(0).to(device) if observation.has_truth else None
        self.local_reparam = contextlib.nullcontext()
        engine = training.engine
        if training.local_reparam:
            self.local_reparam, engine = LocalReparameterization(model, guide), "pyro"
        self.loss_fn = make_loss(model, guide, engine)
        self.optimizer = make_optimizer(self.loss_fn.named_parameters(), training.optimizer,
                                        training.lr, training.weight_decay, training.capture)
        self.gradient_step = (CapturedStep(self._gradient_step, device, self.loss_fn.engine)
                              if training.capture else self._gradient_step)
        rule = training.stop_rule
        self.tracker = Tracker(training.steps, self.y, truth, model.operator, training.ema,
                               device, observation.observation_range, heldout,
                               window_variance=rule != "none")
        self.stopping = EarlyStopping(rule, training.patience) if rule != "none" else None
        self.sampler = sampler
        if sampler is not None:
            sampler.start(model, guide)
        self.base_lrs = [float(group["lr"]) for group in self.optimizer.param_groups]
        self.tail = None
        if training.average and sampler is None and self.stopping is None:
            self.tail = TailAverage(tail_start(training.steps, training.average))
        self.step = 0
        self.elapsed = 0.0  # seconds of fitting before this process (resumed fits)
        self.resumed_at: list[int] = []
        self.events: list[dict] = []
        self.status = "completed"

    def result(self, config: Any = None) -> FitResult:
        """The fit's result: the posterior predictive (the sampler's, or the stop rule's
        image) and the curves."""
        model, training = self.model, self.training
        start = time.perf_counter()
        chosen = None if self.stopping is None else self.stopping.best_step
        readouts, readout = {}, "none"
        if chosen is not None:  # None too when the rule's curve never had a value (short fit)
            moments = RunningMoments()
            moments.add(self.stopping.image[0], None, measure(model, self.stopping.image[0]))
            prediction = moments.prediction()
        elif self.sampler is not None:
            prediction = self.sampler.prediction()
        else:
            predictions = readouts_of(model, self.guide, self.tail, self.loss_fn.parameters(),
                                      training.samples)
            readout = training.readout if training.readout in predictions else "final"
            prediction = predictions[readout]
            readouts = {name: p.mean for name, p in predictions.items()}
        device = model_device(model)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        smoothed = self.tracker.smoothed
        return FitResult(
            observation=self.observation,
            model=model,
            guide=self.guide,
            history=History(self.tracker.numpy(self.step)),
            prediction=prediction,
            smoothed=smoothed[0] if smoothed is not None else prediction.mean,
            wall_time_s=self.elapsed + time.perf_counter() - start,
            engine=self.loss_fn.engine,
            events=self.events,
            status=self.status,
            config=config,
            chosen_step=None if chosen is None else chosen + 1,
            resumed_at=self.resumed_at,
            readouts=readouts,
            readout=readout,
        )

    def run(
        self, progress: bool, checkpoint: Checkpointing | None, stop: threading.Event | None
    ) -> None:
        """Step until ``training.steps``, a stop rule or too many divergences, checking every
        :data:`CHECK_EVERY` steps; saves to ``checkpoint`` when due and raises
        :class:`~pyrodip.infer.checkpoints.Interrupted` once ``stop`` is set."""
        steps, tracker = self.training.steps, self.tracker
        self.model.train()
        good = self._snapshot()
        started, last_save = time.perf_counter() - self.elapsed, time.perf_counter()
        bar = tqdm(total=steps, initial=self.step, desc="fitting", unit="step",
                   disable=not progress, leave=False)
        while self.step < steps:
            self._one_step()
            self.step += 1
            bar.update()
            interrupted = stop is not None and stop.is_set()
            if self.step % CHECK_EVERY and self.step < steps and not interrupted:
                continue
            if not self._finite(good["step"]):
                if not self._roll_back(good):
                    break
                bar.n = self.step
                continue
            if self.stopping is not None and self.stopping.due(self.step - 1):
                self.status = "stopped"
                break
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
            if due and self.step < steps:
                self.save(checkpoint.path)
                last_save = time.perf_counter()
            if interrupted:
                bar.close()
                raise Interrupted(self.step, checkpoint.path if checkpoint else None)
        bar.close()
        self.elapsed = time.perf_counter() - started

    def _one_step(self) -> None:
        if self.training.lr_decay:
            set_lr(self.optimizer, self.base_lrs,
                   lr_factor(self.step, self.training.steps, self.training.lr_decay))
        loss = self.gradient_step()
        image = self.model.last_image
        self.tracker.update(self.step, loss.detach(), image)
        if self.tail is not None and self.step >= self.tail.start:  # A(image) only when kept
            self.tail.update(self.step, image[0], measure(self.model, image[0]),
                             list(self.loss_fn.parameters()))
        if self.stopping is not None:
            value = self.tracker.curves[self.stopping.curve][self.step]
            self.stopping.observe(self.step, value, image)
        if self.sampler is not None:
            self.sampler.after_step(self.step)

    def _gradient_step(self) -> Tensor:
        self.optimizer.zero_grad(set_to_none=True)
        with self.local_reparam:
            loss = self.loss_fn(self.y)
        loss.backward()
        self.optimizer.step()
        return loss

    def _finite(self, since: int) -> bool:
        """Whether the losses since step ``since`` and all parameters are finite (one sync)."""
        checks = [torch.isfinite(self.tracker.curves["loss"][since : self.step]).all()]
        checks += [torch.isfinite(p).all() for p in self.loss_fn.parameters()]
        return bool(torch.stack(checks).all())

    def _roll_back(self, good: dict) -> bool:
        """Restore the last good state with a lower learning rate; False when giving up."""
        lrs = [float(group["lr"]) for group in self.optimizer.param_groups]
        base_lrs = self.base_lrs  # before the restore, which brings back the good state's
        event = {"step": self.step, "rolled_back_to": good["step"],
                 "lr": base_lrs[0] * LR_FACTOR}
        self.events.append(event)
        self._restore(good)  # this also restores the optimiser's learning rates
        if len(self.events) > MAX_DIVERGENCES:
            event["lr"] = lrs[0]
            self.status = "diverged"
            warnings.warn(f"the fit diverged {len(self.events)} times (non-finite loss or "
                          f"weights); stopped and kept step {self.step}: lower `lr`", stacklevel=4)
            return False
        set_lr(self.optimizer, lrs, LR_FACTOR)
        self.base_lrs = [lr * LR_FACTOR for lr in base_lrs]
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
            "tracker": self.tracker.state_dict(),
            "stopping": self.stopping.state_dict() if self.stopping is not None else None,
            "sampler": self.sampler.state_dict() if self.sampler is not None else None,
            "tail": self.tail.state_dict() if self.tail is not None else None,
            "base_lrs": list(self.base_lrs),
        }

    def _load(self, state: dict) -> None:
        self.step = state["step"]
        self.model.load_state_dict(state["model"])
        self.guide.load_state_dict(state["guide"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.tracker.load_state_dict(state["tracker"])
        if self.stopping is not None:
            self.stopping.load_state_dict(state["stopping"])
        if self.sampler is not None:
            self.sampler.load_state_dict(state["sampler"])
        if self.tail is not None:
            self.tail.load_state_dict(state["tail"])
        self.base_lrs = list(state.get("base_lrs", self.base_lrs))
        if isinstance(self.gradient_step, CapturedStep):  # the optimiser's tensors are new
            self.gradient_step.reset()

    def state_dict(self) -> dict:
        """Everything a resumed fit needs, the random number generators' states included."""
        return {
            **self._state(),
            "config": self.fingerprint,
            "curves": {name: values[: self.step] for name, values in self.tracker.curves.items()},
            "events": self.events,
            "elapsed": self.elapsed,
            "resumed_at": self.resumed_at,
            "rng": rng_state(),
        }

    def load_state_dict(self, state: dict) -> None:
        """Continue from :meth:`state_dict`'s ``state``; refused if written with other
        settings."""
        if state["config"] != self.fingerprint:
            raise InvalidInputError(
                "the checkpoint was written with other settings than this run's: resume "
                "without changing options"
            )
        self._load(state)
        for name, values in state["curves"].items():
            self.tracker.curves[name][: self.step] = values
        self.events, self.elapsed = state["events"], state["elapsed"]
        self.resumed_at = [*state.get("resumed_at", []), self.step]
        set_rng_state(state["rng"])

    def save(self, path: Path) -> None:
        """Write :meth:`state_dict` to ``path``, whole or not at all."""
        buffer = io.BytesIO()  # encoded in memory, so that a full disk fails as a plain write
        torch.save(self.state_dict(), buffer)
        with atomic_path(path) as tmp:
            tmp.write_bytes(buffer.getbuffer())
