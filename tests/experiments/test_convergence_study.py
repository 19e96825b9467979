"""The convergence study (experiments/convergence_study.py): a smoke-scale run on the built-in
samples (the shared images are not needed), run again to resume, and one on the shared
images."""

import numpy as np
import pytest

from experiments import convergence_fits as fits
from experiments import convergence_study as study


def test_smoke_run_on_the_samples_writes_every_method_seed_and_baseline(tmp_path, monkeypatch):
    monkeypatch.setattr(fits, "DOMAINS", {
        "phantom": (("sample:phantom",), {"task": "denoise", "size": 32}),
        "mr": (("sample:mr",), {"task": "superres", "factor": 4, "noise_std": 0.01,
                                "size": 32}),
    })
    monkeypatch.setattr(fits, "SEEDS", (0, 1))
    out = tmp_path / "study"
    study.run_stage("core", out, workers=1, smoke=True)
    records = fits.records(out)
    assert len(records) == 2 * 2 * 3
    labels = {(r["job"]["domain"], r["job"]["method"], r["job"]["seed"]) for r in records}
    assert labels == {(d, m, s) for d in ("phantom", "mr") for m in ("dip", "map", "mfvi")
                      for s in (0, 1)}
    for r in records:
        expected = ["bm3d", "tv", "wavelet", "nlm"] if r["job"]["domain"] == "phantom" else [
            "bicubic"]
        assert list(r["baselines"]) == expected
        assert all(np.isfinite(v) for v in r["baselines"].values())
        assert len(r["curves"]["psnr"]) == 30
        if r["job"]["method"] != "mfvi":
            assert 1 <= r["stop_heldout"]["step"] <= 30
    text = study.report(out)
    assert "| phantom | sample:phantom | 2 |" in text and "95 % t-interval" in text
    assert (out / "report.md").exists() and (out / "convergence.png").exists()
    written = {path: path.stat().st_mtime_ns for path in (out / "runs").iterdir()}
    study.run_stage("core", out, workers=1, smoke=True)  # resumed: nothing left to fit
    assert {path: path.stat().st_mtime_ns for path in (out / "runs").iterdir()} == written


@pytest.mark.shared_data
@pytest.mark.slow
def test_smoke_stage_on_the_shared_images(tmp_path):
    assert fits.DATA.is_dir()
    out = tmp_path / "study"
    args = ["run", "--stage", "core", "--out", str(out), "--workers", "1", "--smoke",
            "--match", "_strokes_", "--match", "_skin_0_"]
    assert study.main(args) == 0
    records = fits.records(out)
    assert len(records) == 2 * 3 * 3
    assert all("psnr_known" in r for r in records if r["job"]["domain"] == "skin")
