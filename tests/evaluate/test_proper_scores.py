"""Proper scores of held-out values (pyrodip.evaluate.proper_scores) against closed forms,
numerical integrals and Monte Carlo."""

import math

import numpy as np
import pytest
from scipy.integrate import quad
from scipy.stats import norm

from pyrodip.errors import InvalidInputError
from pyrodip.evaluate.proper_scores import (
    expected_abs_normal,
    gaussian_crps,
    gaussian_lpd,
    heldout_scores,
    mixture_crps,
    mixture_lpd,
)


def crps_by_integral(cdf, y: float, low: float = -30.0, high: float = 30.0) -> float:
    """CRPS = int (F(t) - 1{t >= y})^2 dt over [low, high], numerically."""
    return quad(lambda t: (cdf(t) - (t >= y)) ** 2, low, high, points=[y], limit=200)[0]


def test_gaussian_scores_at_known_values():
    r, w = np.array([0.0, 1.0, -2.0]), np.array([1.0, 4.0, 0.25])
    assert np.allclose(gaussian_lpd(r, w), norm.logpdf(r, scale=np.sqrt(w)))
    # CRPS of N(0, 1) at 0 is (sqrt 2 - 1) / sqrt(pi); it scales with the std
    assert gaussian_crps(np.array([0.0]), np.array([1.0]))[0] == pytest.approx(
        (math.sqrt(2) - 1) / math.sqrt(math.pi))
    assert gaussian_crps(np.array([0.0]), np.array([9.0]))[0] == pytest.approx(
        3 * (math.sqrt(2) - 1) / math.sqrt(math.pi))
    for value, variance in zip(r, w, strict=True):
        expected = crps_by_integral(lambda t, v=variance: norm.cdf(t, scale=math.sqrt(v)), value)
        assert gaussian_crps(np.array([value]), np.array([variance]))[0] == pytest.approx(
            expected, rel=1e-6)
    # no spread: the absolute error
    assert gaussian_crps(np.array([-0.3]), np.array([0.0]))[0] == pytest.approx(0.3)
    assert float(expected_abs_normal(np.array(-0.3), np.array(0.0))) == pytest.approx(0.3)


def test_a_mixture_of_identical_components_is_the_gaussian():
    r, w = np.array([0.3, -1.2, 2.0]), np.array([0.5, 2.0, 0.1])
    centres = np.zeros((5, 3))
    assert np.allclose(mixture_crps(r, centres, w), gaussian_crps(r, w))
    assert np.allclose(mixture_lpd(r, centres, w), gaussian_lpd(r, w))


def test_mixture_crps_and_lpd_match_their_definitions():
    rng = np.random.default_rng(0)
    centres, r, w = rng.normal(size=(6, 3)), np.array([0.1, -0.5, 2.0]), np.array([0.3, 0.1, 1.0])
    for i in range(3):
        def cdf(t, i=i):
            return np.mean(norm.cdf(t, centres[:, i], math.sqrt(w[i])))
        assert mixture_crps(r, centres, w)[i] == pytest.approx(crps_by_integral(cdf, r[i]),
                                                               rel=1e-6)
        density = np.mean(norm.pdf(r[i], centres[:, i], math.sqrt(w[i])))
        assert mixture_lpd(r, centres, w)[i] == pytest.approx(math.log(density))


def test_the_mixture_is_scored_in_blocks_alike(monkeypatch):
    import pyrodip.evaluate.proper_scores as scores

    rng = np.random.default_rng(1)
    centres, r, w = rng.normal(size=(4, 50)), rng.normal(size=50), np.full(50, 0.2)
    whole = mixture_crps(r, centres, w)
    monkeypatch.setattr(scores, "PAIRS_PER_BLOCK", 16 * 3)  # 3 values a block
    assert np.allclose(mixture_crps(r, centres, w), whole)


