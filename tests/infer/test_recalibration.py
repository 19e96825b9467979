import dataclasses
import math

import numpy as np
import pytest
import torch
from scipy.stats import norm

from pyrodip import Observation, RunConfig, fit
from pyrodip.bayes.likelihoods import GaussianLikelihood, SpeckleLikelihood
from pyrodip.errors import InvalidInputError
from pyrodip.evaluate.calibration import calibrate
from pyrodip.infer.predictive import Prediction
from pyrodip.infer.recalibration import (
    heldout_values,
    recalibrate,
    rescaled,
    scale_by_conformal,
    scale_by_likelihood,
)
from pyrodip.physics.observation import hold_out
from pyrodip.physics.operators import Downsample
from pyrodip.run.results import to_dataset

N = 40_000


def synthetic(scale: float, noise_std: float, seed: int = 0):
    """A Gaussian predictive whose std is ``scale`` times too small: errors e ~ N(0,
    (scale std)^2), observations y = truth + noise."""
    rng = np.random.default_rng(seed)
    std = rng.uniform(0.01, 0.05, N)
    error = scale * std * rng.standard_normal(N)
    noise = noise_std * rng.standard_normal(N)
    return std, error, error + noise  # residual = y - mean = (truth - mean) + noise


@pytest.mark.parametrize("noise_std", [0.0, 0.02, 0.1])
def test_likelihood_scale_restores_nominal_coverage(noise_std):
    std, error, residual = synthetic(2.5, noise_std)
    s = scale_by_likelihood(residual, std**2, np.full(N, noise_std**2))
    # the relative error of s shrinks with N and grows with the noise's share of the residual
    assert s == pytest.approx(2.5, rel=0.02 if noise_std < 0.1 else 0.08)
    for level in (0.6827, 0.95):
        covered = np.mean(np.abs(error) <= norm.ppf(0.5 + level / 2) * s * std)
        assert covered == pytest.approx(level, abs=0.02)


def test_censored_values_are_scored_by_their_tail():
    """Observations clipped at 0: ignoring the clip shrinks the residuals and the scale."""
    rng = np.random.default_rng(1)
    mean = rng.uniform(0.0, 0.3, N)
    std = np.full(N, 0.02)
    truth = mean + 2.0 * std * rng.standard_normal(N)
    y = np.clip(truth + 0.1 * rng.standard_normal(N), 0, 1)
    low = y <= 0
    assert low.mean() > 0.1
    noise = np.full(N, 0.01)
    naive = scale_by_likelihood(y - mean, std**2, noise)
    tobit = scale_by_likelihood(y - mean, std**2, noise, low=low, high=np.zeros(N, bool))
    assert tobit == pytest.approx(2.0, rel=0.1)
    assert naive < 1.5


def test_conformal_scale_covers_the_target_share_of_held_out_values():
    std, _, residual = synthetic(2.0, 0.05)
    noise = np.full(N, 0.05**2)
    for coverage in (0.5, 0.9):
        s = scale_by_conformal(residual, std**2, noise, coverage)
        z = norm.ppf(0.5 + coverage / 2)
        inside = residual**2 <= z**2 * (s**2 * std**2 + noise)
        assert inside.mean() >= math.ceil((N + 1) * coverage) / N
        assert inside.mean() < coverage + 2 / N  # the smallest such scale
    # new values from the same distribution: covered at the target rate
    fresh_std, _, fresh = synthetic(2.0, 0.05, seed=5)
    s = scale_by_conformal(residual, std**2, noise, 0.9)
    covered = fresh**2 <= norm.ppf(0.95) ** 2 * (s**2 * fresh_std**2 + noise)
    assert covered.mean() == pytest.approx(0.9, abs=0.005)


def test_no_uncertainty_has_no_scale():
    residual = np.array([0.1, -0.2, 0.05])
    zero, noise = np.zeros(3), np.full(3, 0.01)
    assert math.isnan(scale_by_likelihood(residual, zero, noise))
    assert math.isnan(scale_by_conformal(residual, zero, noise, 0.5))
    prediction = Prediction(torch.zeros(1, 2, 2), torch.zeros(1, 2, 2), None,
                            torch.zeros(1, 2, 2), 1)
    kept = rescaled(prediction, math.nan)
    assert torch.equal(kept.std_total, prediction.std_total)
    assert kept.std_total_raw is prediction.std_total
    with pytest.raises(InvalidInputError, match="coverage must be in"):
        scale_by_conformal(residual, zero + 1, noise, 1.0)


