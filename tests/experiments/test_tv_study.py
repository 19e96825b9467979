"""The TV study (experiments/tv_study.py): at smoke scale it tunes the weight on the tuning
image, then fits no image prior and the chosen weight on the same observations and tables
them beside BM3D."""

from experiments import tv_study as study


def test_smoke_run_tunes_the_weight_then_reports_it_beside_no_prior_and_bm3d(tmp_path,
                                                                              monkeypatch):
    monkeypatch.setattr(study, "IMAGES", {"phantom": ("sample:phantom", "sample:ct")})
    monkeypatch.setattr(study, "SEEDS", (0,))
    monkeypatch.setattr(study, "WEIGHTS", (1.0, 10.0))
    monkeypatch.setattr(study, "SIZE", 32)
    out = tmp_path / "study"
    assert study.report_runs(out) == []  # nothing to report before the tuning fits
    study.run_stage("tune", out, workers=1, smoke=True)
    weight = study.best_weight(out)
    assert weight in (1.0, 10.0)
    study.run_stage("report", out, workers=1, smoke=True)
    text = study.report(out)
    rows = [line.split(" | ") for line in text.splitlines() if line.startswith("| phantom |")]
    assert [row[1] for row in rows] == ["tv 1", "tv 10", "none", f"tv {weight:g}"]
    assert all(0 < float(row[4].split()[0]) <= 1 for row in rows)  # SSIM
    assert float(rows[-1][7]) > 0 and rows[0][7] == ""  # BM3D in the report stage only
    report = study.finished(out, [run.name for run in study.report_runs(out)])
    assert sorted(ds.attrs["image_prior"] for ds in report.values()) == ["none", f"tv:{weight:g}"]
    assert (out / "report.md").read_text() == text
