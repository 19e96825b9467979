"""The BO transfer study (experiments/bo_transfer_study.py): a smoke-scale run of every stage on a
built-in sample, and the report's tables read from it."""

from experiments import bo_transfer_study as study


def test_smoke_run_tunes_on_one_image_and_applies_on_the_other(tmp_path, monkeypatch):
    monkeypatch.setattr(study, "DOMAINS", {"phantom": ("sample:phantom", "sample:ct",
                                                       {"task": "denoise"})})
    monkeypatch.setattr(study, "SIZE", 32)
    monkeypatch.setattr(study, "BUDGET", {"init_points": 2, "rounds": 1, "batch": 1})
    monkeypatch.setattr(study, "APPLY_SEEDS", (1, 2))
    monkeypatch.setattr(study, "TEMPERATURES", (0.1, 1.0))
    out = tmp_path / "study"
    study.run_stage("apply", out, workers=1, smoke=True)  # before BO: the default only
    assert sorted(p.name for p in (out / "runs").glob("*.nc")) == [
        "apply_phantom_default_seed1.nc", "apply_phantom_default_seed2.nc"]
    for stage in study.STAGES:
        study.run_stage(stage, out, workers=1, smoke=True)
    assert len(list((out / "runs").glob("*.nc"))) == 6
    text = study.report(out)
    bo = [line.strip("| ").split(" | ") for line in text.splitlines()
          if line.startswith("| phantom |") and "temperature" in line]
    assert [row[2] for row in bo] == ["report", "tuning"]
    assert all(row[3] == "3" and row[4].startswith("temperature ") for row in bo)
    applied = next(line for line in text.splitlines()
                   if line.startswith("| phantom |") and line.count("|") == 8 and "±" in line)
    cells = applied.strip("| ").split(" | ")
    assert len(cells) == 7 and all("±" in cell for cell in cells[2:])
    agreement = [line for line in text.splitlines() if line.startswith("| phantom | ")
                 and line.count("|") == 5]
    assert [row.split(" | ")[1] for row in agreement] == ["0.1", "1"]
    assert (out / "bo_transfer.png").exists()
