"""Figures drawn from a result dataset (never from live objects), with matplotlib's Agg canvas.

>>> # plot_panel(read_dataset("runs/x/result.nc"), "runs/x/panel.png")
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import xarray as xr
from matplotlib.figure import Figure

from .errors import InvalidInputError
from .io.files import atomic_path

#: The coverage variables of a comparison that :func:`plot_error_by_std` labels.
COVERAGE_VARIABLES = ("coverage_68", "coverage_95", "coverage_68_raw", "coverage_95_raw")


def save_figure(figure: Figure, path: str | os.PathLike) -> Path:
    """Write ``figure`` as a PNG at ``path``, atomically."""
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=100)
    return Path(path)


def _display(image: xr.DataArray) -> np.ndarray:
    """(channel, y, x) -> an array imshow takes: (y, x) for gray, (y, x, 3) for RGB."""
    values = np.asarray(image.values)
    return values[0] if values.shape[0] == 1 else np.moveaxis(values, 0, -1).clip(0, 1)


def _image_name(attrs: dict) -> str:
    """The image of a run as titles show it: its file name, or ``sample:NAME``."""
    return Path(attrs.get("image", "")).name


def error_by_std(mean, std, truth, bins: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """The pixels in ``bins`` bins of equal count by ``std``: each bin's RMS std and RMS error
    of ``mean`` against ``truth`` (a calibrated std lies on the diagonal).

    >>> std = np.linspace(0.1, 1, 100)
    >>> rms_std, rms_error = error_by_std(np.zeros(100), std, 2 * std, bins=2)
    >>> bool(np.allclose(rms_error, 2 * rms_std))
    True
    """
    mean, std, truth = (np.asarray(a, dtype=float).ravel() for a in (mean, std, truth))
    keep = np.isfinite(mean) & np.isfinite(std) & np.isfinite(truth)
    mean, std, truth = mean[keep], std[keep], truth[keep]
    groups = np.array_split(np.argsort(std, kind="stable"), bins)
    rms = [(np.sqrt(np.mean(std[g] ** 2)), np.sqrt(np.mean((mean[g] - truth[g]) ** 2)))
           for g in groups if g.size]
    return np.array([r[0] for r in rms]), np.array([r[1] for r in rms])


def plot_error_by_std(ax, dataset: xr.Dataset, label: str = "", color=None) -> None:
    """Draw :func:`error_by_std` of one run on ``ax``: the std it reports (solid) and, when
    it was recalibrated, the raw one (dashed), labelled with their 68 % and 95 % coverage; the
    axes become square with the diagonal (a calibrated std lies on it)."""
    attrs = dataset.attrs
    for name, suffix, style in (("std_total", "", "o-"), ("std_total_raw", "_raw", "x--")):
        coverage = attrs.get(f"coverage_68{suffix}", np.nan)
        if name not in dataset or not np.isfinite(coverage):
            continue
        rms_std, rms_error = error_by_std(dataset["mean"], dataset[name], dataset["truth"])
        kind = "raw" if suffix else ("calibrated" if np.isfinite(
            attrs.get("coverage_68_raw", np.nan)) else "std")
        ax.plot(rms_std, rms_error, style, ms=3, lw=1, color=color,
                label=f"{label}{kind}: cover {coverage:.2f} (68 %), "
                f"{attrs[f'coverage_95{suffix}']:.2f} (95 %)")
    lines = [line for line in ax.lines if line.get_label() != "calibrated std"]
    top = max((float(np.max([*line.get_xdata(), *line.get_ydata()])) for line in lines),
              default=1.0) * 1.05
    for line in ax.lines:
        if line.get_label() == "calibrated std":
            line.remove()
    ax.plot([0, top], [0, top], "k:", lw=1, label="calibrated std")
    ax.set_xlim(0, top)
    ax.set_ylim(0, top)
    ax.set_xlabel("RMS std (binned by std)")
    ax.set_ylabel("RMS error")
    ax.grid(alpha=0.3)


def panel_figure(dataset: xr.Dataset) -> Figure:
    """Truth, observation, mean, absolute error, uncertainty, the PSNR curve and (with a truth)
    the error against the std before and after calibration, of one run."""
    has_truth = "truth" in dataset
    tiles = [("truth", "truth")] if has_truth else []
    tiles += [("observation", "observation"), ("mean", "reconstruction (mean)")]
    if has_truth:
        tiles.append(("error", "absolute error"))
    tiles.append(("std_total", "uncertainty (std)"))
    calibrated = has_truth and "coverage_68" in dataset.attrs
    plots = 1 + calibrated
    figure = Figure(figsize=(3.2 * (len(tiles) + plots), 3.4), layout="constrained")
    axes = figure.subplots(1, len(tiles) + plots)
    if calibrated:
        plot_error_by_std(axes[-1], dataset)
        axes[-1].legend(fontsize=6)
        axes[-1].set_title(f"error against std\n{dataset.attrs.get('calibration', 'none')} "
                           "calibration", fontsize=9)
        axes = axes[:-1]
    for ax, (name, title) in zip(axes, tiles, strict=False):
        if name == "error":
            image = abs(dataset["mean"] - dataset["truth"]).mean("channel", keepdims=True)
            shown = ax.imshow(_display(image), cmap="magma")
            figure.colorbar(shown, ax=ax, shrink=0.8)
        elif name == "std_total":
            std = dataset[name].mean("channel", keepdims=True)
            shown = ax.imshow(_display(std), cmap="viridis")
            figure.colorbar(shown, ax=ax, shrink=0.8)
        elif name == "observation" and dataset.sizes["obs_y"] != dataset.sizes["y"]:
            # a sinogram or a low-resolution image: its own range, stretched to the tile
            ax.imshow(_display(dataset[name]), cmap="gray", aspect="auto")
        else:
            ax.imshow(_display(dataset[name]), cmap="gray", vmin=0, vmax=1)
        if name == "mean" and "mean_psnr" in dataset.attrs:
            title += f"\nPSNR {dataset.attrs['mean_psnr']:.2f} dB"
        if name == "observation" and "psnr_input" in dataset.attrs:
            title += f"\nPSNR {dataset.attrs['psnr_input']:.2f} dB"
        ax.set_title(title, fontsize=9)
        ax.axis("off")
    curve = axes[-1]
    for name, label in (("psnr", "smoothed vs truth"), ("psnr_observation", "smoothed vs obs.")):
        if name in dataset:
            curve.plot(dataset["step"], dataset[name], label=label, lw=1)
    curve.set_xlabel("step")
    curve.set_ylabel("PSNR (dB)")
    curve.legend(fontsize=8)
    curve.grid(alpha=0.3)
    figure.suptitle(
        f"{dataset.attrs.get('method', '')} on {_image_name(dataset.attrs)}", fontsize=10
    )
    return figure


def plot_panel(dataset: xr.Dataset, path: str | os.PathLike) -> Path:
    """Save :func:`panel_figure` as a PNG, atomically."""
    return save_figure(panel_figure(dataset), path)


def plot_calibration(dataset: xr.Dataset, path: str | os.PathLike) -> Path:
    """Save the reliability diagram (mean predicted variance against MSE per variance bin) and
    the sparsification curves (model against oracle) of ``dataset`` as a PNG, atomically."""
    if "reliability_mse" not in dataset:
        raise InvalidInputError(
            "plot_calibration: the dataset has no calibration variables; they need a truth "
            "(simulate the observation from a clean image)"
        )
    attrs = dataset.attrs
    figure = Figure(figsize=(9, 3.8), layout="constrained")
    reliability, sparsification = figure.subplots(1, 2)
    variance = dataset["reliability_variance"].values
    mse = dataset["reliability_mse"].values
    filled = dataset["reliability_count"].values > 0
    top = max(float(variance[filled].max()), float(mse[filled].max())) or 1.0
    reliability.plot([0, top], [0, top], "k--", lw=1, label="calibrated")
    reliability.plot(variance[filled], mse[filled], "o-", lw=1, label="model")
    reliability.set_xlabel("mean predicted variance")
    reliability.set_ylabel("mean squared error")
    reliability.set_title(f"reliability, UCE {attrs['uce']:.3g}", fontsize=10)
    fraction = dataset["sparsification_fraction"]
    sparsification.plot(
        fraction, dataset["sparsification_error"], lw=1, label=f"model (AUSE {attrs['ause']:.3g})"
    )
    sparsification.plot(fraction, dataset["sparsification_oracle"], "k--", lw=1, label="oracle")
    sparsification.set_xlabel("fraction of pixels removed")
    sparsification.set_ylabel("MSE of the rest / MSE")
    sparsification.set_title(
        f"sparsification, coverage {attrs['coverage_68']:.2f} (68 %), "
        f"{attrs['coverage_95']:.2f} (95 %)",
        fontsize=10,
    )
    for ax in (reliability, sparsification):
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    figure.suptitle(
        f"{attrs.get('method', '')} on {_image_name(attrs)}: calibration against the truth",
        fontsize=10,
    )
    return save_figure(figure, path)


# --- Bayesian optimisation (pyrodip.studies.bo) -------------------------------------------------


def bo_surface_figure(dataset: xr.Dataset) -> Figure:
    """The GP of a study (``bo.nc``, or the dataset of one proposal). One setting: the paper's
    plot, the posterior mean +- 2 std with the trials above the acquisition, running trials
    dotted, new candidates dashed. Two settings: heat maps of the mean and the acquisition."""
    params = json.loads(dataset.attrs["params"])
    status = dataset["status"].values
    objective = dataset.attrs["objective_name"]
    done = int((status != "running").sum())
    title = dataset.attrs.get("title", f"GP after {done} trials")
    candidates = "candidate" in dataset.dims
    if len(params) == 1:
        name, log = params[0]["name"], params[0]["log"]
        x, trials = dataset[f"grid_{name}"].values, dataset[name].values
        mean, std = dataset["gp_mean"].values, dataset["gp_std"].values
        figure = Figure(figsize=(7, 5.5), layout="constrained")
        top, bottom = figure.subplots(2, 1, sharex=True, height_ratios=[2, 1])
        top.fill_between(x, mean - 2 * std, mean + 2 * std, alpha=0.25, label="GP mean ± 2 std")
        top.plot(x, mean, lw=1.5)
        ok = status == "ok"
        top.plot(trials[ok], dataset["objective"].values[ok], "ko", ms=4, label="trials")
        if (status == "failed").any():
            low = top.get_ylim()[0]
            failed = trials[status == "failed"]
            top.plot(failed, np.full(len(failed), low), "rx", clip_on=False, label="failed")
        bottom.plot(x, dataset["acquisition"].values, color="C2", lw=1.5)
        lines = [(trials[status == "running"], "gray", ":", "running")]
        if candidates:
            lines.append((dataset[f"candidate_{name}"].values, "C3", "--", "next candidates"))
        for values, color, style, label in lines:
            for i, value in enumerate(values):
                for ax in (top, bottom):
                    ax.axvline(value, color=color, ls=style, lw=1,
                               label=label if i == 0 and ax is top else None)
        top.set_ylabel(objective)
        bottom.set_ylabel("log EI (acquisition)")
        bottom.set_xlabel(name)
        top.legend(fontsize=8)
        for ax in (top, bottom):
            ax.grid(alpha=0.3)
            if log:
                ax.set_xscale("log")
        figure.suptitle(title, fontsize=10)
        return figure
    (a, b) = params
    figure = Figure(figsize=(11, 4.5), layout="constrained")
    axes = figure.subplots(1, 2)
    ok, failed = status == "ok", status == "failed"
    panels = (("gp_mean", f"GP mean of {objective}"), ("acquisition", "log EI (acquisition)"))
    for ax, (variable, label) in zip(axes, panels, strict=True):
        shown = ax.pcolormesh(
            dataset[f"grid_{b['name']}"].values, dataset[f"grid_{a['name']}"].values,
            dataset[variable].values, shading="auto",
        )
        figure.colorbar(shown, ax=ax, shrink=0.9)
        ax.plot(dataset[b["name"]].values[ok], dataset[a["name"]].values[ok], "ko", ms=4,
                label="trials")
        if failed.any():
            ax.plot(dataset[b["name"]].values[failed], dataset[a["name"]].values[failed], "rx",
                    label="failed")
        if candidates:
            ax.plot(dataset[f"candidate_{b['name']}"].values,
                    dataset[f"candidate_{a['name']}"].values, "r*", ms=10, label="next")
        ax.set_xlabel(b["name"])
        ax.set_ylabel(a["name"])
        ax.set_xscale("log" if b["log"] else "linear")
        ax.set_yscale("log" if a["log"] else "linear")
        ax.set_title(label, fontsize=10)
    axes[0].legend(fontsize=8)
    figure.suptitle(title, fontsize=10)
    return figure


def bo_progress_figure(dataset: xr.Dataset) -> Figure:
    """The objective of every trial and the best observed so far, against the trial number;
    the initial design shaded, the GP's best trial starred."""
    trial, value = dataset["trial"].values, dataset["objective"].values
    status, rounds = dataset["status"].values, dataset["round"].values
    ok = status == "ok"
    best_so_far = np.fmax.accumulate(np.where(ok, value, -np.inf))
    figure = Figure(figsize=(7, 4), layout="constrained")
    ax = figure.subplots()
    initial = int((rounds == 0).sum())
    ax.axvspan(-0.5, initial - 0.5, color="gray", alpha=0.12, label="initial design")
    ax.plot(trial[ok], value[ok], "ko", ms=4, label="trial")
    shown = np.isfinite(best_so_far)
    ax.step(trial[shown], best_so_far[shown], where="post", color="C0", label="best so far")
    best = json.loads(dataset.attrs["best"])
    if best is not None:
        ax.plot([best["trial"]], [best["observed"]], "*", color="C3", ms=12,
                label="best by GP mean")
    if (~ok).any():
        low = ax.get_ylim()[0]
        ax.plot(trial[~ok], np.full(int((~ok).sum()), low), "rx", clip_on=False,
                label="failed")
    ax.set_xlabel("trial")
    ax.set_ylabel(dataset.attrs["objective_name"])
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return figure