def test_censored_lpd_is_the_tail_mass():
    r, w = np.array([-0.4, 0.5, 0.1]), np.array([0.04, 0.09, 0.01])
    low, high = np.array([True, False, False]), np.array([False, True, False])
    lpd = gaussian_lpd(r, w, low, high)
    assert lpd[0] == pytest.approx(math.log(norm.cdf(-0.4 / 0.2)))
    assert lpd[1] == pytest.approx(math.log(norm.sf(0.5 / 0.3)))
    assert lpd[2] == pytest.approx(norm.logpdf(0.1, scale=0.1))
    # a mixture's tail mass is the mean of its components'
    centres = np.array([[0.0, 0.0, 0.0], [0.2, -0.1, 0.0]])
    expected = math.log(np.mean(norm.cdf(-0.4, centres[:, 0], 0.2)))
    assert mixture_lpd(r, centres, w, low, high)[0] == pytest.approx(expected)


def test_censored_crps_is_that_of_the_clipped_predictive():
    mean, sd, bottom, top = 0.15, 0.3, 0.0, 1.0
    for y in (0.0, 0.1, 0.6, 1.0):  # the ends too: a clipped value
        def clipped_cdf(t):
            return 0.0 if t < bottom else 1.0 if t >= top else norm.cdf(t, mean, sd)
        expected = crps_by_integral(clipped_cdf, y, bottom - 1, top + 1)
        found = gaussian_crps(np.array([y - mean]), np.array([sd**2]), np.array([bottom - mean]),
                              np.array([top - mean]))[0]
        assert found == pytest.approx(expected, rel=1e-6, abs=1e-9)


@pytest.mark.parametrize("score", ["lpd", "crps"])
def test_the_scores_are_best_at_the_true_distribution(score):
    """Properness, by Monte Carlo: values drawn from N(0, 1) score best under N(0, 1)."""
    rng = np.random.default_rng(0)
    r = rng.normal(0, 1, 200_000)
    zeros = np.zeros_like(r)
    sign = 1 if score == "lpd" else -1  # higher is better for LPD, lower for CRPS
    value = {std: sign * getattr(heldout_scores(r, np.full_like(r, std**2), zeros), score)
             for std in (0.6, 0.8, 1.0, 1.25, 1.6)}
    assert max(value, key=value.get) == 1.0
    # a shifted mean scores worse too
    shifted = sign * getattr(heldout_scores(r - 0.3, np.ones_like(r), zeros), score)
    assert shifted < value[1.0]


def test_heldout_scores_rescale_the_std_and_pick_their_form():
    r, v, n = np.array([0.2, -0.1]), np.array([0.01, 0.04]), np.array([0.0025, 0.0025])
    scaled = heldout_scores(r, v, n, scale=2.0)
    assert scaled.form == "gaussian"
    assert scaled.lpd == pytest.approx(float(np.mean(norm.logpdf(r, scale=np.sqrt(4 * v + n)))))
    assert heldout_scores(r, v, n, scale=math.nan) == heldout_scores(r, v, n, scale=1.0)
    deviations = np.array([[0.1, -0.2], [-0.1, 0.2]])
    mixture = heldout_scores(r, v, n, scale=2.0, deviations=deviations)
    assert mixture.form == "mixture"
    assert mixture.crps == pytest.approx(float(mixture_crps(r, 2 * deviations, n).mean()))
    # censoring: the Gaussian form, as recalibration scores the values
    low = np.array([False, True])
    assert heldout_scores(r, v, n, low=low, high=np.zeros(2, bool),
                          deviations=deviations).form == "gaussian"
    assert set(scaled.attrs()) == {"heldout_lpd", "heldout_crps", "heldout_score_form"}


def test_bad_input_is_refused():
    with pytest.raises(InvalidInputError, match="no held-out values"):
        heldout_scores(np.array([]), np.array([]), np.array([]))
    with pytest.raises(InvalidInputError, match="one length"):
        heldout_scores(np.zeros(2), np.zeros(3), np.zeros(2))
    with pytest.raises(InvalidInputError, match="negative"):
        gaussian_crps(np.zeros(2), np.array([1.0, -1.0]))
    with pytest.raises(InvalidInputError, match="centres must be"):
        mixture_crps(np.zeros(2), np.zeros((3, 4)), np.ones(2))
