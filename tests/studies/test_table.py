"""A study's table (pyrodip.studies.table): cells, the ELBO column, the note, failures."""

import numpy as np
import pytest
import xarray as xr

from pyrodip.errors import InvalidInputError
from pyrodip.studies.table import paired_differences, ranking_agreement, rankings, summary_table

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


def scored_study() -> xr.Dataset:
    """Three methods on two images over three seeds: on ct the held-out scores rank the
    methods as the PSNR does; on us the LPD reverses them."""
    coords = {"method": ["dip", "mfvi", "sgld"], "image": ["ct", "us"], "seed": [0, 1, 2]}
    psnr = np.array([[20.0, 30.0], [22.0, 31.0], [21.0, 32.0]])[..., None] + [0.0, 0.1, -0.1]
    lpd = np.array([[1.0, 3.0], [3.0, 2.0], [2.0, 1.0]])[..., None] + [0.0, 0.2, 0.1]
    crps = np.array([[0.3, 0.3], [0.1, 0.2], [0.2, 0.1]])[..., None] + [0.0, 0.01, 0.02]
    return xr.Dataset({name: (DIMS, values) for name, values in
                       (("mean_psnr", psnr), ("heldout_lpd", lpd), ("heldout_crps", crps),
                        ("wall_time_s", np.ones((3, 2, 3))))}, coords=coords)


def test_rankings_and_their_agreement_with_the_truth():
    study = scored_study()
    ranked = rankings(study)
    assert ranked["ct"] == {"PSNR mean": ["mfvi", "sgld", "dip"],
                            "LPD": ["mfvi", "sgld", "dip"], "CRPS": ["mfvi", "sgld", "dip"]}
    assert ranked["us"]["CRPS"] == ["sgld", "mfvi", "dip"]
    agreement = ranking_agreement(study)
    assert agreement["tau_lpd"].values.tolist() == [1.0, -1.0]
    assert agreement["tau_crps"].values.tolist() == [1.0, 1.0]
    assert agreement["best_lpd"].values.tolist() == [1.0, 0.0]
    assert agreement["best_crps"].values.tolist() == [1.0, 1.0]
    # one method scored: no ranking to compare
    alone = study.assign(heldout_lpd=study["heldout_lpd"].where(study["method"] == "dip"))
    assert np.isnan(ranking_agreement(alone)["tau_lpd"]).all()


def test_paired_differences_are_per_seed_against_the_reference():
    study = scored_study()
    differences = paired_differences(study, "mfvi")
    at = {"method": "dip", "image": "ct"}
    assert np.allclose(differences["mean_psnr"].sel(at), [-2.0, -2.0, -2.0])
    assert np.allclose(differences["heldout_lpd"].sel({"method": "mfvi"}), 0.0)
    with pytest.raises(InvalidInputError, match="reference method 'map' is not in the study"):
        paired_differences(study, "map")


def test_the_table_shows_the_scores_their_differences_and_rankings():
    table = summary_table(scored_study())
    header = table.splitlines()[0]
    assert header == "| method | image | PSNR mean | LPD | CRPS | time s |"
    assert cells(table, "mfvi")[3:5] == ["3.10 ± 0.248", "0.110 ± 0.0248"]
    assert "paired differences against dip (the same observation per seed" in table
    # the seeds shift every method alike: paired, that shift drops out of the interval
    assert "| mfvi - dip | ct | 2.00 ± 0.00 | 2.00 ± 0.00 | -0.200 ± " in table
    assert "| ct | mfvi > sgld > dip | mfvi > sgld > dip | mfvi > sgld > dip | +1.00 | +1.00 |" \
        in table
    # without held-out scores (calibration none) the sections are left out
    assert "paired differences" not in summary_table(study(wall_time_s=np.ones((2, 1, 3))))
