"""pyrodip.io.sinograms: a file that holds no 2-D numeric sinogram is refused."""

import numpy as np
import pytest

from pyrodip.errors import InvalidInputError
from pyrodip.io.sinograms import load_sinogram


def test_arrays_that_are_no_sinogram_are_refused(tmp_path):
    for array, fragment in ((np.ones((2, 50, 30)), "2-D numeric array"),
                            (np.full((64, 30), np.nan), "NaN")):
        bad = tmp_path / "bad.npy"
        np.save(bad, array)
        with pytest.raises(InvalidInputError, match=fragment):
            load_sinogram(bad)


def test_complex_values_and_values_beyond_float32_are_refused(tmp_path):
    for array, fragment in ((np.ones((64, 30), np.complex64), "2-D numeric array"),
                            (np.full((64, 30), 1e300), "beyond float32")):
        bad = tmp_path / "bad.npy"
        np.save(bad, array)
        with pytest.raises(InvalidInputError, match=fragment):
            load_sinogram(bad)
