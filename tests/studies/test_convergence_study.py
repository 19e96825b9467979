"""The convergence study (experiments/convergence_study.py): its job lists, its judgement of
the goal, and a smoke-scale run on the built-in samples (the shared images are not needed)."""

import json
from pathlib import Path

import numpy as np
import pytest

from experiments import convergence_study as study


def test_jobs_cover_every_domain_image_seed_and_method_once():
    core, others = study.jobs("core"), study.jobs("others")
    images = sum(len(paths) for paths, _ in study.DOMAINS.values())
    assert len(core) == images * 3 * 3  # dip, map, mfvi; 3 seeds
    assert {job.image for job in others} == {0}
    assert not [job for job in others if job.method == "mfvi-paper" and job.domain == "us"]
    long = study.jobs("long")
    assert {(job.domain, job.image, job.method) for job in long} == {
        ("xray", 0, "mfvi"), ("oct", 0, "mfvi")}
    assert long[0].config(Path("unused")).steps == 3 * study.STEPS
    names = [job.name for job in core + others + long]
    assert len(set(names)) == len(names)
    first = [job.image for job in core]
    assert first == sorted(first)  # the first images run before the second ones


def test_every_fit_holds_out_the_same_values_and_runs_to_the_end(tmp_path):
    dip = study.Job("core", "oct", 0, "dip", 1).config(tmp_path)
    mfvi = study.Job("core", "oct", 0, "mfvi", 1).config(tmp_path)
    assert dip.resolved("stop_rule") == "heldout" and dip.stop_patience == dip.steps == 3000
    assert mfvi.resolved("calibration") == "scale"
    assert (dip.heldout_fraction, dip.seed, dip.image) == (mfvi.heldout_fraction, 1, mfvi.image)
    skin = study.Job("core", "skin", 1, "mfvi", 0).config(tmp_path)
    assert skin.mask.endswith("inpainting/skin2_mask.png")


def record(domain, image, method, seed, psnr, **extra):
    job = study.Job("core", domain, image, method, seed)
    return {"job": job.__dict__, "status": "completed", "psnr": psnr, "last_current": psnr,
            "best_current": psnr + 1.0, "best_current_step": 300,
            "baselines": {"bm3d": 30.0, "tv": 29.0}, "baseline": "bm3d", **extra}


def test_the_goal_is_judged_on_the_means_over_seeds():
    stop = {"step": 400, "stopped": True}
    records = []
    for seed in (0, 1, 2):
        records.append(record("oct", 0, "mfvi", seed, 29.6 + 0.1 * seed))
        records.append(record("oct", 0, "dip", seed, 26.0, stop_wmv={**stop, "psnr": 29.0},
                              stop_heldout={**stop, "psnr": 29.8}))
    rows = study.claim_rows(records)
    assert len(rows) == 1 and rows[0][:4] == ["oct", "oct.png", "3", "29.70 ± 0.25"]
    assert rows[0][-1] == "not: ≥ self-stopped DIP"  # 29.7 < 29.8 (held-out stop)
    assert rows[0][-3:-1] == ["30.00 ± 0.00 (bm3d)", "-0.30 ± 0.25"]
    assert rows[0][9] == "0.70 ± 0.25"  # MFVI - DIP ES-WMV, seed by seed
    stops = study.stop_rows(records)
    assert stops[0][2:] == ["dip", "300 ± 0", "-", "400 ± 0", "3/3", "400 ± 0", "3/3"]


def test_smoke_run_on_the_samples_writes_every_method_seed_and_baseline(tmp_path, monkeypatch):
    monkeypatch.setattr(study, "DOMAINS", {
        "phantom": (("sample:phantom",), {"task": "denoise", "size": 32}),
        "mr": (("sample:mr",), {"task": "superres", "factor": 4, "noise_std": 0.01,
                                "size": 32}),
    })
    monkeypatch.setattr(study, "SEEDS", (0, 1))
    out = tmp_path / "study"
    study.run_stage("core", out, workers=1, smoke=True)
    records = [json.loads(p.read_text()) for p in (out / "jobs").glob("*.json")]
    assert len(records) == 2 * 2 * 3
    labels = {(r["job"]["domain"], r["job"]["method"], r["job"]["seed"]) for r in records}
    assert labels == {(d, m, s) for d in ("phantom", "mr") for m in ("dip", "map", "mfvi")
                      for s in (0, 1)}
    for r in records:
        expected = ["bm3d", "tv", "wavelet", "nlm"] if r["job"]["domain"] == "phantom" else [
            "bicubic"]
        assert list(r["baselines"]) == expected
        assert all(np.isfinite(v) for v in r["baselines"].values())
        if r["job"]["method"] != "mfvi":
            assert 1 <= r["stop_heldout"]["step"] <= 30
    text = study.report(out)
    assert "| phantom | sample:phantom | 2 |" in text and (out / "report.md").exists()
    assert (out / "convergence.png").exists()
    study.run_stage("core", out, workers=1, smoke=True)  # nothing left: no record rewritten
    assert len(list((out / "jobs").glob("*.json"))) == 12


@pytest.mark.shared_data
@pytest.mark.slow
def test_smoke_stage_on_the_shared_images(tmp_path):
    assert study.DATA.is_dir()
    out = tmp_path / "study"
    args = ["run", "--stage", "core", "--out", str(out), "--workers", "1", "--smoke",
            "--match", "_strokes_", "--match", "_skin_0_"]
    assert study.main(args) == 0
    records = [json.loads(p.read_text()) for p in (out / "jobs").glob("*.json")]
    assert len(records) == 2 * 3 * 3
    assert all("psnr_known" in r for r in records if r["job"]["domain"] == "skin")
