"""The summary statistic of a value over seeds: its mean and the half-width of its 95 %
Student-t confidence interval.

>>> mean_interval([1.0, 2.0, 3.0])
(2.0, 2.484...)
>>> format_interval([1.0, 2.0, 3.0]), format_interval([0.5])
('2.00 ± 2.48', '0.50')
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
from numpy.typing import ArrayLike
from scipy import stats

from ..errors import InvalidInputError

__all__ = ["CONFIDENCE", "format_interval", "mean_interval"]

#: The confidence of the interval.
CONFIDENCE = 0.95


def mean_interval(values: ArrayLike) -> tuple[float, float | None]:
    """The mean of ``values`` (one per seed) and the half-width of its 95 % t-interval,
    ``t(0.975, n - 1) * std / sqrt(n)`` with the sample std; with fewer than two values the
    half-width is None (the mean alone).

    >>> mean_interval([4.0])
    (4.0, None)
    """
    values = np.asarray(values, dtype=float).ravel()
    if values.size == 0:
        raise InvalidInputError("no values to summarise: give at least one (one per seed)")
    mean = float(values.mean())
    if values.size < 2:
        return mean, None
    t = float(stats.t.ppf((1 + CONFIDENCE) / 2, values.size - 1))
    return mean, t * float(values.std(ddof=1)) / math.sqrt(values.size)


def format_interval(values: ArrayLike, digits: int = 2,
                    number: Callable[[float], str] | None = None) -> str:
    """``mean ± half-width`` of ``values`` (:func:`mean_interval`; the mean alone for one
    value), each written by ``number`` (default: ``digits`` decimals).

    >>> format_interval([20.0, 22.0], number=lambda value: f"{value:.0f}")
    '21 ± 13'
    """
    mean, half = mean_interval(values)
    number = number or (lambda value: f"{value:.{digits}f}")
    return number(mean) if half is None else f"{number(mean)} ± {number(half)}"
