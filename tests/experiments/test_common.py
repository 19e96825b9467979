"""What the studies share (experiments/common.py): the clipped observation, fits on the grid
runner chosen by name, and the command line."""

import pytest
import torch

from experiments.common import clipped_observation, finished, run_fits, study_main
from pyrodip.run.config import RunConfig
from pyrodip.studies.grid import GridRun, Hooks


def test_gaussian_noise_is_clipped_to_the_image_range_and_a_sinogram_is_not():
    noisy = clipped_observation(RunConfig(image="sample:phantom", size=32, noise_std=0.5))
    assert 0 <= float(noisy.observation.min()) and float(noisy.observation.max()) <= 1
    sinogram = clipped_observation(RunConfig(image="sample:phantom", size=32, task="ct"))
    assert float(sinogram.observation.max()) > 1


def test_match_chooses_the_fits_by_name(tmp_path):
    runs = [GridRun(f"{name}_seed0", RunConfig(image="sample:phantom", size=32, steps=2,
                                               samples=2, calibration="none"))
            for name in ("dip", "mfvi")]
    outcome = run_fits(runs, tmp_path, Hooks(baselines=False), workers=1, match=["mfvi"])
    assert list(outcome.datasets) == ["mfvi_seed0"] and torch.get_num_threads() == 1
    assert list(finished(tmp_path, ["dip_seed0", "mfvi_seed0"])) == ["mfvi_seed0"]


def test_run_needs_a_stage(capsys):
    with pytest.raises(SystemExit) as stop:
        study_main(["run", "--out", "x"], "experiments.x", "A study.", ("a", "b"), "smoke",
                   run_stage=None, report=None)
    assert stop.value.code == 2 and "run needs --stage a, b" in capsys.readouterr().err
