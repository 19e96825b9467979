"""Fitting: SVI on the Bayesian DIP with ``TraceMeanField_ELBO``, tracked step by step.

>>> import torch
>>> from pyrodip import Observation, RunConfig, fit
>>> obs = Observation.simulate(torch.rand(1, 32, 32), noise=0.1, seed=0)
>>> result = fit(obs, RunConfig(steps=3, samples=2), progress=False)
>>> result.history.curves["loss"].shape, result.prediction.mean.shape
((3,), torch.Size([1, 32, 32]))
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import pyro
import torch
from pyro.infer import TraceMeanField_ELBO
from torch import Tensor
from tqdm.auto import tqdm

from .config import RunConfig
from .errors import InvalidInputError
from .guides import WeightGuide, make_guide
from .metrics import psnr, ssim
from .model import BayesianDIP
from .observation import Observation
from .predictive import Prediction, predict

PROGRESS_EVERY = 25  # steps between progress-bar updates (each one syncs with the device)
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
    model = BayesianDIP(
        observation.image_shape,
        net=config.net,
        prior=f"{config.prior}:{config.prior_scale}",
        likelihood=likelihood,
        operator=observation.operator,
        kl_weight=config.resolved("kl_weight"),
        jitter=config.jitter,
        bayesian_batchnorm=config.bayesian_batchnorm,
    )
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
) -> FitResult:
    """Fit the Bayesian DIP that ``config`` describes to ``observation`` and summarise the
    posterior predictive. Seeds every random number generator from ``config.seed`` first, so
    equal configs give equal results (on the same device).

    Args:
        progress: show a progress bar with the loss and PSNR.
        validate: Pyro's distribution and trace checks (slow: for tests and debugging);
            None follows :data:`VALIDATE`.
    """
    config = config or RunConfig()
    device = resolve_device(config.device)
    pyro.set_rng_seed(config.seed)
    model, guide = build(config, observation)
    model.to(device)
    guide.to(device)
    start = time.perf_counter()
    with pyro.validation_enabled(VALIDATE if validate is None else validate):
        history, smoothed = train(model, guide, observation, config, progress=progress)
        prediction = predict(model, guide, num_samples=config.samples)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return FitResult(
        config=config,
        observation=observation,
        model=model,
        guide=guide,
        history=history,
        prediction=prediction,
        smoothed=smoothed,
        wall_time_s=time.perf_counter() - start,
    )


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


OPTIMIZERS = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "sgd": torch.optim.SGD}


def make_loss(model: BayesianDIP, guide: WeightGuide, engine: str = "auto") -> torch.nn.Module:
    """The negative ELBO of ``model`` and ``guide`` as a module: ``loss_fn(y)`` is a scalar
    whose gradients reach the guide's and the model's parameters. ``engine`` (see
    :data:`pyrodip.config.ENGINES`): ``pyro`` is Pyro's ``TraceMeanField_ELBO``."""
    if engine == "fast":
        raise InvalidInputError("engine 'fast' is not available yet: use --engine pyro")
    return TraceMeanField_ELBO()(model, guide)


def train(
    model: BayesianDIP,
    guide: WeightGuide,
    observation: Observation,
    config: RunConfig,
    progress: bool = True,
) -> tuple[History, Tensor]:
    """Run ``config.steps`` SVI steps; return the curves and the smoothed image."""
    device = model.z.device
    y = observation.observation.unsqueeze(0).to(device)
    truth = observation.truth.unsqueeze(0).to(device) if observation.has_truth else None
    loss_fn = make_loss(model, guide, config.engine)
    optimizer = make_optimizer(loss_fn, config)
    tracker = _Tracker(
        config.steps, y, truth, model.operator, config.ema, device, observation.observation_range
    )
    model.train()
    bar = tqdm(range(config.steps), desc="fitting", unit="step", disable=not progress, leave=False)
    for step in bar:
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(y)
        loss.backward()
        optimizer.step()
        tracker.update(step, loss.detach(), model.last_image)
        if progress and (step % PROGRESS_EVERY == 0 or step == config.steps - 1):
            bar.set_postfix(tracker.summary(step), refresh=False)
    bar.close()
    return History(tracker.numpy()), tracker.smoothed[0]


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

    def numpy(self) -> dict[str, np.ndarray]:
        return {name: values.cpu().numpy() for name, values in self.curves.items()}
