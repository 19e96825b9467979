"""The summary statistic over seeds (pyrodip.evaluate.statistics), against scipy by hand."""

import math

import numpy as np
import pytest
from scipy import stats

from pyrodip.errors import InvalidInputError
from pyrodip.evaluate.statistics import format_interval, mean_interval


def test_the_half_width_is_the_95_percent_t_interval():
    mean, half = mean_interval([1.0, 2.0, 3.0])
    assert mean == 2.0 and half == pytest.approx(4.302652729911275 / math.sqrt(3))
    values = np.array([20.0, 22.0, 23.5, 19.0])
    low, high = stats.t.interval(0.95, len(values) - 1, loc=values.mean(),
                                 scale=stats.sem(values))
    assert mean_interval(values) == pytest.approx((values.mean(), (high - low) / 2))


def test_fewer_than_two_values_give_the_mean_alone():
    assert mean_interval([3.5]) == (3.5, None)
    assert format_interval([3.5]) == "3.50"
    with pytest.raises(InvalidInputError, match="no values to summarise"):
        mean_interval([])


def test_the_text_is_mean_plus_minus_half_width():
    assert format_interval([1.0, 2.0, 3.0]) == "2.00 ± 2.48"
    assert format_interval([1.0, 2.0, 3.0], digits=1) == "2.0 ± 2.5"
    assert format_interval([10.0, 20.0], number=lambda value: f"{value:.0f}") == "15 ± 64"
