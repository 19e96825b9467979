"""What a command prints when it is done: a reconstruction's or a volume's summary in a
few lines, and its noise level and calibration in words."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import xarray


def summary(dataset: xarray.Dataset, out: Path) -> str:
    """A few lines: what ran, the PSNRs, the uncertainty and the time."""
    a = dataset.attrs
    channels, height, width = (dataset.sizes[d] for d in ("channel", "y", "x"))
    lines = [
        f"pyrodip {a['task']}: {a['image']} ({channels}x{height}x{width}), {a['method']} "
        f"({a['guide']} guide, prior {a['prior']}), {a['steps']} steps"
        + (f", ensemble of {a['ensemble']} fits" if a.get("ensemble", 1) > 1 else ""),
    ]
    if "chosen_step" in a:
        ran = dataset.sizes["step"]
        how = f"stopped after {ran} steps" if a["status"] == "stopped" else f"ran all {ran} steps"
        lines.append(f"  stop rule       {a['stop_rule']}: {how}, kept step {a['chosen_step']}")
    if "noise_estimate" in a:
        lines.append(f"  noise           {noise_line(a)}")
    if "psnr_input" in a:
        psnr_in, ssim_in = a["psnr_input"], a["ssim_input"]
        lines.append(f"  observation     PSNR {psnr_in:6.2f} dB  SSIM {ssim_in:.3f}")
    if "mean_psnr" in a:
        psnr, ssim = a["mean_psnr"], a["mean_ssim"]
        gain = f"  ({psnr - a['psnr_input']:+.2f} dB)" if "psnr_input" in a else ""
        lines.append(f"  reconstruction  PSNR {psnr:6.2f} dB  SSIM {ssim:.3f}{gain}")
    if "baseline_psnr" in a:
        others = ""
        if "classical_psnr" in dataset and dataset.sizes["classical"] > 1:
            scores = dataset["classical_psnr"].to_series().drop(a["baseline_method"])
            others = "; " + ", ".join(f"{name} {value:.2f}" for name, value in scores.items())
        lines.append(
            f"  best baseline   PSNR {a['baseline_psnr']:6.2f} dB  SSIM {a['baseline_ssim']:.3f}"
            f"  ({a['baseline_method']}{others})"
        )
    if "psnr_missing" in a:
        lines.append(
            f"  missing pixels  PSNR {a['psnr_missing']:6.2f} dB (baseline "
            f"{a['baseline_psnr_missing']:.2f} dB)"
        )
    if "ensemble_member_psnr" in dataset:
        members = dataset["ensemble_member_psnr"].values
        lines.append(
            f"  ensemble        members PSNR {members.min():.2f} to {members.max():.2f} dB "
            f"(member 0: {members[0]:.2f}); spread of their means (std) "
            f"{a['mean_std_between']:.4f}"
        )
    drawn = ("renders of the last steps" if a.get("readout") == "renders"
             else "samples")
    lines.append(
        f"  mean uncertainty (std) {a['mean_std_total']:.4f} from {a['samples']} {drawn}"
    )
    lines.append(f"  calibration     {calibration_line(a)}")
    if "coverage_68" in a and a.get("calibration", "none") != "none":
        lines.append(
            f"  coverage vs truth  68 %: {a['coverage_68_raw']:.2f} raw -> {a['coverage_68']:.2f}"
            f",  95 %: {a['coverage_95_raw']:.2f} raw -> {a['coverage_95']:.2f}"
        )
    lines.append(f"  time {a['wall_time_s']:.1f} s; wrote {out / 'result.nc'} and panel.png")
    return "\n".join(lines)


def calibration_line(attrs: dict) -> str:
    """How the std was calibrated and the coverage it targets, in words.

    >>> calibration_line({"calibration": "scale", "calibration_scale": 2.0,
    ...                   "calibration_heldout": 1638})
    'std x 2.00 fitted on 1638 held-out values (scale): targets 68 % and 95 % coverage'
    """
    method = attrs.get("calibration", "none")
    if method == "none":
        return "none (the std as the posterior gives it)"
    scale = attrs["calibration_scale"]
    if scale != scale:  # NaN
        return f"{method}: no scale (the prediction has no uncertainty)"
    target = ("68 % and 95 % coverage" if method == "scale" else
              f"at least {attrs['calibration_coverage']:.0%} coverage of observed values")
    return (f"std x {scale:.2f} fitted on {attrs['calibration_heldout']} held-out values "
            f"({method}): targets {target}")


def noise_line(attrs: dict) -> str:
    """The noise level of an observed image and where it came from, in words.

    >>> noise_line({"noise": "gaussian", "likelihood_noise": 0.05, "noise_estimate": 0.0493,
    ...             "config": '{"noise_std": null, "photons": null, "noise": "gaussian"}'})
    'gaussian, std 0.0493 estimated from the image'
    """
    config = json.loads(attrs["config"])
    key, what = _level_words(attrs["noise"])
    estimate = f"{attrs['noise_estimate']:.3g}"
    if config[key] is None:
        return f"{attrs['noise']}, {what} {estimate} estimated from the image"
    return f"{attrs['noise']}, {what} {config[key]:g} as given (the image suggests {estimate})"


def _level_words(noise: str) -> tuple[str, str]:
    """The setting that gives noise model ``noise``'s level, and the level's name in words."""
    from ..physics.tasks import noise_level_setting

    key = noise_level_setting(noise)
    return key, "peak" if key == "photons" else "std"


def volume_summary(dataset: xarray.Dataset, out: Path, seconds: float) -> str:
    """A few lines on a volume's reconstruction: what ran, the noise, the PSNRs per slice
    (when the truth is known), the uncertainty and the ``seconds`` the command took."""
    import numpy as np

    a = dataset.attrs
    config = json.loads(a["config"])
    count = dataset.sizes["slice"]
    height, width = dataset.sizes["y"], dataset.sizes["x"]
    lines = [
        f"pyrodip {a['task']}: {a['image']}, slices {a['slices']} ({count} x {height}x{width}), "
        f"{a['method']} ({a['guide']} guide, prior {a['prior']}), {a['steps']} steps per slice"
    ]
    if "noise_estimate" in dataset:
        estimates = dataset["noise_estimate"].values
        key, what = _level_words(a["noise"])
        how = (f"estimated over the {count} slices" if "volume_noise_estimate" in a else
               "as given")
        lines.append(
            f"  noise           {a['noise']}, {what} {config[key]:.3g} {how} (per slice "
            f"{np.nanmin(estimates):.3g}-{np.nanmax(estimates):.3g})"
        )
    if "mean_psnr" in dataset:
        psnr = dataset["mean_psnr"].values
        line = f"  reconstruction  PSNR {np.mean(psnr):6.2f} dB ({psnr.min():.2f}-{psnr.max():.2f})"
        if "psnr_input" in dataset:
            gain = psnr - dataset["psnr_input"].values
            line += f", {gain.min():+.2f} to {gain.max():+.2f} dB over the observation"
        lines.append(line)
    lines.append(f"  mean uncertainty (std) {float(dataset['std_total'].mean()):.4f}")
    lines.append(f"  time {seconds:.1f} s; wrote {out / 'result.nc'} and panel.png")
    return "\n".join(lines)
