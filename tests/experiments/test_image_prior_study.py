"""The image-prior study (experiments/image_prior_study.py): at smoke scale it tunes each
prior's setting on the tuning image, then fits no image prior and each tuned setting on the
same observations and tables them beside BM3D."""

import pytest

from experiments import image_prior_study as study


def test_smoke_run_tunes_each_prior_then_reports_it_beside_no_prior_and_bm3d(tmp_path,
                                                                             monkeypatch):
    monkeypatch.setattr(study, "IMAGES", {"phantom": ("sample:phantom", "sample:ct")})
    monkeypatch.setattr(study, "SEEDS", (0,))
    monkeypatch.setattr(study, "SIZE", 32)
    monkeypatch.setattr(study, "GRID", {
        "tv": {"tv1": {"tv_weight": 1.0}, "tv10": {"tv_weight": 10.0}},
        "red": {"red10": {"red_weight": 10.0, "red_sigma": 0.05, "red_denoiser": "tv"}},
    })
    out = tmp_path / "study"
    assert study.report_runs(out) == []  # nothing to report before the tuning fits
    study.run_stage("tune", out, workers=1, smoke=True)
    chosen = study.best_labels(out)
    assert chosen[0] in ("tv1", "tv10") and chosen[1] == "red10"
    study.run_stage("report", out, workers=1, smoke=True)
    text = study.report(out)
    rows = [line.split(" | ") for line in text.splitlines() if line.startswith("| phantom |")]
    assert [row[1] for row in rows] == ["tv1", "tv10", "red10", "none", *chosen, *chosen]
    paired, rows = rows[-2:], rows[:-2]  # the last: each prior minus none, paired by seed
    assert [float(row[3]) for row in paired] == pytest.approx(
        [float(rows[index][3]) - float(rows[3][3]) for index in (4, 5)], abs=0.011)
    assert all(0 < float(row[4].split()[0]) <= 1 for row in rows)  # SSIM
    assert float(rows[-1][7]) > 0 and rows[0][7] == ""  # BM3D in the report stage only
    report = study.finished(out, [run.name for run in study.report_runs(out)])
    assert {ds.attrs["image_prior"] for ds in report.values()} == {
        "none", "tv:1" if chosen[0] == "tv1" else "tv:10", "red:10:tv:0.05"}
    assert (out / "report.md").read_text() == text
