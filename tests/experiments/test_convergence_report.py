"""The convergence study's report (experiments/convergence_report.py): its judgement of the
goal and its tables of the stopping rules."""

from experiments import convergence_fits as fits
from experiments import convergence_report as report


def record(domain, image, method, seed, psnr, **extra):
    job = fits.Job("core", domain, image, method, seed)
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
    rows = report.claim_rows(records)
    assert len(rows) == 1 and rows[0][:4] == ["oct", "oct.png", "3", "29.70 ± 0.25"]
    assert rows[0][-1] == "not: ≥ self-stopped DIP"  # 29.7 < 29.8 (held-out stop)
    assert rows[0][-3:-1] == ["30.00 ± 0.00 (bm3d)", "-0.30 ± 0.25"]
    assert rows[0][9] == "0.70 ± 0.25"  # MFVI - DIP ES-WMV, seed by seed
    stops = report.stop_rows(records)
    assert stops[0][2:] == ["dip", "300 ± 0", "-", "400 ± 0", "3/3", "400 ± 0", "3/3"]
