"""Tasks as objects: each knows its operator, noise, mask, --observed handling, baseline and
memory; the physics layer knows nothing of the run configuration."""

import ast
from pathlib import Path

import pytest
import torch

from pyrodip import RunConfig, prepare_observation
from pyrodip.errors import InvalidInputError
from pyrodip.physics.observation import Observation, hold_out
from pyrodip.physics.operators import Downsample, Identity, Mask
from pyrodip.physics.radon import Radon
from pyrodip.physics.tasks import (
    CT_FLOATS_PER_ANGLE,
    TASKS,
    Task,
    classical_baselines,
    task_of,
)
from pyrodip.run.resources import FLOAT_BYTES, estimate_memory

PACKAGE = Path(__file__).parents[2] / "pyrodip"
SMALL = {"image": "sample:phantom", "size": 64}


def test_every_task_is_a_registered_task_object():
    assert list(TASKS) == ["denoise", "superres", "inpaint", "ct"]
    for name, task in TASKS.items():
        assert isinstance(task, Task) and task.name == name


@pytest.mark.parametrize("name, operator, baselines", [
    ("denoise", Identity, ["bm3d", "tv", "wavelet", "nlm"]),
    ("superres", Downsample, ["bicubic"]),
    ("inpaint", Mask, ["biharmonic"]),
    ("ct", Radon, ["fbp", "sart"]),
])
def test_each_task_builds_its_operator_and_has_its_baselines(name, operator, baselines):
    observation = prepare_observation(RunConfig(task=name, **SMALL))
    assert type(observation.operator) is operator
    assert task_of(observation) is TASKS[name]
    images = classical_baselines(observation)
    assert list(images) == baselines
    for image in images.values():
        assert image.shape == observation.truth.shape and image.dtype == torch.float32
        assert 0 <= float(image.min()) and float(image.max()) <= 1
    held_out, _ = hold_out(observation, 0.1)  # the baselines of a Subset are the operator's
    assert list(classical_baselines(held_out)) == baselines


def test_an_observation_with_held_out_values_keeps_its_task(noisy64):
    fit_obs, _ = hold_out(noisy64, 0.1)
    assert task_of(fit_obs) is TASKS["denoise"]
    superres = Observation.simulate(noisy64.truth, 0.01, operator=Downsample(2))
    assert task_of(hold_out(superres, 0.1)[0]) is TASKS["superres"]


def test_ct_alone_adds_operator_memory():
    config = RunConfig(task="ct", angles=30)
    assert TASKS["ct"].operator_floats(config, 100) == CT_FLOATS_PER_ANGLE * 30 * 100
    estimate = estimate_memory(config, (1, 64, 64))
    assert estimate.operator == FLOAT_BYTES * CT_FLOATS_PER_ANGLE * 30 * 64 * 64
    for name in ("denoise", "superres", "inpaint"):
        assert estimate_memory(RunConfig(task=name), (1, 64, 64)).operator == 0


def test_ct_scales_gaussian_noise_to_the_largest_projection():
    observation = prepare_observation(RunConfig(task="ct", noise_std=0.1, **SMALL))
    assert observation.noise.level == pytest.approx(0.1 * observation.observation_range)


def test_a_task_without_observed_support_says_so():
    class Plain(Task):
        name = "plain"

    with pytest.raises(InvalidInputError, match="`observed` is not supported for the plain task"):
        Plain().observe(RunConfig(), torch.rand(1, 32, 32), 32, None, "image")


def test_a_new_task_needs_only_its_operator():
    class Negate(Identity):
        def forward(self, x):
            return -x

    class NegateTask(Task):
        name = "test_negate"

        def operator(self, settings, shape, mask=None):
            return Negate()

    TASKS.register("test_negate", NegateTask())
    try:
        observation = prepare_observation(RunConfig(task="test_negate", **SMALL))
        assert float(observation.observation.mean()) < 0  # -x plus noise
        assert task_of(Observation.simulate(torch.rand(1, 8, 8))) is TASKS["denoise"]
    finally:
        TASKS.unregister("test_negate")


@pytest.mark.parametrize("stage", ["io", "physics", "bayes", "evaluate"])
def test_the_lower_stages_do_not_import_the_studies(stage):
    """The run configuration lives in pyrodip.studies: nothing below it imports it."""
    for path in (PACKAGE / stage).glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                assert "studies" not in (node.module or ""), f"{path.name} imports {node.module}"
