"""Early stopping without ground truth: the rule on synthetic curves, the window variance
against its closed form, and the rule inside a fit (dip-es, the held-out rule, resume)."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from pyrodip import RunConfig, fit
from pyrodip.errors import InvalidInputError
from pyrodip.infer.checkpoints import Checkpointing, Interrupted
from pyrodip.infer.fitting import CHECK_EVERY
from pyrodip.infer.stopping import EarlyStopping, WindowVariance, stop_step
from pyrodip.run.observe import prepare_observation


def bell_curve(steps=3000, valley=400, noise=0.0, seed=0):
    """A DIP-like statistic: falls to a valley, then rises as the fit reproduces noise."""
    t = np.arange(steps, dtype=float)
    curve = 1.0 + ((t - valley) / valley) ** 2
    return curve + noise * np.random.default_rng(seed).standard_normal(steps)


def test_rule_stops_near_the_valley_of_a_noisy_curve():
    for seed in range(5):
        step = stop_step(bell_curve(noise=0.02, seed=seed), patience=1000)
        assert step is not None and 300 <= step <= 500  # within 25 % of the valley at 400


def test_rule_waits_for_patience_and_skips_nan():
    curve = np.r_[np.full(99, np.nan), bell_curve(900, valley=300)]
    assert stop_step(curve, patience=1000) is None  # never rests 1000 steps after its minimum
    assert stop_step(curve, patience=200) == 99 + 300
    assert stop_step(np.full(10, np.nan)) is None


@settings(max_examples=50, deadline=None)
@given(st.lists(st.floats(0, 10), min_size=1, max_size=200), st.integers(1, 50),
       st.sampled_from([1, 5, 25]))
def test_rule_matches_the_online_rule(values, patience, check_every):
    curve = np.array(values)
    online = EarlyStopping("heldout", patience)
    expected = None
    for step, value in enumerate(curve):
        online.observe(step, torch.tensor(value), torch.full((1, 1, 1, 1), value))
        if (step + 1) % check_every == 0 and online.due(step):
            expected = online.best_step
            break
    assert stop_step(curve, patience, check_every) == expected
    if expected is not None:
        assert curve[expected] == curve[: expected + 1].min()


def test_window_variance_is_the_variance_of_the_last_window():
    torch.manual_seed(0)
    images = torch.randn(30, 1, 1, 4, 4)
    wmv = WindowVariance(window=10)
    values = [float(wmv.update(image)) for image in images]
    assert np.isnan(values[:9]).all()
    for step in (9, 17, 29):
        window = images[step - 9 : step + 1].reshape(10, -1)
        expected = window.var(dim=0, unbiased=False).mean()
        assert values[step] == pytest.approx(float(expected), rel=1e-5)


def config(**changes):
    return RunConfig(**{"image": "sample:ct", "size": 32, "steps": 300, "samples": 2, **changes})


def test_dip_es_stops_and_returns_the_image_of_its_chosen_step():
    cfg = config(method="dip-es", stop_patience=50)
    obs = prepare_observation(cfg)
    result = fit(obs, cfg, progress=False)
    curves = result.history.curves
    assert result.status == "stopped" and len(curves["loss"]) < 300
    step = stop_step(curves["window_variance"], 50, CHECK_EVERY)
    assert step is not None  # the first check at least 50 steps after the minimum
    assert len(curves["loss"]) == -(-(step + 51) // CHECK_EVERY) * CHECK_EVERY
    truth = obs.truth
    returned = 10 * torch.log10(1 / (result.prediction.mean - truth).square().mean())
    assert float(returned) == pytest.approx(float(curves["psnr_current"][step]), abs=1e-3)
    assert float(result.prediction.std_total.abs().max()) == 0.0


def test_plain_dip_runs_every_step_and_the_rule_curve_is_recorded_only_with_a_rule():
    cfg = config(method="dip", steps=120)
    result = fit(prepare_observation(cfg), cfg, progress=False)
    assert result.status == "completed" and "window_variance" not in result.history.curves
    cfg = config(method="dip", steps=120, stop_rule="heldout", stop_patience=1000)
    result = fit(prepare_observation(cfg), cfg, progress=False)
    curves = result.history.curves
    assert len(curves["loss"]) == 120 and {"mse_heldout", "window_variance"} <= set(curves)
    assert np.isfinite(curves["mse_heldout"]).all() and (curves["mse_heldout"] > 0).all()


def test_stop_rules_are_refused_where_they_do_not_apply():
    obs = prepare_observation(config())
    with pytest.raises(InvalidInputError, match="point-estimate"):
        fit(obs, config(method="mfvi", stop_rule="wmv"), progress=False)
    with pytest.raises(InvalidInputError, match="stop_rule"):
        config(stop_rule="sometimes")
    with pytest.raises(InvalidInputError, match="calibration_refit"):
        config(method="dip", stop_rule="heldout", calibration="scale", calibration_refit=True)


def test_a_stopped_fit_resumes_to_the_same_result(tmp_path):
    cfg = config(method="dip-es", stop_patience=40, steps=400)
    obs = prepare_observation(cfg)
    whole = fit(obs, cfg, progress=False)
    path = tmp_path / "checkpoint.pt"

    class StopAt:
        """Set after a number of is_set calls (one per step)."""

        def __init__(self, calls):
            self.calls = calls

        def is_set(self):
            self.calls -= 1
            return self.calls < 0

    with pytest.raises(Interrupted):
        fit(obs, cfg, progress=False, checkpoint=Checkpointing(path), stop=StopAt(110))
    resumed = fit(obs, cfg, progress=False, checkpoint=Checkpointing(path), resume=True)
    assert resumed.status == whole.status == "stopped"
    assert torch.equal(resumed.prediction.mean, whole.prediction.mean)
    np.testing.assert_array_equal(resumed.history.curves["window_variance"],
                                  whole.history.curves["window_variance"])


def test_a_fit_shorter_than_the_window_keeps_its_last_step():
    cfg = config(method="dip-es", steps=20)
    result = fit(prepare_observation(cfg), cfg, progress=False)
    assert result.status == "completed" and result.chosen_step is None
    assert np.isnan(result.history.curves["window_variance"]).all()
