"""Many fits as one computation: B independent fits whose models share one structure (other
seeds, prior scales, temperatures or observations of one shape), their parameters stacked
(``torch.func.stack_module_state``) and each step mapped over the fits with
``torch.func.vmap`` over ``functional_call`` of the fast loss
(:meth:`~pyrodip.infer.elbo.FastELBO.loss_and_image`). BatchNorm normalises each fit with its
own image's statistics, and Adam acts element by element, so every fit follows its own
trajectory.

Each fit draws its weight noise (one call a step) and input jitter from its own generator,
in the order a fit on its own draws them from the global one (:func:`fit_generator`): a batch
gives the fits that fitting each alone gives, up to the float rounding of the batched
convolutions, and the same posterior predictive draws. (One call for the whole batch would
make a fit's numbers depend on its neighbours in the batch.) MC dropout's masks are drawn by
vmap, not per fit. A batch's step is not captured as a CUDA graph (``capture`` is refused).

What may differ between the fits: the parameters' values, every buffer (the input z, the prior
scales, an inpainting mask, held-out values), the temperature and the observation. Everything
else must be equal (network, likelihood, operator, jitter, training settings); the fast engine
must support the fits (:func:`pyrodip.infer.elbo.unsupported_reason`), and no method's
sampler (SGLD) runs in a batch.

A fit whose loss or weights turn non-finite is frozen with status ``"diverged"`` (a fit on its
own would roll back and lower its learning rate: :func:`pyrodip.fit_batch` fits it again on
its own); a fit whose stop rule fires is frozen at that step, as on its own. A batch keeps no
checkpoint: interrupted, it starts again.

>>> import torch
>>> from pyrodip import BayesianDIP, Observation, make_guide
>>> fits = []
>>> for seed in (0, 1):
...     obs = Observation.simulate(torch.rand(1, 32, 32), noise=0.1, seed=seed)
...     _ = torch.manual_seed(seed)
...     model = BayesianDIP(obs.image_shape, operator=obs.operator)
...     fits.append((model, make_guide("meanfield", model), obs, fit_generator("cpu")))
>>> models, guides, observations, generators = zip(*fits)
>>> results = fit_models(models, guides, observations, generators,
...                     Training(steps=3, samples=2), progress=False)
>>> [r.history.curves["loss"].shape for r in results]
[(3,), (3,)]
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Iterable, Sequence

import pyro
import torch
from torch import Tensor, nn
from torch.func import functional_call, stack_module_state, vmap
from tqdm.auto import tqdm

from ..errors import InvalidInputError
from ..physics.observation import Observation
from . import loop
from .averaging import lr_factor, set_lr
from .checkpoints import Interrupted
from .elbo import FastELBO, unsupported_reason
from .fitting import CHECK_EVERY, FitResult, Fitting, Training
from .optimizers import make_optimizer
from .predictive import measure
from .stopping import check_stop_rule
from .tracking import TrackerBatch

__all__ = ["fit_generator", "fit_models"]


def fit_generator(device: torch.device | str) -> torch.Generator:
    """A generator on ``device`` in the state of the global one now: call it right after
    building a fit's model and guide under its seed, and the fit draws in a batch what it
    would draw on its own."""
    device = torch.device(device)
    generator = torch.Generator(device)
    if device.type == "cuda":
        generator.set_state(torch.cuda.get_rng_state(device))
    else:
        generator.set_state(torch.get_rng_state())
    return generator


def _use_generator(generator: torch.Generator) -> None:
    """Put the global generator of the generator's device in its state."""
    if generator.device.type == "cuda":
        torch.cuda.set_rng_state(generator.get_state(), generator.device)
    else:
        torch.set_rng_state(generator.get_state())


class _PureLoss(nn.Module):
    """One fit's negative ELBO and image from given draws: what vmap maps over the fits."""

    def __init__(self, elbo: FastELBO) -> None:
        super().__init__()
        self.elbo = elbo

    def forward(self, y: Tensor, eps: Tensor | None, jitter_noise: Tensor | None,
                temperature: float | Tensor) -> tuple[Tensor, Tensor]:
        variational = self.elbo.variational()
        weights = self.elbo.draw(variational, eps)
        return self.elbo.loss_and_image(y, weights, variational, temperature, jitter_noise)


