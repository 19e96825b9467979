"""A study's table (pyrodip.studies.table): cells, the ELBO column, the note, failures."""

import numpy as np
import xarray as xr

from pyrodip.studies.table import summary_table

DIMS = ("method", "image", "seed")


def study(**variables) -> xr.Dataset:
    coords = {"method": ["dip", "mfvi"], "image": ["ct"], "seed": [0, 1, 2], "step": [1, 2]}
    return xr.Dataset({name: (DIMS + (("step",) if np.ndim(v) == 4 else ()), v)
                       for name, v in variables.items()}, coords=coords)


def cells(table: str, method: str) -> list[str]:
    row = next(line for line in table.splitlines() if line.startswith(f"| {method} |"))
    return [cell.strip() for cell in row.strip("| ").split(" | ")]


def test_cells_are_mean_and_t_interval_and_say_so():
    times = np.array([[[1.0, 2.0, 3.0]], [[np.nan, np.nan, np.nan]]])
    table = summary_table(study(wall_time_s=times))
    assert cells(table, "dip") == ["dip", "ct", "2.00 ± 2.48"]
    assert cells(table, "mfvi") == ["mfvi", "ct", "-"]  # no finite value
    assert "mean ± 95 % t-interval half-width over 3 seeds" in table


def test_the_elbo_column_shows_runs_whose_loss_is_a_negative_elbo():
    loss = np.full((2, 1, 3, 2), 100.0)
    elbo = np.array([[[0.0] * 3], [[1.0] * 3]])
    table = summary_table(study(loss=loss, loss_is_elbo=elbo, wall_time_s=np.ones((2, 1, 3))))
    assert table.splitlines()[0] == "| method | image | ELBO | time s |"
    assert cells(table, "dip")[2] == "-" and cells(table, "mfvi")[2] == "-100 ± 0.00"


def test_failed_runs_are_listed_under_the_table():
    data = study(wall_time_s=np.ones((2, 1, 3)))
    status = np.full((2, 1, 3), "ok", dtype=object)
    error = np.full((2, 1, 3), "", dtype=object)
    status[0, 0, 2], error[0, 0, 2] = "failed", "MemoryError: out of memory"
    data = data.assign(status=(DIMS, status.astype(str)), error=(DIMS, error.astype(str)))
    table = summary_table(data)
    assert "failed, left out of the table (1 of 6 runs):" in table
    assert "- dip on ct, seed 2: MemoryError: out of memory" in table
