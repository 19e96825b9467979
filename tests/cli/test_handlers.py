"""``pyrodip run`` end to end (pyrodip.cli.handlers): what it writes and prints, and its
refusals of bad options."""

from pathlib import Path

import pytest
import torch
from conftest import exit_code

from pyrodip.cli import main
from pyrodip.run.results import read_dataset

FAST = ["--steps", "3", "--samples", "2", "--quiet"]


def test_run_end_to_end_writes_the_schema(tiny_png, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["run", "--image", str(tiny_png), "--out", str(out), *FAST]) == 0
    dataset = read_dataset(out / "result.nc")
    assert {"truth", "observation", "mean", "std_epistemic", "std_total", "loss", "psnr",
            "ssim"} <= set(dataset.variables)
    assert dataset.sizes["step"] == 3 and dataset["mean"].shape == (1, 64, 64)
    assert (out / "panel.png").stat().st_size > 0
    printed = capsys.readouterr().out
    assert "observation     PSNR" in printed and "reconstruction  PSNR" in printed


def test_network_and_temperature_options_reach_the_result(tiny_png, tmp_path):
    out = tmp_path / "out"
    assert main(["run", "--image", str(tiny_png), "--out", str(out), "--normalization",
                 "scaled", "--temperature", "0.5", *FAST]) == 0
    attrs = read_dataset(out / "result.nc").attrs
    assert attrs["temperature"] == 0.5 and '"normalization": "scaled"' in attrs["config"]


@pytest.mark.parametrize("task", ["denoise", "superres", "inpaint", "ct"])
def test_every_task_is_recalibrated_on_held_out_values(task, tiny_png, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["run", "--image", str(tiny_png), "--task", task, "--out", str(out),
                 *FAST]) == 0
    dataset = read_dataset(out / "result.nc")
    attrs = dataset.attrs
    assert attrs["calibration"] == "scale" and attrs["calibration_heldout"] > 0
    assert {"std_total", "std_total_raw"} <= set(dataset.variables)
    assert {"coverage_68_raw", "coverage_95_raw", "coverage_50", "coverage_90"} <= set(attrs)
    printed = capsys.readouterr().out
    assert "held-out values (scale): targets 68 % and 95 % coverage" in printed
    assert "coverage vs truth  68 %" in printed


def test_calibration_options(tiny_png, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["run", "--image", str(tiny_png), "--out", str(out), "--calibration",
                 "conformal", "--calibration-coverage", "0.8", "--heldout-fraction", "0.2",
                 *FAST]) == 0
    attrs = read_dataset(out / "result.nc").attrs
    assert attrs["calibration"] == "conformal" and attrs["calibration_coverage"] == 0.8
    assert attrs["calibration_heldout"] == round(0.2 * 64 * 64)
    assert "at least 80% coverage of observed values" in capsys.readouterr().out
    assert main(["run", "--image", str(tiny_png), "--out", str(out), "--overwrite",
                 "--calibration", "none", *FAST]) == 0
    dataset = read_dataset(out / "result.nc")
    assert dataset.attrs["calibration"] == "none" and "std_total_raw" not in dataset
    assert "calibration     none" in capsys.readouterr().out


@pytest.mark.parametrize("args, words", [
    (["--calibration", "platt"], "choose one of none, scale, conformal"),
    (["--heldout-fraction", "1.5"], "heldout_fraction must be a number in (0, 1)"),
    (["--image", "missing.png"], "not found"),
    (["--method", "magic"], "choose one of mfvi, dip"),
    (["--steps", "0"], "steps must be a positive integer"),
    (["--noise-std", "-1"], "noise_std must be a positive number"),
    (["--lr", "nan"], "lr must be a positive number"),
    (["--prior", "cauchy"], "choose one of normal"),
    (["--net", "huge"], "choose one of small, paper"),
    (["--normalization", "layer"], "choose one of batch, none, scaled"),
    (["--kl-weight", "0.3"], "unrecognized arguments"),
    (["--temperature", "-1"], "temperature must be a number >= 0"),
    (["--steps", "many"], "invalid int value"),
    (["--stepz", "3"], "unrecognized arguments"),
    (["--device", "tpu"], "unknown device"),
    (["--ensemble", "0"], "ensemble must be a positive integer, got 0"),
    (["--ensemble", "-2"], "ensemble must be a positive integer, got -2"),
    (["--ensemble", "1.5"], "invalid int value: '1.5'"),
])
def test_bad_input_is_one_line_and_exit_2(args, words, tmp_path, capsys):
    assert exit_code(["run", *args, "--out", str(tmp_path / "o"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert words in err and len(err.splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "o" / "result.nc").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_without_cuda_is_refused(capsys, tmp_path):
    assert exit_code(["run", "--device", "cuda", "--out", str(tmp_path / "o")]) == 2
    assert "CUDA is not available: use --device cpu" in capsys.readouterr().err


def test_a_result_worse_than_its_observation_is_one_warning_line(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["run", "--size", "32", "--steps", "5", "--samples", "2", "--quiet", "--out",
                 str(out)]) == 0
    warnings = [line for line in capsys.readouterr().err.splitlines() if "warning" in line]
    assert len(warnings) == 1 and warnings[0].startswith("pyrodip: warning: the reconstruction")
    assert "too few steps for mfvi (5): try more, e.g. --steps 1000" in warnings[0]


def test_an_explicit_prior_scale_wins_over_the_config_files_prior(tmp_path):
    out = tmp_path / "out"
    demo = Path(__file__).resolve().parents[2] / "experiments" / "ct_denoise.toml"
    assert main(["run", "--config", str(demo), "--prior-scale", "0.2",
                 "--size", "32", "--out", str(out), *FAST]) == 0
    assert read_dataset(out / "result.nc").attrs["prior"] == "normal:0.2"


def test_an_ensemble_run_writes_its_members_and_says_so(tiny_png, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["run", "--image", str(tiny_png), "--size", "32", "--ensemble", "2",
                 "--out", str(out), *FAST]) == 0
    dataset = read_dataset(out / "result.nc")
    assert dataset.attrs["ensemble"] == 2 and '"ensemble": 2' in dataset.attrs["config"]
    assert dataset["ensemble_member_psnr"].dims == ("member",)
    assert dataset["ensemble_member_psnr"].attrs["units"] == "dB"
    assert dataset["std_between"].attrs["long_name"].startswith("standard deviation of the ens")
    assert dataset.attrs["mean_std_between"] > 0
    printed = capsys.readouterr().out
    assert "3 steps, ensemble of 2 fits" in printed and "ensemble        members PSNR" in printed


def test_a_bad_ensemble_size_writes_nothing(tmp_path, capsys):
    out = tmp_path / "o"
    assert exit_code(["run", "--ensemble", "0", "--out", str(out), "--quiet"]) == 2
    assert not out.exists()
