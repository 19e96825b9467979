"""The network study (experiments/network_study.py): a smoke-scale run tunes each network's
grid on a built-in sample, reports each at its best point, and tabulates both."""

from experiments import network_study as study


def test_smoke_run_tunes_each_network_and_reports_its_best_point(tmp_path, monkeypatch):
    monkeypatch.setattr(study, "IMAGES", {"phantom": ("sample:phantom", "sample:phantom")})
    monkeypatch.setattr(study, "SEEDS", (0,))
    monkeypatch.setattr(study, "SIZE", 32)
    monkeypatch.setattr(study, "GRID", {"batch": ("batch", {}, [(0.1, 0.1), (0.3, 0.1)]),
                                        "scaled": ("scaled", {"lr": 0.001}, [(0.1, 1.0)])})
    out = tmp_path / "study"
    assert study.report_runs(out) == []  # nothing tuned yet
    study.run_stage("tune", out, workers=1, smoke=True)
    best = study.best_points(out)
    assert set(best) == {"batch", "scaled"} and best["scaled"] == (0.1, 1.0)
    assert [run.config.lr for run in study.report_runs(out)] == [None, 0.001]
    study.run_stage("report", out, workers=1, smoke=True)
    text = study.report(out)
    tuned = [line for line in text.splitlines() if line.startswith(("| batch |", "| scaled |"))]
    assert len(tuned) == 3 and all(float(line.split(" | ")[3].strip(" |")) > 0 for line in tuned)
    reported = [line for line in text.splitlines() if line.startswith("| phantom |")]
    assert [line.split(" | ")[1] for line in reported] == ["batch", "scaled"]
    assert (out / "report.md").read_text() == text