def _settings(module: nn.Module) -> list[tuple[str, str, object]]:
    """The plain (non-tensor) settings of every submodule, which a batch's fits must share."""
    plain = (bool, int, float, str, tuple, type(None))
    return [
        (path, key, value)
        for path, sub in module.named_modules()
        for key, value in vars(sub).items()
        if not key.startswith("_") and key not in ("temperature", "last_image")
        and (isinstance(value, plain) or dataclasses.is_dataclass(value))
    ]


def _shapes(tensors: dict[str, Tensor]) -> dict[str, tuple[int, ...]]:
    return {name: tuple(value.shape) for name, value in tensors.items()}


class _Batch:
    """The fits' stacked parameters and buffers, their optimiser, and the step over all."""

    def __init__(self, fittings: list[Fitting], generators: Sequence[torch.Generator]) -> None:
        self.fittings, self.generators = fittings, list(generators)
        losses = [_PureLoss(fitting.loss_fn) for fitting in fittings]
        first = losses[0]
        for index, other in enumerate(losses[1:], start=1):
            if _settings(other) != _settings(first):
                raise InvalidInputError(
                    f"fit {index} of the batch differs from fit 0 in more than its values "
                    "(network, likelihood, operator or jitter): batch only fits of one kind"
                )
            for mine, theirs in ((first.named_parameters(), other.named_parameters()),
                                 (first.named_buffers(), other.named_buffers())):
                if _shapes(dict(mine)) != _shapes(dict(theirs)):
                    raise InvalidInputError(
                        f"fit {index} of the batch has other parameter shapes than fit 0 "
                        "(another image size or network): batch only fits of one shape"
                    )
        ys = [fitting.y for fitting in fittings]
        if len({tuple(y.shape) for y in ys}) > 1:
            raise InvalidInputError("the batch's observations differ in shape: batch fits of "
                                    "one task and image size")
        self.base = first
        self.params, self.buffers = stack_module_state(losses)
        self.y = torch.stack(ys)
        training = fittings[0].training
        self.optimizer = make_optimizer(
            self.params.items(), training.optimizer, training.lr, training.weight_decay
        )
        temperatures = [fitting.model.temperature for fitting in fittings]
        self.temperature: float | Tensor = temperatures[0]
        if len(set(temperatures)) > 1:  # one float keeps the single fit's arithmetic
            self.temperature = torch.tensor(temperatures, device=self.y.device)
        model = fittings[0].model
        self.jittered = model.jitter > 0
        self.z_shape = tuple(model.z.shape)
        self.has_normal = fittings[0].loss_fn.variational() is not None
        self.frozen: dict[int, dict[str, Tensor]] = {}  # fit -> its parameters, held
        in_dims = (0, 0, 0, 0 if self.has_normal else None, 0 if self.jittered else None,
                   0 if isinstance(self.temperature, Tensor) else None)
        self.step_fn = vmap(self._one, in_dims=in_dims, randomness="different")
        trackers = [fitting.tracker for fitting in fittings]
        self.tracking = None
        if TrackerBatch.supports(trackers):  # each fit's operator, mapped over the fits
            prefix = "elbo.model.operator."
            state = {name.removeprefix(prefix): value for name, value in self.buffers.items()
                     if name.startswith(prefix)}
            operator = first.elbo.model.operator
            observe = vmap(lambda buffers, image: functional_call(
                operator, buffers, (image[None],))[0])
            self.tracking = TrackerBatch(trackers, lambda images: observe(state, images))
        self._running: tuple[tuple[int, ...], Tensor] | None = None

    def _running_mask(self, running: Iterable[int]) -> Tensor:
        """1 for the ``running`` fits, 0 for the others, on the device (made anew only when
        the running fits change, so a step copies nothing to the device)."""
        key = tuple(sorted(running))
        if self._running is None or self._running[0] != key:
            mask = torch.zeros(len(self.fittings), device=self.y.device, dtype=self.y.dtype)
            mask[list(key)] = 1
            self._running = (key, mask)
        return self._running[1]

    def _one(self, params, buffers, y, eps, jitter_noise, temperature):
        return functional_call(self.base, (params, buffers), (y, eps, jitter_noise, temperature))

    def draws(self) -> tuple[Tensor | None, Tensor | None]:
        """Each fit's weight noise and jitter noise, from its own generator, in the order a
        single fit draws them."""
        eps, noise = [], []
        for fitting, generator in zip(self.fittings, self.generators, strict=True):
            if self.has_normal:
                eps.append(fitting.loss_fn.draw_noise(generator))
            if self.jittered:
                noise.append(torch.randn(self.z_shape, generator=generator,
                                         device=self.y.device))
        return (torch.stack(eps) if eps else None), (torch.stack(noise) if noise else None)

    def step(self) -> tuple[Tensor, Tensor]:
        """One optimiser step of every fit: (losses (B,), images (B, 1, C, H, W)), detached."""
        self.optimizer.zero_grad(set_to_none=True)
        eps, noise = self.draws()
        losses, images = self.step_fn(self.params, self.buffers, self.y, eps, noise,
                                      self.temperature)
        losses.sum().backward()
        self.optimizer.step()
        if self.frozen:
            with torch.no_grad():
                for index, values in self.frozen.items():
                    for name, value in values.items():
                        self.params[name][index] = value
        return losses.detach(), images.detach()

    def advance(self, step: int, running: Iterable[int]) -> None:
        """Step ``step`` (0-based) of every fit, recorded by the ``running`` fits' trackers
        and stop rules."""
        losses, images = self.step()
        if self.tracking is not None:
            self.tracking.update(step, losses, images[:, 0], self._running_mask(running))
        for index in running:
            fitting = self.fittings[index]
            if self.tracking is None:
                fitting.tracker.update(step, losses[index], images[index])
            if fitting.stopping is not None:
                value = fitting.tracker.curves[fitting.stopping.curve][step]
                fitting.stopping.observe(step, value, images[index])
            if fitting.tail is not None and step >= fitting.tail.start:
                image = images[index][0]
                fitting.tail.update(step, image, measure(fitting.model, image),
                                    [value[index] for value in self.params.values()])
            fitting.step = step + 1

    def freeze(self, index: int) -> None:
        """Hold fit ``index``'s parameters where they are from now on."""
        self.frozen[index] = {name: value[index].detach().clone()
                              for name, value in self.params.items()}

    def finite(self, fits: Sequence[int], since: Sequence[int], step: int) -> list[bool]:
        """For each of ``fits``: its losses from its ``since`` to ``step`` and its parameters
        finite (one sync)."""
        params = torch.stack([value.detach().reshape(len(value), -1).isfinite().all(1)
                              for value in self.params.values()]).all(0)
        losses = torch.stack([
            self.fittings[index].tracker.curves["loss"][start:step].isfinite().all()
            for index, start in zip(fits, since, strict=True)
        ])
        return (params[list(fits)] & losses).tolist()

    def write_back(self) -> None:
        """Copy each fit's stacked parameters into its own model and guide."""
        with torch.no_grad():
            for index, fitting in enumerate(self.fittings):
                own = dict(_PureLoss(fitting.loss_fn).named_parameters())
                for name, value in self.params.items():
                    own[name].copy_(value[index])


