"""A Bayesian-optimisation study's results: the ``bo.nc`` dataset (trials, the GP and the
acquisition on a grid, the best settings), its summary, and the GP helpers it shares with the
loop in :mod:`pyrodip.studies.bo`.

>>> GRID_POINTS
{1: 200, 2: 40}
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
import xarray as xr
from torch import Tensor

from ..errors import InvalidInputError, MissingFileError
from ..io.files import finish_result_set
from ..run.results import read_dataset
from ..version import __version__
from .bo_study import RESULT_FILE, Param, Study, Trial

#: Quasi-Monte Carlo samples of the acquisition function.
MC_SAMPLES = 256
#: Successful trials the GP needs; until then candidates continue the Sobol sequence.
MIN_GP_TRIALS = 2
#: Points per axis of the grid on which bo.nc stores the GP and the acquisition (1-D, 2-D).
GRID_POINTS = {1: 200, 2: 40}

DTYPE = torch.float64


def best_parameters(path: str | os.PathLike) -> dict[str, float]:
    """The best settings of a finished study (its ``bo.nc``, or the study folder).

    Apply them with ``config.replace(**best_parameters(path))``.
    """
    path = Path(path)
    if path.is_dir():
        path = path / RESULT_FILE
    finish_result_set(path.parent)  # a set whose writer was killed while it moved it into place
    if not path.is_file():
        raise MissingFileError(f"study result not found: {path} (give a bo.nc or its folder)")
    try:
        best = json.loads(read_dataset(path).attrs["best"])
    except (OSError, KeyError, ValueError):
        raise InvalidInputError(f"{path} is not a pyrodip bo.nc (no 'best' attribute)") from None
    if best is None:
        raise InvalidInputError(f"the study in {path} has no successful trial to take")
    return best["params"]


def unit_points(params: Sequence[Param], trials) -> Tensor:
    """The trials' settings scaled to [0, 1], shaped (n, d)."""
    rows = [[p.to_unit(t.params[p.name]) for p in params] for t in trials]
    return torch.tensor(rows, dtype=DTYPE).reshape(len(rows), len(params))


@contextlib.contextmanager
def gp_context() -> Iterator[None]:
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


def fit_gp(x: Tensor, ok: list[Trial]):
    """SingleTaskGP on (x, objective), outcomes standardised, noise learned; fitted by ML-II."""
    from botorch.fit import fit_gpytorch_mll
    from botorch.models import SingleTaskGP
    from gpytorch.mlls import ExactMarginalLogLikelihood

    y = torch.tensor([[t.objective] for t in ok], dtype=DTYPE)
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
        with torch.random.fork_rng(devices=[]), gp_context():
            torch.manual_seed(study.seed)
            if model is None:
                model = fit_gp(unit_points(study.params, ok), ok)
            best = _best(model, unit_points(study.params, ok), ok)
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
    axis = torch.linspace(0, 1, GRID_POINTS[d], dtype=DTYPE)
    units = torch.cartesian_prod(*[axis] * d).reshape(-1, d)
    if acquisition is None:  # the next proposal's: no trial running
        sampler = SobolQMCNormalSampler(torch.Size([MC_SAMPLES]), seed=study.seed)
        acquisition = qLogNoisyExpectedImprovement(
            model, unit_points(study.params, ok), sampler=sampler
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
