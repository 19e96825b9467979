"""The noise-estimation study (experiments/noise_estimation.py): its cases, its report, and
(with the shared images) a smoke-scale run of each stage."""

import json

import pytest

from experiments import noise_estimation as study
from experiments.noise_estimation import DATA, HELD_OUT, LEVELS, TUNING, jobs, main, report


def test_jobs_cover_every_image_level_and_seed():
    estimators = jobs("estimators")
    assert len(estimators) == len(TUNING + HELD_OUT) * len(LEVELS) * 3
    assert len({job.name for job in estimators}) == len(estimators)
    assert all(job.image in HELD_OUT for job in jobs("learned"))
    config = jobs("learned")[0].config()
    assert (config.noise_std, config.noise_level, config.calibration) == (
        0.02, "learned", "none")


def test_report_keeps_tuning_and_held_out_images_apart(tmp_path):
    records = [
        {"name": f"r{i}", "stage": "estimators", "image": image, "held_out": held, "level": 0.1,
         "seed": seed, "pca": 0.1 * ratio, "mad": 0.08}
        for i, (image, held, seed, ratio) in enumerate([
            ("xray", False, 0, 1.0), ("xray", False, 1, 1.2), ("oct2", True, 0, 1.5)])
    ]
    (tmp_path / "estimates.json").write_text(json.dumps({r["name"]: r for r in records}))
    text = report(tmp_path)
    tuning, held_out = text.split("## held-out images")
    assert "| patch PCA (pyrodip) | 0.1 | 1.10 | 1.10-1.10 | xray | 1/2 |" in tuning
    assert "| patch PCA (pyrodip) | 0.1 | 1.50 | 1.50-1.50 | oct2 | 0/1 |" in held_out
    assert "| wavelet MAD | 0.1 | 0.80 |" in held_out
    assert (tmp_path / "report.md").exists()


@pytest.mark.shared_data
def test_smoke_run_writes_estimates(tmp_path):
    assert DATA.is_dir()
    out = tmp_path / "noise"
    assert main(["run", "--stage", "estimators", "--out", str(out), "--smoke"]) == 0
    records = study.records(out)
    assert len(records) == 2 and all(r["pca"] > 0 and r["mad"] > 0 for r in records)


@pytest.mark.shared_data
@pytest.mark.slow
def test_smoke_run_learns_the_noise_std(tmp_path):
    out = tmp_path / "noise"
    args = ["run", "--stage", "learned", "--out", str(out), "--workers", "1", "--smoke"]
    assert main(args) == 0
    records = study.records(out)
    assert len(records) == 2 and all(r["learned"] > 0 for r in records)
    assert "learned by MFVI" in (out / "report.md").read_text()