def plot_bo_surface(dataset: xr.Dataset, path: str | os.PathLike) -> Path:
    """Save :func:`bo_surface_figure` as a PNG, atomically."""
    return save_figure(bo_surface_figure(dataset), path)


def plot_bo_progress(dataset: xr.Dataset, path: str | os.PathLike) -> Path:
    """Save :func:`bo_progress_figure` as a PNG, atomically."""
    return save_figure(bo_progress_figure(dataset), path)


def comparison_figures(comparison: xr.Dataset, folder: str | os.PathLike) -> list[Path]:
    """Save the comparison's figures in ``folder``: ``psnr_curves.png`` (smoothed PSNR against
    step per method, mean +- std over seeds, a panel per image: the paper's main figure),
    ``calibration.png`` (error against std per method, raw and calibrated, with their
    coverages; the first seed) and
    ``uncertainty_IMAGE.png`` (a row per method: mean, absolute error, std; the first seed)."""
    folder = Path(folder)
    images = list(comparison["image"].values)
    written = []
    if "truth" in comparison and "coverage_68" in comparison:
        figure = Figure(figsize=(5 * len(images), 4.2), layout="constrained")
        for ax, image in zip(np.atleast_1d(figure.subplots(1, len(images))), images,
                             strict=True):
            for index, method in enumerate(comparison["method"].values):
                run = comparison.sel({"image": image, "method": method}).isel(seed=0)
                run.attrs = {name: float(run[name]) for name in COVERAGE_VARIABLES
                             if name in run}
                if not np.isfinite(run.attrs.get("coverage_68", np.nan)):
                    continue  # no std (plain DIP) or no run
                plot_error_by_std(ax, run, f"{method} ", color=f"C{index}")
            ax.set_title(f"{image}: error against std (seed {int(comparison['seed'][0])})",
                         fontsize=10)
            ax.legend(fontsize=6)
        save_figure(figure, folder / "calibration.png")
        written.append(folder / "calibration.png")
    if "psnr" in comparison:
        figure = Figure(figsize=(5 * len(images), 3.6), layout="constrained")
        for ax, image in zip(np.atleast_1d(figure.subplots(1, len(images))), images,
                             strict=True):
            for method in comparison["method"].values:
                curve = comparison["psnr"].sel({"image": image, "method": method})
                mean, std = curve.mean("seed"), curve.std("seed")
                steps = comparison["step"].values
                ax.plot(steps, mean, lw=1, label=str(method))
                ax.fill_between(steps, mean - std, mean + std, alpha=0.25)
            ax.set(title=str(image), xlabel="step", ylabel="PSNR (dB), smoothed vs truth")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8)
        save_figure(figure, folder / "psnr_curves.png")
        written.append(folder / "psnr_curves.png")
    for image in images:
        methods = list(comparison["method"].values)
        figure = Figure(figsize=(9.6, 3.0 * len(methods)), layout="constrained")
        axes = np.atleast_2d(figure.subplots(len(methods), 3))
        for row, method in zip(axes, methods, strict=True):
            run = comparison.sel({"image": image, "method": method}).isel(seed=0)
            tiles = [(run["mean"], "mean", "gray"), (run["std_total"], "std", "viridis")]
            if "truth" in run:
                tiles.insert(1, (abs(run["mean"] - run["truth"]), "absolute error", "magma"))
            for ax, (values, title, cmap) in zip(row, tiles, strict=False):
                shown = ax.imshow(_display(values.dropna("y", how="all").dropna("x", how="all")),
                                  cmap=cmap, **({"vmin": 0, "vmax": 1} if cmap == "gray" else {}))
                if cmap != "gray":
                    figure.colorbar(shown, ax=ax, shrink=0.8)
                ax.set_title(f"{method}: {title}", fontsize=9)
            for ax in row:
                ax.axis("off")
        path = folder / f"uncertainty_{image}.png"
        save_figure(figure, path)
        written.append(path)
    return written
