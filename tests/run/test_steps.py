"""The default steps (pyrodip.run.steps): more for inpainting and speckle, unless told, through
every way a run config is made."""

import json

from pyrodip.run.config import RunConfig
from pyrodip.run.steps import DEFAULT_STEPS, SLOW_FIT_STEPS, default_steps, steps_help


def test_the_slowest_of_task_and_noise_sets_the_steps():
    assert default_steps("denoise", "gaussian") == DEFAULT_STEPS
    assert default_steps("inpaint", "speckle") == max(SLOW_FIT_STEPS.values())
    assert steps_help().startswith(f"{DEFAULT_STEPS}; inpaint, speckle")


def test_inpainting_and_speckle_take_more_steps_unless_told(tmp_path):
    assert RunConfig().steps == RunConfig(task="superres").steps == DEFAULT_STEPS
    assert RunConfig(task="inpaint").steps == SLOW_FIT_STEPS["inpaint"]
    assert RunConfig(noise="speckle").steps == SLOW_FIT_STEPS["speckle"]
    assert RunConfig(task="inpaint", steps=7).steps == 7
    (tmp_path / "run.toml").write_text('noise = "speckle"\n')
    assert RunConfig.from_toml(tmp_path / "run.toml").steps == SLOW_FIT_STEPS["speckle"]
    # a config at its default follows a new task; one given other steps keeps them
    assert RunConfig(task="inpaint").replace(task="denoise").steps == DEFAULT_STEPS
    assert RunConfig(steps=7).replace(noise="speckle").steps == 7
    assert json.loads(RunConfig(task="inpaint").to_json())["steps"] == SLOW_FIT_STEPS["inpaint"]
