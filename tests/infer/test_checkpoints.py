"""Checkpoints, resume, divergence, and files that are whole or absent."""

import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import torch
import xarray as xr

from pyrodip import Observation, RunConfig, fit
from pyrodip.infer.checkpoints import Checkpointing, Interrupted
from pyrodip.infer.fitting import Fitting
from pyrodip.run.results import read_dataset, write_dataset


@pytest.fixture
def tiny() -> Observation:
    truth = torch.linspace(0, 1, 32 * 32).reshape(1, 32, 32)
    return Observation.simulate(truth, noise=0.1, seed=0, name="ramp")


class StopAfter(threading.Event):
    """A stop request that arrives at step ``step`` (the fit checks it after every step)."""

    def __init__(self, step: int) -> None:
        super().__init__()
        self.calls_left = step

    def is_set(self) -> bool:
        self.calls_left -= 1
        return self.calls_left <= 0


@pytest.mark.parametrize("method, settings, stop_at", [
    ("mfvi", {}, 17), ("sgld", {}, 17),
    ("mfvi", {"lr_decay": 0.5, "average": 0.5, "readout": "renders"}, 27),  # in the tail
])
def test_resumed_fit_equals_uninterrupted_one(tiny, tmp_path, method, settings, stop_at):
    config = RunConfig(method=method, steps=40, samples=3, burn_in=10, sample_every=5,
                       **settings)
    whole = fit(tiny, config, progress=False)
    checkpoint = Checkpointing(tmp_path / "state.pt", every_steps=10)
    with pytest.raises(Interrupted, match=f"interrupted at step {stop_at}"):
        fit(tiny, config, progress=False, checkpoint=checkpoint, stop=StopAfter(stop_at))
    resumed = fit(tiny, config, progress=False, checkpoint=checkpoint, resume=True)
    for name, curve in whole.history.curves.items():
        np.testing.assert_array_equal(resumed.history.curves[name], curve, err_msg=name)
    assert torch.equal(resumed.prediction.mean, whole.prediction.mean)
    assert torch.equal(resumed.prediction.std_total, whole.prediction.std_total)


@pytest.mark.parametrize("stop_at", [17, 40 + 17])  # in the held-out fit, in the refit
def test_a_refit_resumes_to_the_uninterrupted_result(tiny, tmp_path, stop_at):
    config = RunConfig(steps=40, samples=3, calibration_refit=True)
    whole = fit(tiny, config, progress=False)
    checkpoint = Checkpointing(tmp_path / "state.pt", every_steps=10)
    with pytest.raises(Interrupted):
        fit(tiny, config, progress=False, checkpoint=checkpoint, stop=StopAfter(stop_at))
    assert checkpoint.path.exists() == (stop_at > 40)  # the held-out fit keeps no checkpoint
    resumed = fit(tiny, config, progress=False, checkpoint=checkpoint, resume=True)
    assert torch.equal(resumed.prediction.std_total, whole.prediction.std_total)
    assert resumed.calibration == whole.calibration


def test_resume_refuses_other_settings_and_missing_files(tiny, tmp_path):
    checkpoint = Checkpointing(tmp_path / "state.pt")
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        fit(tiny, RunConfig(steps=5), checkpoint=checkpoint, resume=True, progress=False)
    with pytest.raises(Interrupted):
        fit(tiny, RunConfig(steps=5), checkpoint=checkpoint, stop=StopAfter(2), progress=False)
    with pytest.raises(ValueError, match="other settings"):
        fit(tiny, RunConfig(steps=6), checkpoint=checkpoint, resume=True, progress=False)
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="cannot be read"):
        fit(tiny, RunConfig(steps=5), checkpoint=Checkpointing(tmp_path / "bad.pt"),
            resume=True, progress=False)


class RunsCode:
    """What a tampered checkpoint could hold: unpickling it calls a function."""

    def __reduce__(self):
        return (os.system, ("echo tampered > tampered.txt",))


def test_a_tampered_checkpoint_is_refused_and_runs_nothing(tiny, tmp_path, monkeypatch, capsys):
    from pyrodip.cli import main

    monkeypatch.chdir(tmp_path)
    checkpoint = Checkpointing(tmp_path / "state.pt")
    config = RunConfig(steps=5)
    with pytest.raises(Interrupted):
        fit(tiny, config, checkpoint=checkpoint, stop=StopAfter(2), progress=False)
    state = torch.load(checkpoint.path, weights_only=True)  # pyrodip's own: plain values only
    state["events"] = [RunsCode()]
    torch.save(state, checkpoint.path)
    with pytest.raises(ValueError, match="is refused: besides tensors and plain values it "
                                         "holds posix.system"):
        fit(tiny, config, checkpoint=checkpoint, resume=True, progress=False)
    out = tmp_path / "run"
    assert main(["run", "--steps", "5", "--samples", "2", "--out", str(out), "--quiet"]) == 0
    torch.save({"config": "{}", "evil": RunsCode()}, out / "checkpoint.pt")
    assert main(["run", "--resume", str(out), "--quiet"]) == 2
    assert "is refused" in capsys.readouterr().err
    assert not (tmp_path / "tampered.txt").exists()


# Pyro's validation (on in tests) raises at the first NaN; divergence handling is for the
# unvalidated runs users make.
def test_absurd_learning_rate_stops_cleanly_with_its_events(tiny):
    with pytest.warns(UserWarning, match="diverged 4 times"):
        result = fit(tiny, RunConfig(steps=60, lr=1e6), progress=False, validate=False)
    assert result.status == "diverged"
    assert [event["lr"] for event in result.events] == [5e5, 2.5e5, 1.25e5, 1.25e5]
    assert torch.isfinite(result.prediction.mean).all()


