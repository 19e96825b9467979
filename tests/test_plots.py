"""pyrodip.plots: the calibration figure of a result, written as a PNG, and its refusal."""

import numpy as np
import pytest
import xarray as xr

from pyrodip.errors import InvalidInputError
from pyrodip.evaluate.calibration import calibrate, calibration_variables
from pyrodip.plots import plot_calibration


def test_calibration_plot_is_a_png(tmp_path):
    mean, std = np.zeros(4), np.array([0.1, 0.2, 0.3, 0.4])
    cal = calibrate(mean, std, np.array([0.05, 0.3, 0.0, 0.6]), bins=2, fractions=4)
    data_vars, attrs = calibration_variables(cal)
    path = plot_calibration(xr.Dataset(data_vars, attrs=attrs), tmp_path / "calibration.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 1000
    assert [p.name for p in tmp_path.iterdir()] == ["calibration.png"]


def test_plot_needs_calibration_variables(tmp_path):
    with pytest.raises(InvalidInputError, match="no calibration variables"):
        plot_calibration(xr.Dataset(), tmp_path / "calibration.png")
