"""The readout study (experiments/readout_study.py): a smoke-scale run on a built-in sample
scores every readout of each fit, and the report tabulates them."""

from experiments import readout_study as study


def test_smoke_run_scores_every_readout_and_the_report_tables_them(tmp_path, monkeypatch):
    monkeypatch.setattr(study, "IMAGES", {"phantom": ("sample:phantom", "sample:phantom")})
    monkeypatch.setattr(study, "SEEDS", (0,))
    monkeypatch.setattr(study, "SIZE", 32)
    monkeypatch.setattr(study, "SETTINGS", {"before": study.SETTINGS["before"]})
    monkeypatch.setattr(study, "STAGES", {"tune": (0, ("before", "dip"), 1000, ("phantom",))})
    monkeypatch.setattr(study, "DRAWN", (("tune", "before", "curve_ema", "k"),))
    out = tmp_path / "study"
    study.run_stage("tune", out, workers=1, smoke=True)
    text = study.report(out)
    rows = [line for line in text.splitlines() if line.startswith("| phantom |")]
    assert len(rows) == 2
    mfvi = rows[0].split(" | ")
    assert mfvi[1] == "before" and mfvi[2] == "1"
    assert all(float(cell) for cell in mfvi[3:6 + len(study.READOUT_NAMES)])  # every readout
    assert (out / "report.md").read_text() == text
    assert (out / "time_to_quality.png").exists()
