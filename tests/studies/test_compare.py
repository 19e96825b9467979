import numpy as np
import pytest

from pyrodip.cli import main
from pyrodip.errors import InvalidInputError
from pyrodip.io.files import check_result_set
from pyrodip.run.results import read_dataset
from pyrodip.studies.compare import Comparison, load_results, write_comparison
from pyrodip.studies.table import summary_table

STUDY = """
methods = ["dip", "mfvi"]
images = ["sample:phantom"]
seeds = [0, 1]

[settings]
size = 32
steps = 4
samples = 2

[method.dip]
lr = 0.02
"""


@pytest.fixture
def study_file(tmp_path):
    path = tmp_path / "study.toml"
    path.write_text(STUDY)
    return path


def test_compare_stacks_methods_images_seeds_and_reports(study_file, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["compare", str(study_file), "--out", str(out), "--quiet"]) == 0
    printed = capsys.readouterr().out
    study = read_dataset(out / "comparison.nc")
    assert dict(study.sizes)["method"] == 2 and study.sizes["seed"] == 2
    assert list(study["method"].values) == ["dip", "mfvi"]
    assert study["psnr"].dims == ("method", "image", "seed", "step")
    assert study.sizes["step"] == 4 and study["mean"].shape[-2:] == (32, 32)
    assert np.isfinite(study["mean_psnr"]).all()
    assert np.isfinite(study["uce"].sel({"method": "mfvi"})).all()
    assert np.isnan(study["uce"].sel({"method": "dip"})).all()  # no std, no calibration
    # each run keeps its own settings: the dip override, the seeds
    run = read_dataset(out / "runs" / "phantom-dip-seed1.nc")
    assert '"lr": 0.02' in run.attrs["config"] and run.attrs["seed"] == 1
    # seeds differ, so the spread over them is a real number
    assert float(study["mean_psnr"].sel({"method": "mfvi"}).std("seed").min()) > 0
    table = (out / "table.md").read_text()
    assert table.splitlines()[0].startswith("| method | image | PSNR last | PSNR best")
    assert "| mfvi | phantom |" in table and " ± " in table and table.strip() in printed
    assert "mean ± 95 % t-interval half-width over 2 seeds" in table
    # the held-out values' proper scores, beside the PSNR: mfvi holds values out, dip none
    assert "| PSNR mean | LPD | CRPS |" in table.splitlines()[0]
    assert np.isfinite(study["heldout_lpd"].sel({"method": "mfvi"})).all()
    assert (study["heldout_crps"].sel({"method": "mfvi"}) > 0).all()
    assert np.isnan(study["heldout_lpd"].sel({"method": "dip"})).all()
    assert study["heldout_lpd"].attrs["units"] == "nat"
    assert "paired differences against dip" in table and "| mfvi - dip | phantom | " in table
    assert "| phantom | " in table.split("ranking of the methods")[1]
    assert (out / "psnr_curves.png").stat().st_size > 0
    assert (out / "uncertainty_phantom.png").stat().st_size > 0
    assert (out / "calibration.png").stat().st_size > 0  # error against std per method
    assert check_result_set(out) == ["calibration.png", "comparison.nc", "psnr_curves.png",
                                     "table.md", "uncertainty_phantom.png"]  # one set

    # the table again, from the saved results, whole study or single runs
    assert main(["report", str(out)]) == 0
    assert capsys.readouterr().out.strip() == table.strip()
    single = summary_table(load_results([out / "runs" / "phantom-mfvi-seed0.nc"]))
    assert "| mfvi | phantom |" in single and "dip" not in single

    # an interrupted or repeated study reuses its runs; changed settings are refused
    before = (out / "runs" / "phantom-dip-seed0.nc").stat().st_mtime_ns
    assert main(["compare", str(study_file), "--out", str(out), "--quiet"]) == 0
    assert (out / "runs" / "phantom-dip-seed0.nc").stat().st_mtime_ns == before
    study_file.write_text(STUDY.replace("steps = 4", "steps = 5"))
    assert main(["compare", str(study_file), "--out", str(out), "--quiet"]) == 2
    assert "other settings" in capsys.readouterr().err


def test_runs_are_methods_then_variants_over_images_and_seeds(study_file):
    comparison = Comparison.from_toml(study_file)
    assert [run[:3] for run in comparison.runs()][:2] == [("dip", "sample:phantom", 0),
                                                         ("dip", "sample:phantom", 1)]
    assert [run.name for run in comparison.grid_runs()] == [
        "phantom-dip-seed0", "phantom-dip-seed1", "phantom-mfvi-seed0", "phantom-mfvi-seed1"]


