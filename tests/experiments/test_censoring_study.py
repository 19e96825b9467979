"""The censoring study (experiments/censoring_study.py): a smoke-scale run fits both settings
on the same clipped observation and tabulates their scores beside BM3D's."""

from experiments import censoring_study as study


def test_smoke_run_fits_both_settings_and_tables_them_beside_bm3d(tmp_path, monkeypatch):
    monkeypatch.setattr(study, "IMAGES", {"phantom": ("sample:phantom", "sample:phantom")})
    monkeypatch.setattr(study, "SEEDS", (0,))
    monkeypatch.setattr(study, "SIZE", 32)
    out = tmp_path / "study"
    study.run_stage("report", out, workers=1, smoke=True)
    text = study.report(out)
    rows = [line.split(" | ") for line in text.splitlines() if line.startswith("| phantom |")]
    assert [row[1] for row in rows] == ["auto", "off", "1"]  # the last: the paired difference
    assert all(0 < float(row[4]) <= 1 and float(row[7]) > 0 for row in rows[:2])  # SSIM, BM3D
    scores = [{key: float(ds.attrs[key]) for key in study.SCORES} for ds in (
        study.finished(out, [f"report_phantom_{s}_seed0"])[f"report_phantom_{s}_seed0"]
        for s in ("auto", "off"))]
    assert float(rows[2][2]) == round(scores[0]["mean_psnr"] - scores[1]["mean_psnr"], 3)
    datasets = study.finished(out, [run.name for run in study.runs("report")])
    assert {ds.attrs["censored"] for ds in datasets.values()} == {"[0, 1]", "none"}
    assert (out / "report.md").read_text() == text
