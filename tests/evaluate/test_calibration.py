import numpy as np
import pytest
import torch
import xarray as xr
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import array_shapes, arrays

from pyrodip.errors import InvalidInputError
from pyrodip.evaluate.calibration import calibrate, calibration_variables

# Four pixels: mean 0, std = [0.1, 0.2, 0.3, 0.4], truth - mean = d = [0.05, 0.3, 0.0, 0.6].
# v = std^2 = [0.01, 0.04, 0.09, 0.16]; e = d^2 = [0.0025, 0.09, 0, 0.36]; MSE = 0.4525 / 4.
MEAN = np.zeros(4)
STD = np.array([0.1, 0.2, 0.3, 0.4])
TRUTH = np.array([0.05, 0.3, 0.0, 0.6])
MSE = 0.4525 / 4


def test_reliability_bins_and_uce_by_hand():
    cal = calibrate(MEAN, STD, TRUTH, bins=2)
    # edges [0, 0.08, 0.16]: bin 0 holds v 0.01, 0.04 (e 0.0025, 0.09), bin 1 v 0.09, 0.16
    # (e 0, 0.36; max v sits in the last, right-closed bin)
    assert cal.bin_edges == pytest.approx([0, 0.08, 0.16])
    assert list(cal.bin_count) == [2, 2]
    assert cal.bin_variance == pytest.approx([0.025, 0.125])
    assert cal.bin_mse == pytest.approx([0.04625, 0.18])
    # UCE = 2/4 * |0.025 - 0.04625| + 2/4 * |0.125 - 0.18| = 0.010625 + 0.0275
    assert cal.uce == pytest.approx(0.038125, rel=1e-12)


def test_empty_bins_are_nan_and_do_not_count():
    # v = [0.01, 0.04, 0.09, 0.16] in 8 bins of width 0.02: bins 0 [0, 0.02), 2 [0.04, 0.06)
    # (0.2**2 is a hair above 0.04), 4 [0.08, 0.1) and 7 [0.14, 0.16] hold one each
    cal = calibrate(MEAN, STD, TRUTH, bins=8)
    assert list(cal.bin_count) == [1, 0, 1, 0, 1, 0, 0, 1]
    assert np.isnan(cal.bin_variance[[1, 3, 5, 6]]).all()
    assert np.isnan(cal.bin_mse[[1, 3, 5, 6]]).all()
    # UCE = (|0.01 - 0.0025| + |0.04 - 0.09| + |0.09 - 0| + |0.16 - 0.36|) / 4
    assert cal.uce == pytest.approx((0.0075 + 0.05 + 0.09 + 0.2) / 4, rel=1e-12)


def test_coverage_by_hand():
    cal = calibrate(MEAN, STD, TRUTH)
    # 50 %: |d| <= 0.674 std holds for 0.05 <= 0.067 and 0 <= 0.202, not 0.3, 0.6
    assert cal.coverage["50"] == 0.5
    # 68 %: |d| <= 1.00002 std holds for 0.05 <= 0.1 and 0 <= 0.3, not 0.3 > 0.2, 0.6 > 0.4
    assert cal.coverage["68"] == 0.5
    # 90 %: |d| <= 1.645 std holds for all four (0.3 <= 0.329, 0.6 <= 0.658)
    assert cal.coverage["90"] == 1.0
    # 95 %: |d| <= 1.96 std holds for all four (0.3 <= 0.392, 0.6 <= 0.784)
    assert cal.coverage["95"] == 1.0


def test_sparsification_and_ause_by_hand():
    cal = calibrate(MEAN, STD, TRUTH, fractions=4)
    assert cal.fractions == pytest.approx([0, 0.25, 0.5, 0.75])
    # by std descending the errors are [0.36, 0, 0.09, 0.0025]; remove 0, 1, 2, 3 of them
    model = np.array([0.4525 / 4, 0.0925 / 3, 0.0925 / 2, 0.0025]) / MSE
    # by error descending: [0.36, 0.09, 0.0025, 0]
    oracle = np.array([0.4525 / 4, 0.0925 / 3, 0.0025 / 2, 0.0]) / MSE
    assert cal.sparsification == pytest.approx(model, rel=1e-12)
    assert cal.oracle == pytest.approx(oracle, rel=1e-12, abs=1e-15)
    # model - oracle = [0, 0, 0.045, 0.0025] / MSE; trapezoid with step 0.25
    assert cal.ause == pytest.approx(0.25 * (0.045 + 0.0025 / 2) / MSE, rel=1e-12)


def test_zero_std_has_no_calibration():
    mean = np.array([0.2, 0.5, 0.5, 0.9, 0.0, 0.3]).reshape(1, 2, 3)
    truth = np.array([0.2, 0.4, 0.5, 0.6, 0.0, 0.1]).reshape(1, 2, 3)
    # e = [0, 0.01, 0, 0.09, 0, 0.04]: MSE = 0.14 / 6
    cal = calibrate(mean, np.zeros((1, 2, 3)), truth, fractions=3)
    assert list(cal.bin_count) == [6] + [0] * 9
    assert cal.bin_mse[0] == pytest.approx(0.14 / 6, rel=1e-12)  # the error is still there
    # no ranking and no intervals: NaN, not numbers from the pixel order
    assert np.isnan(cal.uce) and np.isnan(cal.ause)
    assert all(np.isnan(value) for value in cal.coverage.values())
    assert np.isnan(cal.sparsification).all()
    assert cal.oracle == pytest.approx([1, 0.01 / 4 * 6 / 0.14, 0])