def fit_models(
    models: Sequence,
    guides: Sequence,
    observations: Sequence[Observation],
    generators: Sequence[torch.Generator],
    training: Training | None = None,
    *,
    progress: bool = True,
    stop: threading.Event | None = None,
    configs: Sequence | None = None,
    heldouts: Sequence[Tensor | None] | None = None,
) -> list[FitResult]:
    """Fit each model and guide to its observation, all in one batched computation, and
    summarise each fit's posterior predictive: the :func:`~pyrodip.infer.loop.fit_model` of
    each, up to float rounding (see the module's description for what a batch needs).

    Args:
        generators: one per fit, from :func:`fit_generator` right after building it.
        training: shared by every fit.
        stop: when set, the batch raises :class:`~pyrodip.infer.checkpoints.Interrupted`.
        configs: kept as each ``FitResult.config``.
        heldouts: each fit's held-out values (see :func:`~pyrodip.infer.loop.fit_model`).
    """
    training = training or Training()
    count = len(models)
    if not count or not (len(guides) == len(observations) == len(generators) == count):
        raise InvalidInputError("a batch needs one model, guide, observation and generator "
                                "per fit, and at least one fit")
    if training.capture:
        raise InvalidInputError("capture records one fit's step, not a batch's: drop --capture, "
                                "or fit one at a time (batch 1)")
    prior = getattr(models[0], "image_prior", None)
    if prior is not None and not prior.batchable:
        raise InvalidInputError(f"the image prior {prior.spec()} works between steps, which a "
                                "batch cannot: fit one at a time (batch 1)")
    if getattr(models[0], "sure", None) is not None:
        raise InvalidInputError("data_term=sure draws its probe from the global generator, "
                                "which a batch cannot: fit one at a time (batch 1)")
    if training.local_reparam or training.engine == "pyro":
        raise InvalidInputError("a batch runs the fast engine: use `engine=auto` and no "
                                "local reparameterisation, or fit one at a time")
    for model, guide in zip(models, guides, strict=True):
        reason = unsupported_reason(model, guide)
        if reason is not None:
            raise InvalidInputError(f"a batch runs the fast engine, which cannot fit this: "
                                    f"{reason}; fit one at a time")
    heldouts = list(heldouts) if heldouts is not None else [None] * count
    configs = list(configs) if configs is not None else [None] * count
    fittings = []
    for model, guide, observation, held in zip(models, guides, observations, heldouts,
                                               strict=True):
        check_stop_rule(training.stop_rule, guide, None, held)
        fittings.append(Fitting(model, guide, observation, training, None, "", held))
    with pyro.validation_enabled(False):  # vmap cannot run the data-dependent checks
        elapsed = _run(_Batch(fittings, generators), training, progress, stop)
    results = []
    with pyro.validation_enabled(loop.VALIDATE):
        for fitting, generator, config in zip(fittings, generators, configs, strict=True):
            fitting.elapsed = elapsed
            _use_generator(generator)  # the predictive draws what the fit alone would draw
            results.append(fitting.result(config))
    return results