def test_one_injected_nan_is_rolled_back_and_the_fit_recovers(tiny, monkeypatch):
    original = Fitting._one_step

    def poisoned(self):
        original(self)
        if self.step == 30 and not self.events:  # once: a NaN weight after step 31
            with torch.no_grad():
                next(iter(self.guide.parameters())).fill_(float("nan"))

    monkeypatch.setattr(Fitting, "_one_step", poisoned)
    with pytest.warns(UserWarning, match="rolled back to step 25"):
        result = fit(tiny, RunConfig(steps=60, lr=0.01), progress=False, validate=False)
    assert result.status == "completed"
    assert result.events == [{"step": 50, "rolled_back_to": 25, "lr": 0.005}]
    assert np.isfinite(result.history.curves["loss"]).all()
    assert result.history.curves["loss"].shape == (60,)


def _pyrodip(*args: str) -> list[str]:
    return [sys.executable, "-m", "pyrodip.cli", *args]


def test_sigterm_saves_a_checkpoint_and_resume_matches_an_uninterrupted_run(tiny_png, tmp_path):
    """The acceptance test of preemption: SIGTERM mid-fit, resume, same result."""
    common = ["run", "--image", str(tiny_png), "--size", "32", "--steps", "200", "--samples", "3",
              "--quiet"]
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    subprocess.run(_pyrodip(*common, "--out", str(whole)), check=True, capture_output=True)

    process = subprocess.Popen(
        _pyrodip(*common, "--out", str(parts), "--checkpoint-every", "25"),
        stderr=subprocess.PIPE, text=True,
    )
    deadline = time.monotonic() + 120
    while not (parts / "checkpoint.pt").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 143, stderr
    assert "interrupted at step" in stderr and f"--resume {parts}" in stderr
    assert not (parts / "result.nc").exists()

    resumed = subprocess.run(_pyrodip("run", "--resume", str(parts), "--quiet"),
                             capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    a, b = read_dataset(whole / "result.nc"), read_dataset(parts / "result.nc")
    for name in ("loss", "psnr", "mean", "std_total", "smoothed"):
        np.testing.assert_array_equal(a[name].values, b[name].values, err_msg=name)
    assert not (parts / "checkpoint.pt").exists()


WRITER = """
import sys, numpy as np, xarray as xr
from pyrodip.run.results import write_dataset
data = xr.Dataset({"x": ("i", np.arange(2_000_000, dtype="float64"))})
while True:
    write_dataset(data, sys.argv[1])
    print("written", flush=True)
"""


def test_kill_9_during_writes_never_leaves_a_partial_file(tmp_path):
    """Kill the writer at random moments after its first write: the file is always whole."""
    target = tmp_path / "result.nc"
    rng = np.random.default_rng(0)
    for _ in range(5):
        process = subprocess.Popen([sys.executable, "-c", WRITER, str(target)],
                                   stdout=subprocess.PIPE, text=True)
        assert process.stdout.readline() == "written\n"
        time.sleep(rng.uniform(0, 0.5))
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
        assert read_dataset(target)["x"].size == 2_000_000
    leftovers = [p.name for p in tmp_path.iterdir() if p.name != "result.nc"]
    write_dataset(xr.Dataset({"y": ("i", [1.0])}), target)  # leftovers do not block writing
    assert read_dataset(target)["y"].size == 1 and len(leftovers) <= 5


@pytest.fixture
def small_disk(tmp_path):
    """A tmpfs of 4.5 MB (room for one checkpoint of a 32 x 32 fit, 3.1 MB, not two)."""
    folder = tmp_path / "disk"
    folder.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4608k", "tmpfs", str(folder)],
                             capture_output=True)
    if mounted.returncode:
        pytest.skip("mounting a tmpfs is not allowed here (needs root)")
    yield folder
    subprocess.run(["umount", str(folder)], check=True)


def test_a_full_disk_fails_in_one_line_and_keeps_the_last_checkpoint(tiny, small_disk, tmp_path,
                                                                     capsys):
    from pyrodip.cli import main
    from pyrodip.errors import OutputError

    config = RunConfig(steps=60, samples=2)
    checkpoint = Checkpointing(small_disk / "state.pt", every_steps=25)  # steps 25 and 50
    with pytest.raises(OutputError, match="state.pt: no space left on the device"):
        fit(tiny, config, checkpoint=checkpoint, progress=False)
    assert [p.name for p in small_disk.iterdir()] == ["state.pt"]  # no partial file
    usable = tmp_path / "state.pt"  # the step-25 checkpoint, resumed where there is room
    usable.write_bytes(checkpoint.path.read_bytes())
    resumed = fit(tiny, config, checkpoint=Checkpointing(usable), resume=True, progress=False)
    whole = fit(tiny, config, progress=False)
    np.testing.assert_array_equal(resumed.history.curves["loss"], whole.history.curves["loss"])

    checkpoint.path.unlink()
    (small_disk / "filler").write_bytes(b"\0" * (4608 * 1024 - 64 * 1024))
    out = small_disk / "out"
    assert main(["run", "--size", "64", "--steps", "3", "--samples", "2", "--out", str(out),
                 "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "result.nc: no space left on the device" in err
    assert list(out.iterdir()) == []  # nothing written half-way
