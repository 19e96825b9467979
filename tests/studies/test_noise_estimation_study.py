"""The noise-estimation study (experiments/noise_estimation.py): its jobs and its report."""

import json

import pytest

from experiments.noise_estimation import DATA, HELD_OUT, LEVELS, TUNING, jobs, main, report


def test_jobs_cover_every_image_level_and_seed():
    estimators = jobs("estimators")
    assert len(estimators) == len(TUNING + HELD_OUT) * len(LEVELS) * 3
    assert len({job.name for job in estimators}) == len(estimators)
    assert all(job.image in HELD_OUT for job in jobs("learned"))


def test_report_keeps_tuning_and_held_out_images_apart(tmp_path):
    (tmp_path / "jobs").mkdir()
    records = [
        {"name": f"r{i}", "stage": "estimators", "image": image, "held_out": held, "level": 0.1,
         "seed": seed, "pca": 0.1 * ratio, "mad": 0.08}
        for i, (image, held, seed, ratio) in enumerate([
            ("xray", False, 0, 1.0), ("xray", False, 1, 1.2), ("oct2", True, 0, 1.5)])
    ]
    for record in records:
        (tmp_path / "jobs" / f"{record['name']}.json").write_text(json.dumps(record))
    text = report(tmp_path)
    tuning, held_out = text.split("## held-out images")
    assert "| patch PCA (pyrodip) | 0.1 | 1.10 | 1.10-1.10 | xray | 1/2 |" in tuning
    assert "| patch PCA (pyrodip) | 0.1 | 1.50 | 1.50-1.50 | oct2 | 0/1 |" in held_out
    assert "| wavelet MAD | 0.1 | 0.80 |" in held_out
    assert (tmp_path / "report.md").exists()


@pytest.mark.shared_data
def test_smoke_run_writes_records(tmp_path):
    assert DATA.is_dir()
    out = tmp_path / "noise"
    assert main(["run", "--stage", "estimators", "--out", str(out), "--smoke"]) == 0
    records = [json.loads(p.read_text()) for p in (out / "jobs").glob("*.json")]
    assert len(records) == 2 and all(r["pca"] > 0 and r["mad"] > 0 for r in records)
