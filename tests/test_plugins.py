"""Plugins: a module that registers a prior, a noise model and a task is usable from
``pyrodip run --plugin``, from a study's ``plugins`` setting, on a fresh worker process and
through the ``pyrodip.plugins`` entry-point group; a plugin that cannot be imported is one
line and exit status 2."""

import importlib.metadata
import json
import os
import pickle
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from conftest import exit_code

import pyrodip.plugins
from pyrodip.bayes.priors import PRIORS
from pyrodip.errors import InvalidInputError
from pyrodip.physics.noise import NOISE_MODELS
from pyrodip.physics.observation import Observation
from pyrodip.physics.tasks import TASKS, task_of
from pyrodip.run.config import RunConfig
from pyrodip.run.results import read_dataset

ROOT = Path(__file__).parents[1]
PLUGIN = "pyrodip_test_plugin"
SOURCE = '''
"""A plugin: a prior, a noise model and a task (the image seen mirrored)."""
from typing import ClassVar

from pyrodip.bayes.priors import PRIORS, NormalPrior
from pyrodip.physics.noise import NOISE_MODELS, GaussianNoise
from pyrodip.physics.operators import LinearOperator
from pyrodip.physics.tasks import TASKS, Task


@PRIORS.register("test_wide")
class WidePrior(NormalPrior):
    pass


class QuietNoise(GaussianNoise):
    name: ClassVar[str] = "test_quiet"


NOISE_MODELS.register("test_quiet", QuietNoise)


class Mirror(LinearOperator):
    def forward(self, x):
        return x.flip(-1)


class MirrorTask(Task):
    name = "test_mirror"
    operator_type = Mirror

    def operator(self, settings, shape, mask=None):
        return Mirror()


TASKS.register("test_mirror", MirrorTask())
'''
FAST = ["--image", "sample:phantom", "--size", "32", "--steps", "3", "--samples", "2", "--quiet"]
PLUGGED = ["--task", "test_mirror", "--noise", "test_quiet", "--prior", "test_wide:0.1"]


@pytest.fixture
def plugin(tmp_path, monkeypatch):
    """The plugin module written to a folder on sys.path, and everything it registers gone
    (and the module forgotten) after the test."""
    folder = tmp_path / "plugins"
    folder.mkdir()
    (folder / f"{PLUGIN}.py").write_text(SOURCE)
    monkeypatch.syspath_prepend(str(folder))
    yield folder
    sys.modules.pop(PLUGIN, None)
    for registry, name in ((PRIORS, "test_wide"), (NOISE_MODELS, "test_quiet"),
                           (TASKS, "test_mirror")):
        registry.unregister(name)


def test_the_names_a_plugin_registers_are_refused_until_it_is_loaded(plugin):
    with pytest.raises(InvalidInputError, match="unknown task 'test_mirror': choose one of"):
        RunConfig(task="test_mirror")
    config = RunConfig(task="test_mirror", noise="test_quiet", prior="test_wide:0.1",
                       plugins=[PLUGIN])
    assert config.plugins == [PLUGIN] and "test_mirror" in TASKS
    assert json.loads(config.to_json())["plugins"] == [PLUGIN]
    assert "plugins" not in json.loads(RunConfig().to_json())  # old runs' JSON unchanged


def test_run_with_a_plugin_uses_its_prior_noise_and_task(plugin, tmp_path, capsys):
    out = tmp_path / "run"
    assert exit_code(["run", "--plugin", PLUGIN, *PLUGGED, *FAST, "--out", str(out)]) == 0
    result = read_dataset(out / "result.nc")
    config = json.loads(result.attrs["config"])
    assert (config["task"], config["noise"], config["prior"]) == (
        "test_mirror", "test_quiet", "test_wide")
    assert config["plugins"] == [PLUGIN]
    # the base task's baselines: the denoisers, with a std estimated for the plugin's noise
    assert result["classical"].values.tolist() == ["bm3d", "tv", "wavelet", "nlm"]


def test_the_help_lists_what_a_plugin_registers(plugin, capsys):
    assert exit_code(["run", "--plugin", PLUGIN, "--help"]) == 0
    assert "test_mirror" in " ".join(capsys.readouterr().out.split())


