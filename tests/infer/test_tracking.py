"""pyrodip.infer.tracking: the curves a fit records step by step (with and without a truth)
and the held-out residual."""

import numpy as np
import pytest
import torch

from pyrodip import Observation, RunConfig, fit
from pyrodip.infer.tracking import Tracker
from pyrodip.physics.operators import Identity

QUICK = RunConfig(steps=5, samples=2)


def test_curves_cover_every_step_and_metric(noisy64):
    result = fit(noisy64, QUICK, progress=False)
    curves = result.history.curves
    for name in ("loss", "psnr", "ssim", "psnr_current", "ssim_current", "psnr_observation",
                 "ssim_observation", "psnr_current_observation", "ssim_current_observation"):
        assert curves[name].shape == (5,) and np.isfinite(curves[name]).all()
    assert list(result.history.steps) == [1, 2, 3, 4, 5]


def test_observation_without_truth_tracks_only_data_fit(noisy64):
    observed = Observation.observed(noisy64.observation, noise=0.1)
    result = fit(observed, QUICK, progress=False)
    assert "psnr" not in result.history.curves
    assert "psnr_observation" in result.history.curves


def test_heldout_residual_is_the_mean_square_at_the_held_out_values():
    torch.manual_seed(1)
    y, image = torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 8)
    held = torch.zeros(1, 8, 8, dtype=torch.bool)
    held[0, 2:5, 1:3] = True  # all channels of 6 positions
    tracker = Tracker(1, y, None, Identity(), 0.9, "cpu", 1.0, heldout=held)
    tracker.update(0, torch.tensor(0.0), image)
    expected = (image - y)[:, :, 2:5, 1:3].square().mean()
    assert float(tracker.curves["mse_heldout"][0]) == pytest.approx(float(expected), rel=1e-6)
