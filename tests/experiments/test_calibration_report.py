"""The calibration study's report (experiments/calibration_report.py): its tables."""

from experiments.calibration_fits import DOMAINS, Job
from experiments.calibration_report import cell, goal_rows, psnr_cost_rows


def record(domain, method, seed, psnr, settings=(), scale=2.0, coverage=0.6):
    calibrations = {name: {"scale": s, "uce": 1e-3, "ause": 0.1, "coverage_68": c,
                           "coverage_95": c + 0.3}
                    for name, s, c in (("raw", 1.0, coverage / 2), ("scale", scale, coverage),
                                       ("conformal0.9", scale, coverage))}
    job = Job("goal", domain, DOMAINS[domain][0], method, seed, settings)
    result = {"job": {**job.__dict__, "settings": [list(s) for s in settings]},
              "psnr": psnr, "status": "completed", "uce_observation": 2e-3,
              "config": {"noise": "gaussian"}}
    if not settings:
        result["calibrations"] = calibrations
    return result


def test_goal_table_and_the_psnr_the_held_out_values_cost():
    records = [record("oct", "mfvi", seed, 28.0 + seed) for seed in (0, 1, 2)]
    records += [record("oct", "mfvi", seed, 28.2 + seed, (("calibration", "none"),))
                for seed in (0, 1, 2)]
    rows = goal_rows(records)
    assert len(rows) == 1 and rows[0][:4] == ["oct", "mfvi", "29.00 ± 2.48", "2.00 ± 0.00"]
    assert rows[0][4:8] == ["0.30 ± 0.00", "0.60 ± 0.00", "0.60 ± 0.00", "0.90 ± 0.00"]
    cost = psnr_cost_rows(records)
    assert cost == [["oct", "29.20 ± 2.48", "29.00 ± 2.48", "-0.20 ± 0.00"]]


def test_a_cell_without_values_is_a_dash():
    assert cell([]) == "-" and cell([0.5]) == "0.50"


def test_ensemble_tables_put_the_single_fit_beside_the_ensembles_and_their_gain():
    from experiments.calibration_report import ensemble_gain_rows, ensemble_rows

    single = [record("mri", "mfvi", seed, 26.0) for seed in (0, 1, 2)]
    ensembles = []
    for seed in (0, 1, 2):
        found = record("mri", "mfvi", seed, 26.5, scale=1.5, coverage=0.7)
        found["job"].update(stage="ensemble", settings=[["ensemble", 4]])
        found.update(calibrations=single[0]["calibrations"], member_psnr=[26.0, 26.2, 26.1, 26.1],
                     wall_time_s=400.0)
        ensembles.append(found)
    rows = ensemble_rows(single + ensembles + [record("oct", "mfvi", 0, 29.0)])
    assert [row[:3] for row in rows] == [["mri", "mfvi", "26.00 ± 0.00"],
                                         ["mri", "mfvi ensemble of 4", "26.50 ± 0.00"]]
    [gain] = ensemble_gain_rows(ensembles)
    assert gain[:6] == ["mri", "mfvi ensemble of 4", "26.50 ± 0.00", "26.10 ± 0.00",
                        "0.40 ± 0.00", "0.50 ± 0.00"]


def test_the_agreement_table_ranks_methods_by_truth_and_by_held_out_scores():
    from experiments.calibration_report import agreement_rows

    records = []
    for method, psnr, lpd, crps in (("mfvi", 26.0, 2.0, 0.01), ("sgld", 25.0, 3.0, 0.02),
                                    ("mcdropout", 24.0, 1.0, 0.03)):
        for seed in (0, 1, 2):
            found = record("mri", method, seed, psnr)
            found.update(heldout_lpd=lpd, heldout_crps=crps)
            records.append(found)
    [row] = agreement_rows(records)
    # LPD: sgld > mfvi > mcdropout (one swap against the truth); CRPS (lower better): the truth's
    assert row == ["mri", "mfvi, sgld, mcdropout", "0.33", "1.00", "no", "yes"]


def test_uce_differences_are_paired_by_seed_and_judged_by_their_interval():
    from experiments.calibration_report import uce_difference_rows

    records = []
    for method, uce in (("mfvi", 1e-3), ("mcdropout", 3e-3), ("sgld", 1e-3)):
        for seed in (0, 1, 2):
            found = record("oct", method, seed, 28.0)
            found["calibrations"]["scale"]["uce"] = uce + seed * 1e-4
            records.append(found)
    rows = uce_difference_rows(records)
    assert rows == [["oct", "mcdropout", "-2.00 ± 0.00", "lower"],
                    ["oct", "sgld", "0.00 ± 0.00", "not resolved"]]
