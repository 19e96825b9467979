"""The reproduction runner (experiments/reproduce.py): its plan, its errors, and (with the shared
images) a whole smoke-scale run. The docs' snippet test also runs it on generated images."""

from pathlib import Path

import pytest

from experiments.reproduce import DEFAULT_FILE, Plan, main
from pyrodip.infer.methods import METHODS

DATA = Path(__file__).resolve().parents[3] / "shared" / "data"  # beside the checkout


def test_the_plan_declares_the_papers_experiments():
    plan = Plan.from_toml(DEFAULT_FILE, "cpu")
    assert [d.name for d in plan.domains] == ["xray", "oct", "us", "mri", "ct", "skin"]
    assert set(plan.methods) == set(METHODS.keys()) and plan.seeds == [0, 1, 2]
    assert plan.settings == {"size": 128}  # the default network and steps
    us, skin = plan.domains[2], plan.domains[5]
    assert us.config(plan.settings).noise == "speckle" and us.config(plan.settings).steps == 5000
    assert skin.config(plan.settings, tuning=True).mask.endswith("skin2_mask.png")
    xray = plan.domains[0]
    assert xray.config(plan.settings).clip and xray.config(plan.settings).steps == 1000
    study = plan.study(xray)  # BO on the tuning image, the default search
    assert study.config.image.endswith("xray2.png")
    assert [p.name for p in study.params] == ["temperature"]
    comparison = plan.comparison(xray, {"temperature": 0.2})
    rows = {row: (config.method, config.temperature, config.prior_scale)
            for row, *_, config in comparison.runs()}
    assert rows["mfvi-tuned"] == ("mfvi", 0.2, 0.1) and rows["mfvi"] == ("mfvi", None, 0.1)
    assert rows["mfvi-paper"] == ("mfvi-paper", None, 0.05)
    paper = Plan.from_toml(DEFAULT_FILE, "paper")
    assert paper.settings["steps"] == 50000 and paper.settings["net"] == "paper"


@pytest.mark.parametrize("argv, words", [
    (["--scale", "huge"], "unknown scale 'huge'"),
    (["--domain", "brain"], "unknown domain 'brain'"),
    (["--file", "missing.toml"], "reproduction file not found"),
])
def test_bad_arguments_are_refused_in_one_line(argv, words, capsys, tmp_path):
    assert main([*argv, "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert words in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_a_malformed_file_is_named(tmp_path, capsys):
    path = tmp_path / "r.toml"
    path.write_text('methods = ["dip"]\n[scale.cpu]\nsettings = {}\n')
    assert main(["--file", str(path), "--out", str(tmp_path / "out")]) == 2
    assert "is malformed (KeyError: 'seeds')" in capsys.readouterr().err


@pytest.mark.shared_data
@pytest.mark.slow
def test_smoke_scale_runs_every_stage_on_the_shared_images(tmp_path, capsys):
    if not DATA.is_dir():
        pytest.skip("../shared/data is not here")
    assert main(["--scale", "smoke", "--out", str(tmp_path), "--quiet"]) == 0
    results = (tmp_path / "results.md").read_text()
    for name in ("xray", "oct", "us", "mri", "ct", "skin"):
        assert f"## {name}:" in results
        assert (tmp_path / name / "bo" / "gp.png").is_file()
        assert (tmp_path / name / "compare" / "calibration_mfvi.png").is_file()
        assert (tmp_path / name / "compare" / "calibration_mfvi-tuned.png").is_file()
        assert "`mfvi-tuned` (MFVI with it) minus `mfvi`" in results
    assert "| mfvi | 29.34 | 29.40 |" in results  # the paper's OCT row beside ours
    overview = [line for line in results.splitlines() if line.endswith(" |")
                and line.startswith(("| xray | ", "| skin | ")) and line.count("|") == 11]
    assert len(overview) == 2  # a row per domain: 8 rows of the comparison, the best classical
