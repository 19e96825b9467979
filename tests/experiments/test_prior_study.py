"""The prior study (experiments/prior_study.py): its job lists, its summaries, and (with the
shared images) a smoke-scale run of a stage and its report."""

import numpy as np
import pytest

from experiments import prior_study
from experiments.prior_study import DATA, jobs, main, plateau_step, summary_rows


def test_stages_declare_the_issues_grid():
    sweep = jobs("sweep")
    settings = {tuple(job.settings) for job in sweep}
    assert len(settings) == 1 + 5 + 4  # dip, five prior scales, four more temperatures
    assert {job.seed for job in sweep} == {0, 1, 2} and {job.size for job in sweep} == {64}
    assert {job.image for job in sweep} == {"oct2.png", "xray2.png"}  # tuning images
    flat = jobs("flat")
    assert {job.image for job in flat} == {"oct.png", "xray.jpg"}  # report images
    assert {(dict(job.settings)["method"], job.steps) for job in flat} == {
        ("mfvi", 6000), ("dip", 3000)}
    assert len({job.name for job in sweep + jobs("networks") + flat}) == len(
        sweep + jobs("networks") + flat)


def test_plateau_is_where_the_loss_stops_falling():
    loss = np.r_[np.linspace(100, 0, 1000), np.zeros(2000)]
    assert 990 <= plateau_step(loss) <= 1100
    assert plateau_step(np.zeros(50)) == 50  # too short to tell: the whole fit


def test_summary_groups_seeds_per_setting_with_t_intervals():
    def record(seed, last):
        return {"job": {"stage": "sweep", "domain": "oct", "settings": [["method", "dip"]],
                        "seed": seed},
                "config": {"prior_scale": 0.1}, "psnr_best": 30.0, "psnr_last": last,
                "psnr_mean": last, "std_epistemic": 0.0, "step_best": 300, "plateau_step": 900,
                "guide": {}}

    rows = summary_rows([record(0, 28.0), record(1, 29.0), record(2, 30.0)])
    assert len(rows) == 1 and rows[0][:4] == ["sweep", "oct", "dip (batch)", "3"]
    assert rows[0][4] == "29.00 ± 2.48"  # t(0.975, 2) = 4.30, times 1 / sqrt(3)
    assert rows[0][6].startswith("1.00 ±")  # best - last


@pytest.mark.shared_data
@pytest.mark.slow
def test_smoke_stage_writes_runs_and_a_report(tmp_path):
    assert DATA.is_dir()
    out = tmp_path / "study"
    assert main(["run", "--stage", "flat", "--out", str(out), "--workers", "1", "--smoke"]) == 0
    records = prior_study.records(out)
    assert len(records) == len(jobs("flat"))
    assert all(len(r["psnr_curve"]) == 4 for r in records)
    assert all(r["guide"]["mean_std"] > 0 for r in records if r["config"]["method"] == "mfvi")
    report = (out / "report.md").read_text()
    assert "| flat | oct | dip (batch) | 3 |" in report and "95 % t-interval" in report
    assert (out / "curves_flat.png").stat().st_size > 0
