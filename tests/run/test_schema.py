"""What each variable of a result file means (pyrodip.run.schema): long_name and units on every
variable and coordinate, and a variable without an entry refused."""

import numpy as np
import pytest
import xarray as xr

from pyrodip.errors import InvalidInputError
from pyrodip.run.schema import VARIABLES, described


def test_every_variable_and_coordinate_gets_its_long_name_and_units():
    dataset = described(xr.Dataset(
        {"mean": (("channel", "y", "x"), np.zeros((1, 2, 3))), "psnr": ("step", [1.0, 2.0])},
        coords={"step": [1, 2], "y": [0, 1], "x": [0, 1, 2], "classical": ("classical", [])},
    ))
    for name in ("mean", "psnr", "step", "y", "x"):
        long_name, units = VARIABLES[name]
        assert dataset[name].attrs == {"long_name": long_name, "units": units}
    assert dataset["psnr"].attrs["units"] == "dB" and dataset["y"].attrs["units"] == "1"
    assert dataset["classical"].attrs == {"long_name": VARIABLES["classical"][0]}  # a label


def test_a_variable_without_an_entry_is_refused():
    with pytest.raises(InvalidInputError, match="result variable 'fancy' has no long_name and "
                                                "units: add it to pyrodip.run.schema.VARIABLES"):
        described(xr.Dataset({"fancy": ("step", [1.0])}))