def test_an_unimportable_plugin_is_one_line_and_exit_2_with_nothing_written(
    tmp_path, capsys, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    for command in (["run", "--out", "out"], ["compare", "study.toml", "--out", "out"],
                    ["bo", "--out", "out"]):
        assert exit_code([*command, "--plugin", "no_such_plugin_module"]) == 2
        error = capsys.readouterr().err
        assert error.count("\n") == 1 and "plugin 'no_such_plugin_module' cannot be imported" in (
            error)
    assert list(tmp_path.iterdir()) == []


def test_a_plugin_that_raises_on_import_is_refused_too(plugin, capsys):
    (plugin / "broken_plugin.py").write_text("raise RuntimeError('half-installed')\n")
    assert exit_code(["run", "--plugin", "broken_plugin", "--steps", "3"]) == 2
    assert "RuntimeError: half-installed" in capsys.readouterr().err


def test_a_study_names_its_plugins_in_its_settings(plugin, tmp_path, capsys):
    study = tmp_path / "study.toml"
    study.write_text(textwrap.dedent(f"""
        methods = ["dip"]
        images = ["sample:phantom"]

        [settings]
        plugins = ["{PLUGIN}"]
        task = "test_mirror"
        noise = "test_quiet"
        size = 32
        steps = 3
        samples = 2
    """))
    assert exit_code(["compare", str(study), "--out", str(tmp_path / "out"), "--quiet"]) == 0
    run = read_dataset(next((tmp_path / "out" / "runs").glob("*.nc")))
    assert json.loads(run.attrs["config"])["plugins"] == [PLUGIN]
    assert run.attrs["task"] == "test_mirror"


def test_a_worker_imports_the_plugins_of_the_config_it_is_sent(plugin, tmp_path):
    """As on a Dask or process worker: a fresh interpreter unpickles the config (which does
    not import the plugin) and fits it."""
    config = RunConfig(image="sample:phantom", size=32, steps=3, samples=2, method="dip",
                       task="test_mirror", noise="test_quiet", plugins=[PLUGIN])
    (tmp_path / "config.pkl").write_bytes(pickle.dumps(config))
    code = (
        "import pickle, sys; from pyrodip.studies.grid import fit_run; "
        f"assert {PLUGIN!r} not in sys.modules; "
        f"fit_run(pickle.loads(open({str(tmp_path / 'config.pkl')!r}, 'rb').read()), "
        f"{str(tmp_path / 'run.nc')!r})"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
        env={"PYTHONPATH": f"{plugin}:{ROOT}", "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 0, done.stderr
    assert read_dataset(tmp_path / "run.nc").attrs["task"] == "test_mirror"


def test_entry_point_plugins_are_loaded_once(plugin, monkeypatch):
    calls = []
    point = importlib.metadata.EntryPoint(name="mirror", value=PLUGIN, group="pyrodip.plugins")

    def entry_points(group):
        calls.append(group)
        return [point]

    monkeypatch.setattr(importlib.metadata, "entry_points", entry_points)
    monkeypatch.setattr(pyrodip.plugins, "_entry_points_loaded", False)
    assert "test_mirror" not in TASKS
    RunConfig(task="test_mirror")  # the first config loads the entry points
    RunConfig(task="test_mirror")
    assert calls == ["pyrodip.plugins"]
    mirror = TASKS["test_mirror"].operator(None, (1, 16, 16))
    observation = Observation.simulate(torch.rand(1, 16, 16), operator=mirror)
    assert type(task_of(observation)).__name__ == "MirrorTask"


def test_a_broken_entry_point_is_one_error(monkeypatch):
    point = importlib.metadata.EntryPoint(name="bad", value="no_such_module_ep", group="g")
    monkeypatch.setattr(importlib.metadata, "entry_points", lambda group: [point])
    monkeypatch.setattr(pyrodip.plugins, "_entry_points_loaded", False)
    with pytest.raises(InvalidInputError, match="plugin 'bad' .*entry point group"):
        pyrodip.plugins.load_plugins()


# --- a plugin task with settings of its own: tests/deblur_plugin.py, as in docs/extend.md -----

DEBLUR = "deblur_plugin"
TINY = ["--image", "sample:phantom", "--size", "32", "--steps", "3", "--samples", "2", "--quiet"]


@pytest.fixture
def deblur(monkeypatch):
    """tests/deblur_plugin.py importable here and on worker processes, imported afresh, and
    its task gone after the test."""
    tests = str(Path(__file__).parent)
    monkeypatch.syspath_prepend(tests)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([tests, str(ROOT)]))
    sys.modules.pop(DEBLUR, None)
    TASKS.unregister("deblur")
    yield
    sys.modules.pop(DEBLUR, None)
    TASKS.unregister("deblur")


def test_the_docs_show_the_deblur_plugin_of_the_tests():
    page = (ROOT / "docs" / "extend.md").read_text()
    shown = page.split(f"<!-- file: {DEBLUR}.py -->\n```python\n", 1)[1].split("\n```", 1)[0]
    assert shown + "\n" == (ROOT / "tests" / f"{DEBLUR}.py").read_text()


def test_a_plugin_setting_reaches_the_task_from_python_toml_and_run(deblur, tmp_path):
    config = RunConfig(task="deblur", kernel_size=3, plugins=[DEBLUR])
    assert (config.kernel_size, config.blur_std) == (3, 1.0)
    assert TASKS["deblur"].operator(config, (1, 32, 32)).kernel.shape == (3, 3)
    with pytest.raises(InvalidInputError, match="^kernel_size must be an odd positive integer"):
        config.replace(kernel_size=4)
    (tmp_path / "run.toml").write_text(f'plugins = ["{DEBLUR}"]\ntask = "deblur"\n'
                                       "kernel_size = 7\n")
    assert RunConfig.from_toml(tmp_path / "run.toml").kernel_size == 7
    out = tmp_path / "run"
    argv = ["run", "--plugin", DEBLUR, "--task", "deblur", "--kernel-size", "3", *TINY]
    assert exit_code([*argv, "--out", str(out)]) == 0
    result = read_dataset(out / "result.nc")
    recorded = json.loads(result.attrs["config"])
    assert (recorded["kernel_size"], recorded["blur_std"]) == (3, 1.0)
    assert result["classical"].values.tolist() == ["richardson-lucy"]


def test_plugin_settings_stay_out_of_the_json_of_runs_that_do_not_use_them(deblur):
    plain = RunConfig().to_json()
    with_plugin = RunConfig(plugins=[DEBLUR])
    assert with_plugin.kernel_size == 5 and "kernel_size" not in with_plugin.to_json()
    assert with_plugin.replace(plugins=[]).to_json() == plain
    assert json.loads(with_plugin.replace(kernel_size=9).to_json())["kernel_size"] == 9


def test_a_plugin_setting_reaches_compare_from_the_study_and_set(deblur, tmp_path, capsys):
    study = tmp_path / "study.toml"
    study.write_text(textwrap.dedent(f"""
        methods = ["dip"]
        images = ["sample:phantom"]

        [settings]
        plugins = ["{DEBLUR}"]
        task = "deblur"
        kernel_size = 3
        size = 32
        steps = 3
        samples = 2
    """))
    out = tmp_path / "out"
    argv = ["compare", str(study), "--out", str(out), "--quiet", "--set", "kernel_size=7"]
    assert exit_code(argv) == 0
    run = read_dataset(next((out / "runs").glob("*.nc")))
    assert json.loads(run.attrs["config"])["kernel_size"] == 7
    assert run.attrs["task"] == "deblur"


def test_a_plugin_setting_reaches_bo_and_a_numeric_one_is_tuned(deblur, tmp_path, capsys):
    """Two trials on one worker process, which imports the plugin itself."""
    out = tmp_path / "bo"
    argv = ["bo", "--plugin", DEBLUR, "--task", "deblur", "--kernel-size", "3", *TINY,
            "--param", "blur_std=0.5:2", "--init-points", "2", "--rounds", "0",
            "--workers", "1", "--out", str(out)]
    assert exit_code(argv) == 0
    study = json.loads((out / "study.json").read_text())
    assert study["config"]["kernel_size"] == 3 and study["params"] == ["blur_std=0.5:2.0"]
    assert read_dataset(out / "bo.nc")["status"].values.tolist() == ["ok", "ok"]
    assert "best observed   blur_std=" in capsys.readouterr().out
