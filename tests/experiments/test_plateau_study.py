"""The plateau study (experiments/plateau_study.py): a smoke-scale run of both stages on a
built-in sample, and the report's reading of the long fit's curve."""

import numpy as np
import xarray as xr

from experiments import plateau_study as study


def test_smoke_run_reports_the_default_result_against_the_long_fit(tmp_path, monkeypatch):
    monkeypatch.setattr(study, "DOMAINS", {"phantom": ("sample:phantom", "sample:phantom",
                                                    {"task": "denoise"})})
    monkeypatch.setattr(study, "SEEDS", (0,))
    monkeypatch.setattr(study, "SIZE", 32)
    out = tmp_path / "study"
    for stage in study.STAGES:
        study.run_stage(stage, out, workers=1, smoke=True)
    text = study.report(out)
    row = next(line for line in text.splitlines() if line.startswith("| phantom |"))
    cells = row.strip("| ").split(" | ")
    assert cells[2] == "1" and cells[4] == "1"  # one default fit, one long fit
    assert all(float(cell) for cell in cells[5:5 + len(study.READ_AT) + 2])
    assert (out / "plateau.png").exists()
    for stage in ("tuning", "five"):
        part = text[text.index(f"## {stage}:"):].splitlines()
        line = next(line for line in part if line.startswith("| phantom |"))
        cells = line.strip("| ").split(" | ")
        assert len(cells) == 5 + len(study.FIVE_READ_AT) and cells[2] == "1"


def _run(seed: int, psnr: float, curve: list[float]) -> xr.Dataset:
    return xr.Dataset(attrs={"seed": seed, "mean_psnr": psnr,
                             "metrics": f'{{"curve_ema": {curve}}}'})


def test_the_row_reads_the_curve_at_multiples_of_the_default_steps(monkeypatch):
    monkeypatch.setattr(study, "DOMAINS", {"d": ("x.png", "", {})})
    curve = np.linspace(20.0, 29.0, 400)  # 10 000 steps every 25
    curve[100:] = 29.0 - 0.001 * np.arange(300)  # the peak at step 2525, then a slow fall
    cells = study.plateau_row("d", [_run(0, 28.5, []), _run(1, 28.7, [])],
                              [_run(0, 28.0, curve.tolist())])
    assert cells[:5] == ["d", "x.png", "2", "28.60 ± 1.27", "1"]
    assert cells[5] == f"{curve[39]:.2f}"  # the EMA at step 1000
    assert cells[8] == f"{curve[-1]:.2f}"  # at step 10 000
    assert cells[10:12] == ["29.00", "2525"]  # the best EMA and its step
    assert cells[12] == "-0.50"  # seed 0's default result minus its best
    assert cells[13] == f"{curve[40:].min() - curve[39]:.2f}"
