"""The calibration study (experiments/calibration_study.py): with the shared images, a
smoke-scale run of a stage and its report."""

import numpy as np
import pytest

from experiments import calibration_fits
from experiments.calibration_study import main
from experiments.common import DATA


@pytest.mark.shared_data
@pytest.mark.slow
def test_smoke_stage_writes_runs_and_a_report(tmp_path):
    assert DATA.is_dir()
    out = tmp_path / "study"
    args = ["run", "--stage", "tune", "--out", str(out), "--workers", "1", "--smoke",
            "--match", "oct", "--match", "mri"]
    assert main(args) == 0
    records = calibration_fits.records(out)
    assert len(records) == 6 and all(r["status"] == "completed" for r in records)
    for r in records:
        scored = r["calibrations"]
        assert {"raw", "scale"} <= set(scored) and scored["raw"]["scale"] == 1.0
        assert np.isfinite(r["oracle_scale"]) and len(r["binned_error"]) == 10
    report = (out / "report.md").read_text()
    assert "| oct | denoising/oct2.png |" in report and "| mri |" in report
