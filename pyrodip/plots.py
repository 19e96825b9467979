"""Figures drawn from a result dataset (never from live objects), with matplotlib's Agg canvas.

>>> # plot_panel(read_dataset("runs/x/result.nc"), "runs/x/panel.png")
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import xarray as xr
from matplotlib.figure import Figure

from .results import atomic_path


def _display(image: xr.DataArray) -> np.ndarray:
    """(channel, y, x) -> an array imshow takes: (y, x) for gray, (y, x, 3) for RGB."""
    values = np.asarray(image.values)
    return values[0] if values.shape[0] == 1 else np.moveaxis(values, 0, -1).clip(0, 1)


def panel_figure(dataset: xr.Dataset) -> Figure:
    """Truth, observation, mean, absolute error, uncertainty and the PSNR curve of one run."""
    has_truth = "truth" in dataset
    tiles = [("truth", "truth")] if has_truth else []
    tiles += [("observation", "observation"), ("mean", "reconstruction (mean)")]
    if has_truth:
        tiles.append(("error", "absolute error"))
    tiles.append(("std_total", "uncertainty (std)"))
    figure = Figure(figsize=(3.2 * (len(tiles) + 1), 3.4), layout="constrained")
    axes = figure.subplots(1, len(tiles) + 1)
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
        if name == "mean" and "psnr" in dataset.attrs:
            title += f"\nPSNR {dataset.attrs['psnr']:.2f} dB"
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
        f"{dataset.attrs.get('method', '')} on {dataset.attrs.get('image', '')}", fontsize=10
    )
    return figure


def plot_panel(dataset: xr.Dataset, path: str | os.PathLike) -> Path:
    """Save :func:`panel_figure` as a PNG, atomically."""
    with atomic_path(path) as tmp:
        panel_figure(dataset).savefig(tmp, format="png", dpi=100)
    return Path(path)
