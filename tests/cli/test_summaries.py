"""What a command prints when it is done (pyrodip.cli.summaries)."""

import json
from pathlib import Path

import numpy as np
import xarray

from pyrodip.cli.summaries import noise_line, summary, volume_summary

RUN = {"task": "denoise", "image": "sample:ct", "method": "mfvi", "guide": "meanfield",
       "prior": "normal:0.1", "steps": 3}


def test_summary_names_the_run_the_psnrs_and_the_folder():
    dataset = xarray.Dataset(
        {"mean": (("channel", "y", "x"), np.zeros((1, 4, 8)))},
        attrs={**RUN, "psnr_input": 20.0, "ssim_input": 0.25, "mean_psnr": 27.5, "mean_ssim": 0.7,
               "mean_std_total": 0.02, "samples": 2, "wall_time_s": 1.3},
    )
    lines = summary(dataset, Path("runs/x")).splitlines()
    assert lines[0] == ("pyrodip denoise: sample:ct (1x4x8), mfvi (meanfield guide, prior "
                        "normal:0.1), 3 steps")
    assert "  reconstruction  PSNR  27.50 dB  SSIM 0.700  (+7.50 dB)" in lines
    assert "  calibration     none (the std as the posterior gives it)" in lines
    assert lines[-1] == "  time 1.3 s; wrote runs/x/result.nc and panel.png"


def test_a_given_noise_level_is_shown_with_the_estimate():
    attrs = {"noise": "poisson", "noise_estimate": 98.7,
             "config": json.dumps({"noise_std": None, "photons": 100.0})}
    assert noise_line(attrs) == "poisson, peak 100 as given (the image suggests 98.7)"


def test_volume_summary_gives_the_range_over_the_slices():
    dims = ("slice", "channel", "y", "x")
    dataset = xarray.Dataset(
        {"std_total": (dims, np.full((2, 1, 4, 4), 0.5)),
         "noise_estimate": ("slice", [0.04, 0.06]),
         "mean_psnr": ("slice", [30.0, 32.0]), "psnr_input": ("slice", [20.0, 21.0])},
        attrs={**RUN, "slices": "0:2", "noise": "gaussian", "volume_noise_estimate": 0.05,
               "config": json.dumps({"noise_std": 0.05})},
    )
    lines = volume_summary(dataset, Path("vol"), 3.0).splitlines()
    assert lines[0].startswith("pyrodip denoise: sample:ct, slices 0:2 (2 x 4x4), mfvi")
    assert lines[1] == ("  noise           gaussian, std 0.05 estimated over the 2 slices "
                        "(per slice 0.04-0.06)")
    assert lines[2] == ("  reconstruction  PSNR  31.00 dB (30.00-32.00), +10.00 to +11.00 dB "
                        "over the observation")
    assert lines[3:] == ["  mean uncertainty (std) 0.5000", "  time 3.0 s; wrote vol/result.nc "
                         "and panel.png"]
