"""The denoising study (experiments/denoising_study.py): at smoke scale it fits every variant
that applies to each noise model on the same observation and tables them beside the classical
baselines, with each variant minus BM3D paired by seed."""

import math

import numpy as np
import pytest
from skimage.io import imread

from experiments import denoising_study as study


def test_smoke_run_tables_every_variant_beside_the_baselines_and_minus_bm3d(tmp_path,
                                                                            monkeypatch):
    monkeypatch.setattr(study, "IMAGES", {
        "phantom": ("sample:phantom", "sample:ct", "gaussian", 0.1),
        "speckled": ("sample:phantom", "sample:ct", "speckle", 0.1)})
    monkeypatch.setattr(study, "VARIANTS", {
        "mfvi": ({}, ("gaussian", "speckle")),
        "mfvi+sure+tv": (study.VARIANTS["mfvi+sure+tv"][0], ("gaussian",))})
    monkeypatch.setattr(study, "SEEDS", (0,))
    monkeypatch.setattr(study, "SIZE", 32)
    out = tmp_path / "study"
    study.run_stage("report", out, workers=1, smoke=True)
    text = study.report(out)
    gaussian, speckle = text.split("## report: phantom")[1].split("## report: speckled")
    rows = [line.strip("| ").split(" | ") for line in gaussian.splitlines()
            if line.startswith("| ")][1:]
    assert [row[0] for row in rows if row[0] != "---"] == [
        "mfvi", "mfvi+sure+tv", "bm3d", "tv", "nlm", "method", "mfvi", "mfvi+sure+tv",
        "method", "mfvi+sure+tv"]  # the fits, minus BM3D, minus mfvi
    fits = study.finished(out, [run.name for run in study.runs("report")])
    fit = fits["report_phantom_mfvi_seed0"]
    bm3d = float(fit["classical_psnr"].values[fit["classical"].values.tolist().index("bm3d")])
    minus = [row for row in rows if row[0] == "mfvi"][-1]
    assert float(minus[2]) == pytest.approx(float(fit.attrs["mean_psnr"]) - bm3d, abs=6e-4)
    assert "PSNR of the log images" in speckle and "PSNR of the log images" not in gaussian
    assert {fits[f"report_{d}_mfvi_seed0"].attrs["noise"] for d in ("phantom", "speckled")} == {
        "gaussian", "speckle"}
    agreement = [line for line in text.splitlines() if line.startswith("| report | phantom |")]
    better = float(fit.attrs["mean_psnr"]) > float(
        fits["report_phantom_mfvi+sure+tv_seed0"].attrs["mean_psnr"])
    lpd_better = float(fit.attrs["heldout_lpd"]) > float(
        fits["report_phantom_mfvi+sure+tv_seed0"].attrs["heldout_lpd"])
    assert agreement == [f"| report | phantom | mfvi, mfvi+sure+tv | "
                         f"{'1.00' if better == lpd_better else '-1.00'} |"
                         + agreement[0].split("|", 5)[5]]
    versus = rows[-1]  # mfvi+sure+tv minus mfvi, the PSNR
    assert float(versus[2]) == pytest.approx(float(fits["report_phantom_mfvi+sure+tv_seed0"].attrs[
        "mean_psnr"]) - float(fit.attrs["mean_psnr"]), abs=6e-4)
    combined = fits["report_phantom_mfvi+sure+tv_seed0"].attrs
    assert (combined["data_term"], combined["image_prior"], combined["censored"]) == (
        "sure", "tv:1", "none")
    assert (out / "report.md").read_text() == text
    assert study.tuned_choice(out) is None  # no tuning fits yet
    study.run_stage("tune", out, workers=1, smoke=True)
    tuned = study.finished(out, [run.name for run in study.runs("tune")])
    assert sorted(tuned) == ["tune_phantom_mfvi+sure+tv_seed0", "tune_phantom_mfvi_seed0"]
    best = max(tuned, key=lambda name: float(tuned[name].attrs["mean_psnr"]))
    assert study.tuned_choice(out) == best.split("_")[2]
    assert f"tuning images (all domains and seeds): {best.split('_')[2]}" in study.report(out)


def test_stabilized_psnr_is_the_psnr_of_the_log_images_for_speckle():
    truth = np.array([0.1, 0.5, 1.0])
    estimate = truth * np.exp(np.array([0.01, -0.02, 0.0]))
    mse = np.mean(np.array([0.01, -0.02, 0.0]) ** 2)
    expected = 10 * math.log10(math.log(10) ** 2 / mse)
    assert study.stabilized_psnr(estimate, truth, "speckle", 0.1) == pytest.approx(expected)
    assert study.stabilized_psnr(estimate, truth, "gaussian", 0.1) < expected  # not logged


def test_scan_stage_reconstructs_8_bit_files_of_the_observations_and_scores_them(tmp_path,
                                                                                 monkeypatch):
    monkeypatch.setattr(study, "IMAGES", {"phantom": ("sample:phantom", "sample:ct", "gaussian",
                                                      0.1)})
    monkeypatch.setattr(study, "SEEDS", (0,))
    monkeypatch.setattr(study, "SIZE", 32)
    out = tmp_path / "study"
    study.run_stage("scan", out, workers=1, smoke=True)
    scan = study.scan_path(out, "phantom", 0)
    pixels = imread(scan)
    assert pixels.dtype == np.uint8 and pixels.shape == (32, 32)
    fit = study.finished(out, ["scan_phantom_mfvi_seed0"])["scan_phantom_mfvi_seed0"]
    assert "truth" not in fit and 0.05 < float(fit.attrs["noise_estimate"]) < 0.2
    truth = np.load(scan.with_suffix(".npy"))
    scores = study.scan_scores(fit, truth)
    mse = float(np.mean((fit["mean"].values - truth) ** 2))
    assert scores["mean_psnr"] == pytest.approx(-10 * math.log10(mse), abs=1e-3)
    assert 0 <= scores["coverage_68"] <= scores["coverage_95"] <= 1
    text = study.report(out)
    assert "| phantom | mfvi | 1 |" in text and "| phantom | bm3d | 1 |" in text
    assert f"| phantom | 1 | {scores['mean_psnr'] - scores['bm3d_psnr']:.3f} |" in text

