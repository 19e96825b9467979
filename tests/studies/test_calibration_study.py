"""The calibration study (experiments/calibration_study.py): its job lists, its tables, and
(with the shared images) a smoke-scale run of a stage and its report."""

import json

import numpy as np
import pytest

from experiments.calibration_study import (
    DATA,
    DOMAINS,
    Job,
    goal_rows,
    jobs,
    main,
    psnr_cost_rows,
)


def test_stages_tune_on_the_second_images_and_report_on_the_first():
    tune, goal = jobs("tune"), jobs("goal")
    assert {job.image for job in tune} == {domain[1] for domain in DOMAINS.values()}
    assert {job.image for job in goal} == {domain[0] for domain in DOMAINS.values()}
    assert len(goal) == len(DOMAINS) * 4 * 3  # mfvi, mfvi uncalibrated, mcdropout, sgld; 3 seeds
    assert {job.domain for job in jobs("diagnose")} == {"xray", "oct"}
    names = [job.name for job in tune + goal + jobs("diagnose")]
    assert len(set(names)) == len(names)
    config = Job("goal", "mri", DOMAINS["mri"][0], "sgld", 1).config()
    assert (config.task, config.factor, config.size, config.steps) == ("superres", 4, 128, 1000)


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


@pytest.mark.shared_data
@pytest.mark.slow
def test_smoke_stage_writes_records_and_a_report(tmp_path):
    assert DATA.is_dir()
    out = tmp_path / "study"
    args = ["run", "--stage", "tune", "--out", str(out), "--workers", "1", "--smoke",
            "--match", "oct", "--match", "mri"]
    assert main(args) == 0
    records = [json.loads(p.read_text()) for p in (out / "jobs").glob("*.json")]
    assert len(records) == 6 and all(r["status"] == "completed" for r in records)
    for r in records:
        scored = r["calibrations"]
        assert {"raw", "scale"} <= set(scored) and scored["raw"]["scale"] == 1.0
        assert np.isfinite(r["oracle_scale"]) and len(r["binned_error"]) == 10
    report = (out / "report.md").read_text()
    assert "| oct | denoising/oct2.png |" in report and "| mri |" in report
    assert main(args) == 0  # run again: nothing left to fit