def test_recalibrate_uses_the_measurement_domain():
    """Speckle: residuals in log y, against the mean and std of log A(x)."""
    torch.manual_seed(0)
    shape = (1, 64, 64)
    log_truth = torch.full(shape, math.log(0.5))
    measured_std = torch.full(shape, 0.02)
    measured_mean = log_truth + 3 * measured_std * torch.randn(shape)  # 3x too confident
    y = torch.exp(log_truth + 0.1 * torch.randn(shape))
    prediction = Prediction(torch.exp(measured_mean), torch.zeros(shape), None,
                            torch.zeros(shape), 25, measured_mean=measured_mean,
                            measured_std=measured_std)
    held = torch.ones(1, 64, 64, dtype=torch.bool)
    found = recalibrate(prediction, SpeckleLikelihood(0.1), y, held, "scale")
    assert found.scale == pytest.approx(3.0, rel=0.15) and found.heldout == 64 * 64
    assert found.heldout_coverage_68 == pytest.approx(0.68, abs=0.03)
    conformal = recalibrate(prediction, SpeckleLikelihood(0.1), y, held, "conformal", 0.9)
    assert conformal.coverage == 0.9 and conformal.heldout_coverage_95 >= 0.9
    with pytest.raises(InvalidInputError, match="unknown calibration"):
        recalibrate(prediction, GaussianLikelihood(0.1), y, held, "none")


TINY = {"size": 32, "steps": 20, "samples": 4}


@pytest.mark.parametrize("method", ["mfvi", "mcdropout", "sgld"])
def test_every_method_with_uncertainty_is_recalibrated_alike(method):
    config = RunConfig(method=method, **TINY, burn_in=10, sample_every=2)
    result = fit(Observation.simulate(torch.rand(1, 32, 32), 0.1, seed=0), config,
                 progress=False)
    assert result.calibration.method == "scale" and result.calibration.scale > 0
    assert torch.allclose(result.prediction.std_total,
                          result.calibration.scale * result.prediction.std_total_raw)
    attrs = to_dataset(result, baseline=False).attrs
    assert attrs["calibration"] == "scale" and attrs["calibration_heldout"] == 102
    assert 0 <= attrs["coverage_68_raw"] <= 1 and attrs["uce_raw"] >= 0


def test_dip_has_no_calibration_and_nan_values():
    result = fit(Observation.simulate(torch.rand(1, 32, 32), 0.1, seed=0),
                 RunConfig(method="dip", **TINY), progress=False)
    assert result.calibration is None and result.prediction.std_total_raw is None
    attrs = to_dataset(result, baseline=False).attrs
    assert attrs["calibration"] == "none"
    for key in ("uce", "coverage_68", "coverage_95", "ause", "uce_observation"):
        assert math.isnan(attrs[key])
    forced = fit(Observation.simulate(torch.rand(1, 32, 32), 0.1, seed=0),
                 RunConfig(method="dip", calibration="scale", **TINY), progress=False)
    assert math.isnan(forced.calibration.scale)


def test_superresolution_holds_out_low_resolution_pixels():
    truth = torch.rand(1, 32, 32)
    obs = Observation.simulate(truth, 0.01, seed=0, operator=Downsample(4))
    result = fit(obs, RunConfig(task="superres", factor=4, **TINY), progress=False)
    assert result.calibration.heldout == round(0.1 * 8 * 8)
    assert result.prediction.measured_mean.shape == (1, 8, 8)
    cal = calibrate(result.prediction.mean, result.prediction.std_total, truth)
    assert 0 <= cal.coverage["68"] <= 1