@pytest.mark.parametrize(("text", "message"), [
    ('methods = ["dip"]\nimages = []\n', "no images"),
    ('methods = ["gibbs"]\nimages = ["sample:ct"]\n', "unknown method 'gibbs'"),
    ('methods = ["dip"]\nimages = ["sample:ct"]\nstep = 3\n', "unknown key 'step'"),
    ('methods = ["dip"]\nimages = ["sample:ct"]\n[settings]\nstepz = 3\n', "did you mean 'steps'"),
    ('methods = ["dip"\n', "not valid TOML"),
    ('methods = ["dip"]\nimages = ["a/x.png", "b/x.png"]\n', "share a file name"),
])
def test_bad_study_files_fail_clearly(tmp_path, capsys, text, message):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    assert main(["compare", str(path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_set_overrides_every_run_but_not_the_axes(study_file):
    from pyrodip.errors import InvalidInputError

    study = Comparison.from_toml(study_file).with_settings(steps=7, lr=0.5)
    assert {(config.steps, config.lr) for *_, config in study.runs()} == {(7, 0.5)}
    with pytest.raises(InvalidInputError, match="image is an axis of the study"):
        study.with_settings(image="sample:ct")


@pytest.mark.parametrize("option, words", [
    ("stepz=3", "unknown key 'stepz' in settings (did you mean 'steps'?)"),
    ("steps", "--set takes KEY=VALUE"),
    ("seed=3", "seed is an axis of the study"),
])
def test_bad_set_options_are_refused_before_anything_is_written(study_file, tmp_path, capsys,
                                                                 option, words):
    out = tmp_path / "out"
    assert main(["compare", str(study_file), "--out", str(out), "--set", option]) == 2
    err = capsys.readouterr().err
    assert words in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_batched_study_groups_runs_by_seed_and_matches_single_fits(study_file, tmp_path, capsys):
    from pyrodip.studies.grid import batches

    comparison = Comparison(methods=["dip", "mfvi", "sgld"], images=["sample:phantom"],
                            seeds=[0, 1, 2], settings={"size": 32, "steps": 3, "samples": 2})
    groups = [[run.name.removeprefix("phantom-") for run in group]
              for group in batches(comparison.grid_runs(), 2)]
    assert groups == [["dip-seed0", "dip-seed1"], ["dip-seed2"], ["mfvi-seed0", "mfvi-seed1"],
                      ["mfvi-seed2"], ["sgld-seed0"], ["sgld-seed1"], ["sgld-seed2"]]  # SGLD: alone

    one, two = tmp_path / "one", tmp_path / "two"
    assert main(["compare", str(study_file), "--out", str(one), "--quiet"]) == 0
    assert main(["compare", str(study_file), "--out", str(two), "--quiet", "--batch", "2"]) == 0
    first, second = read_dataset(one / "comparison.nc"), read_dataset(two / "comparison.nc")
    # the same fits up to float rounding, which Adam's first steps amplify (a gradient that
    # is rounding noise gets a full step): the first losses agree, the rest are close
    np.testing.assert_allclose(first["loss"][..., 0], second["loss"][..., 0], rtol=1e-5)
    np.testing.assert_allclose(first["psnr"], second["psnr"], atol=1.0)
    assert first.sizes == second.sizes
    capsys.readouterr()
    assert main(["compare", str(study_file), "--out", str(tmp_path / "bad"), "--batch", "0"]) == 2
    assert "batch must be a positive integer" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()


def test_auto_batch_is_what_the_memory_estimate_admits_on_a_gpu(monkeypatch):
    from pyrodip.run import resources
    from pyrodip.studies.grid import check_batch

    comparison = Comparison(methods=["mfvi", "sgld"], images=["sample:ct"], seeds=[0, 1, 2, 3],
                            settings={"size": 64})
    assert check_batch(comparison.grid_runs(), "auto") == 1  # a CPU: batches pay little there
    gpu = comparison.with_settings(device="cuda")
    per_fit = resources.estimate_memory(next(gpu.runs())[3], (1, 64, 64)).total
    for available, batch in ((1.5 * per_fit, 1), (2.5 * per_fit, 2), (100 * per_fit, 4)):
        monkeypatch.setattr(resources, "available_memory", lambda device, a=available: int(a))
        assert check_batch(gpu.grid_runs(), "auto") == batch
    assert check_batch(gpu.grid_runs(), 3) == 3
    monkeypatch.setattr(resources, "available_memory", lambda device: int(1.5 * per_fit))
    with pytest.raises(InvalidInputError, match="a batch of 3 fits .* use `batch=1`"):
        check_batch(comparison.grid_runs(), 3)  # a given batch is checked on a CPU too


VARIANTS = """
methods = ["dip"]
images = ["sample:phantom"]
seeds = [0]

[settings]
size = 32
steps = 3
samples = 2

[method.mfvi]
init_scale = 0.05

[variant.cold]
method = "mfvi"
temperature = 0.01

[variant.fast]
lr = 0.05
"""


def test_variants_are_rows_of_their_own_settings(tmp_path, capsys):
    study = tmp_path / "variants.toml"
    study.write_text(VARIANTS)
    comparison = Comparison.from_toml(study)
    configs = {row: config for row, _, _, config in comparison.runs()}
    assert list(configs) == ["dip", "cold", "fast"]
    cold = configs["cold"]
    assert (cold.method, cold.temperature, cold.init_scale) == ("mfvi", 0.01, 0.05)
    assert (configs["fast"].method, configs["fast"].lr) == ("mfvi", 0.05)  # the default method
    assert comparison.with_settings(steps=5).variants["cold"]["steps"] == 5

    out = tmp_path / "out"
    assert main(["compare", str(study), "--out", str(out), "--quiet"]) == 0
    result = read_dataset(out / "comparison.nc")
    assert list(result["method"].values) == ["dip", "cold", "fast"]
    assert result["run_method"].values.ravel().tolist() == ["dip", "mfvi", "mfvi"]
    assert read_dataset(out / "runs" / "phantom-cold-seed0.nc").attrs["method"] == "mfvi"
    table = (out / "table.md").read_text()
    assert "| cold | phantom |" in table and "| fast | phantom |" in table
    rows = {line.split(" | ")[0]: line for line in table.splitlines()}
    elbo = table.splitlines()[0].split(" | ").index("ELBO")
    assert rows["| dip"].split(" | ")[elbo] == "-" != rows["| cold"].split(" | ")[elbo]


@pytest.mark.parametrize(("variant", "message"), [
    ("[variant.dip]\nlr = 0.1\n", "variant name 'dip' is a method of the study"),
    ("[variant.cold]\nmethod = \"gibbs\"\n", "unknown method 'gibbs'"),
    ("[variant.cold]\nseed = 3\n", "seed is an axis of the study, not a setting of variant"),
    ("[variant.cold]\nstepz = 3\n", "did you mean 'steps'"),
    ("[variant]\ncold = 3\n", "variant in a study file holds tables"),
])
def test_bad_variants_are_refused(tmp_path, variant, message):
    path = tmp_path / "bad.toml"
    path.write_text(f'methods = ["dip"]\nimages = ["sample:ct"]\n{variant}')
    with pytest.raises(InvalidInputError, match=message):
        Comparison.from_toml(path)


def test_write_comparison_replaces_the_whole_set(tmp_path):
    """A study written again without figures drops the figures of the set before it."""
    study = read_dataset(_tiny_comparison(tmp_path))
    assert write_comparison(study, tmp_path / "again") == [
        "calibration.png", "comparison.nc", "psnr_curves.png", "table.md",
        "uncertainty_phantom.png"]
    assert write_comparison(study, tmp_path / "again", figures=False) == [
        "comparison.nc", "table.md"]
    assert sorted(p.name for p in (tmp_path / "again").iterdir()) == [
        "comparison.nc", "manifest.json", "table.md"]
    assert (tmp_path / "again" / "table.md").read_text() == summary_table(study) + "\n"


def _tiny_comparison(tmp_path):
    from pyrodip.studies.compare import run_comparison

    comparison = Comparison(methods=["mfvi"], images=["sample:phantom"], seeds=[0],
                            settings={"size": 32, "steps": 3, "samples": 2})
    run_comparison(comparison, tmp_path / "study", progress=False, figures=False)
    return tmp_path / "study" / "comparison.nc"


def test_a_variant_row_can_be_an_ensemble(tmp_path):
    study = tmp_path / "ensemble.toml"
    study.write_text('methods = ["mfvi"]\nimages = ["sample:phantom"]\nseeds = [0]\n'
                     "[settings]\nsize = 32\nsteps = 4\nsamples = 2\n"
                     "[variant.four]\nensemble = 4\n")
    out = tmp_path / "out"
    assert main(["compare", str(study), "--out", str(out), "--quiet"]) == 0
    result = read_dataset(out / "comparison.nc")
    assert result["ensemble"].sel({"method": "four"}).item() == 4
    assert result["ensemble"].sel({"method": "mfvi"}).item() == 1
    run = read_dataset(out / "runs" / "phantom-four-seed0.nc")
    assert run.attrs["ensemble"] == 4 and run.sizes["member"] == 4
    # member 0 is the single fit of the row beside it
    single = read_dataset(out / "runs" / "phantom-mfvi-seed0.nc")
    assert run["ensemble_member_psnr"].values[0] == pytest.approx(single.attrs["mean_psnr"])
    assert np.isnan(result["mean_std_between"].sel({"method": "mfvi"})).all()