def test_no_error_gives_flat_zero_curves():
    cal = calibrate(np.ones(5), np.full(5, 0.1), np.ones(5), bins=3, fractions=5)
    assert cal.sparsification.tolist() == cal.oracle.tolist() == [0.0] * 5
    assert cal.ause == 0.0
    assert cal.uce == pytest.approx(0.01)  # all v = 0.01 in the last bin, e = 0
    assert cal.coverage["68"] == 1.0


def test_one_pixel_always_remains():
    # 2 pixels, 10 fractions: k = round(0.9 * 2) = 2 is capped at 1
    cal = calibrate(np.zeros(2), np.array([1.0, 2.0]), np.array([1.0, 3.0]), fractions=10)
    assert cal.sparsification[-1] == pytest.approx(1 / 5)  # e = [1, 9], MSE 5; 9 removed
    assert cal.oracle[-1] == pytest.approx(1 / 5)


def test_calibrated_gaussian_sample():
    rng = np.random.default_rng(0)
    std = rng.uniform(0.05, 0.2, size=(1, 400, 500))
    mean = rng.uniform(0, 1, size=std.shape)
    truth = mean + std * rng.standard_normal(std.shape)
    cal = calibrate(torch.from_numpy(mean), torch.from_numpy(std), torch.from_numpy(truth))
    # binomial std of a coverage over 200 000 pixels is about 0.001
    for name, level in {"50": 0.5, "68": 0.6827, "90": 0.9, "95": 0.95}.items():
        assert cal.coverage[name] == pytest.approx(level, abs=0.005)
    assert cal.uce < 0.03 * np.mean(std**2)
    assert cal.ause > 0  # the ranking by std is informative but not the oracle's
    assert (cal.oracle <= cal.sparsification + 1e-12).all()


def test_torch_and_numpy_agree():
    as_torch = calibrate(*(torch.tensor(a, dtype=torch.float32) for a in (MEAN, STD, TRUTH)))
    as_numpy = calibrate(*(a.astype(np.float32) for a in (MEAN, STD, TRUTH)))
    assert as_torch.uce == as_numpy.uce and as_torch.ause == as_numpy.ause


@pytest.mark.parametrize(
    ("mean", "std", "truth", "message"),
    [
        (np.zeros(3), np.ones(4), np.zeros(4), "one shape"),
        (np.zeros((2, 3)), np.ones((3, 2)), np.zeros((2, 3)), "one shape"),
        (np.zeros(4), -STD, np.zeros(4), "std must be >= 0"),
        (np.zeros(4), STD, np.array([0, np.nan, 0, 0]), "finite"),
        (np.array([0, np.inf, 0, 0]), STD, np.zeros(4), "finite"),
        (np.zeros(0), np.zeros(0), np.zeros(0), "empty"),
    ],
)
def test_bad_input(mean, std, truth, message):
    with pytest.raises(InvalidInputError, match=message):
        calibrate(mean, std, truth)


def test_bad_bins():
    with pytest.raises(InvalidInputError, match="positive"):
        calibrate(MEAN, STD, TRUTH, bins=0)


@st.composite
def images(draw):
    shape = draw(array_shapes(min_dims=3, max_dims=3, min_side=1, max_side=6))
    values = st.floats(-4, 4)
    mean = draw(arrays(np.float64, shape, elements=values))
    truth = draw(arrays(np.float64, shape, elements=values))
    std = draw(arrays(np.float64, shape, elements=st.floats(0, 4)))
    return mean, std, truth


@settings(max_examples=60, deadline=None)
@given(images(), st.integers(1, 12), st.integers(1, 20))
def test_invariants(data, bins, fractions):
    mean, std, truth = data
    cal = calibrate(mean, std, truth, bins=bins, fractions=fractions)
    assert cal.bin_edges.shape == (bins + 1,) and cal.bin_count.sum() == mean.size
    assert cal.sparsification.shape == cal.oracle.shape == cal.fractions.shape == (fractions,)
    if std.max() == 0:
        assert np.isnan(cal.uce) and np.isnan(cal.coverage["68"])
        return
    coverage = cal.coverage
    assert 0 <= coverage["50"] <= coverage["68"] <= coverage["90"] <= coverage["95"] <= 1
    assert cal.uce >= 0 and cal.ause >= -1e-12
    assert (cal.oracle <= cal.sparsification + 1e-12).all()
    if np.mean((mean - truth) ** 2) > 0:
        assert cal.sparsification[0] == cal.oracle[0] == 1


def test_calibration_variables():
    cal = calibrate(MEAN, STD, TRUTH, bins=2, fractions=4)
    data_vars, attrs = calibration_variables(cal)
    dataset = xr.Dataset(data_vars, attrs=attrs)
    assert dataset["reliability_mse"].dims == ("calibration_bin",)
    assert dataset["reliability_count"].values.tolist() == [2, 2]
    assert dataset["calibration_bin_high"].values == pytest.approx([0.08, 0.16])
    assert dataset["sparsification_error"].dims == ("sparsification_fraction",)
    assert dataset["sparsification_fraction"].values == pytest.approx([0, 0.25, 0.5, 0.75])
    assert attrs == {
        "uce": cal.uce,
        "coverage_50": 0.5,
        "coverage_68": 0.5,
        "coverage_90": 1.0,
        "coverage_95": 1.0,
        "ause": cal.ause,
        "calibration_bins": 2,
        "calibration_reference": "truth",
    }