def test_bad_calibration_settings_are_refused():
    with pytest.raises(InvalidInputError, match="unknown calibration 'platt'"):
        RunConfig(calibration="platt")
    for key in ("calibration_coverage", "heldout_fraction"):
        with pytest.raises(InvalidInputError, match=f"{key} must be a number in"):
            RunConfig(**{key: 1.0})


def test_heteroscedastic_noise_is_not_rescaled():
    epistemic, aleatoric = torch.full((1, 2, 2), 0.03), torch.full((1, 2, 2), 0.04)
    prediction = Prediction(torch.zeros(1, 2, 2), epistemic, aleatoric,
                            (epistemic**2 + aleatoric**2).sqrt(), 4)
    scaled = rescaled(prediction, 2.0)
    assert torch.allclose(scaled.std_total, torch.full((1, 2, 2), 0.072111), atol=1e-6)
    assert torch.allclose(scaled.std_total_raw, torch.full((1, 2, 2), 0.05))


def test_the_scale_stays_near_one_when_the_residuals_are_mostly_noise():
    # A right std (variance 6e-4) under noise of variance 0.01: the likelihood alone lets s
    # stray to 0.4 in one case of twenty; the prior on log s^2 keeps it near 1.
    rng = np.random.default_rng(1)
    v, noise = np.full(1638, 6e-4), np.full(1638, 0.01)
    scales = [scale_by_likelihood(rng.normal(0, np.sqrt(v + noise)), v, noise)
              for _ in range(60)]
    assert 0.65 < np.percentile(scales, 5) and np.percentile(scales, 95) < 1.45
    # a std 1.8x too small, with the error well above the noise's spread, is still found
    v = np.full(1638, 10 ** -2.43 / 1.8**2)
    found = scale_by_likelihood(rng.normal(0, np.sqrt(1.8**2 * v + noise)), v, noise)
    assert 1.5 < found < 2.1


def test_the_held_out_values_are_scored_without_the_truth():
    """LPD and CRPS of the held-out values are result attributes, with no truth needed (an
    observation without one, as ``--observed`` gives)."""
    simulated = Observation.simulate(torch.rand(1, 32, 32), 0.1, seed=0)
    observed = dataclasses.replace(simulated, truth=None)
    assert not observed.has_truth
    result = fit(observed, RunConfig(**TINY), progress=False)
    attrs = to_dataset(result, baseline=False).attrs
    assert "mean_psnr" not in attrs and attrs["heldout_score_form"] == "gaussian"
    assert math.isfinite(attrs["heldout_lpd"]) and attrs["heldout_crps"] > 0
    # the same held-out values scored again under the calibrated Gaussian
    values = heldout_values(result.prediction, result.model.likelihood, observed.observation,
                            hold_out(observed, 0.1, seed=0)[1])
    assert values.residual.size == attrs["calibration_heldout"]
    # dip: no std, scored by the noise alone once values are held out
    dip = fit(observed, RunConfig(method="dip", calibration="scale", **TINY), progress=False)
    assert math.isnan(dip.calibration.scale) and math.isfinite(dip.calibration.heldout_lpd)


def test_kept_samples_score_the_mixture():
    torch.manual_seed(0)
    shape = (1, 16, 16)
    samples = 0.5 + 0.05 * torch.randn(8, *shape)
    y = 0.5 + 0.1 * torch.randn(shape)
    prediction = Prediction(samples.mean(0), samples.std(0), None, samples.std(0), 8,
                            measured_mean=samples.mean(0), measured_std=samples.std(0))
    held = torch.ones(1, 16, 16, dtype=torch.bool)
    gaussian = recalibrate(prediction, GaussianLikelihood(0.1), y, held)
    mixture = recalibrate(prediction, GaussianLikelihood(0.1), y, held, samples=samples)
    assert gaussian.heldout_score_form == "gaussian" and mixture.heldout_score_form == "mixture"
    assert mixture.scale == gaussian.scale  # the samples change the scores, not the scale
    assert mixture.heldout_crps == pytest.approx(gaussian.heldout_crps, rel=0.05)
    values = heldout_values(prediction, GaussianLikelihood(0.1), y, held, samples=samples)
    assert values.deviations.shape == (8, 256)
    assert values.scores(mixture.scale).lpd == mixture.heldout_lpd