def _run(batch: _Batch, training: Training, progress: bool, stop) -> float:
    """Step the batch to the end; the wall time in seconds."""
    fittings, steps = batch.fittings, training.steps
    for fitting in fittings:
        fitting.model.train()
    running = set(range(len(fittings)))
    good = [0] * len(fittings)  # each fit's step at its last check
    start = time.perf_counter()
    bar = tqdm(total=steps, desc=f"fitting {len(fittings)}", unit="step",
               disable=not progress, leave=False)
    base_lrs = [group["lr"] for group in batch.optimizer.param_groups]
    for step in range(steps):
        if training.lr_decay:
            set_lr(batch.optimizer, base_lrs, lr_factor(step, steps, training.lr_decay))
        batch.advance(step, running)
        bar.update()
        interrupted = stop is not None and stop.is_set()
        if (step + 1) % CHECK_EVERY and step + 1 < steps and not interrupted:
            continue
        order = sorted(running)
        finite = batch.finite(order, [good[i] for i in order], step + 1)
        for index, ok in zip(order, finite, strict=True):
            fitting = fittings[index]
            if not ok:
                fitting.status = "diverged"
                fitting.events.append({"step": step + 1, "rolled_back_to": None, "lr": None})
            elif fitting.stopping is not None and fitting.stopping.due(step):
                fitting.status = "stopped"
            else:
                good[index] = step + 1
                continue
            running.discard(index)
            batch.freeze(index)
        if interrupted:
            bar.close()
            raise Interrupted(step + 1, None)
        if not running:
            break
        if progress:
            bar.set_postfix(running=len(running), refresh=False)
    bar.close()
    batch.write_back()
    return time.perf_counter() - start
