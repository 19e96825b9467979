"""Faults a study survives: a call that raises or whose worker dies is run once more (on
another worker), then recorded as failed; the study goes on, says what failed, and runs the
failed ones again on request; nothing that finished is lost or run again."""

import json
import os
import signal
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from pyrodip.infer.checkpoints import Interrupted
from pyrodip.run.results import read_dataset
from pyrodip.studies.bo import Param, Study, optimize, read_trials, resume
from pyrodip.studies.compare import Comparison, run_comparison
from pyrodip.studies.execution import Failed, Retrying, SyncExecutor, dask_executor

TESTS = Path(__file__).parents[1]
STUDY = """
methods = ["dip", "mfvi"]
images = ["sample:phantom"]
seeds = [0, 1]

[settings]
size = 32
steps = 4
samples = 2
plugins = ["fault_injection"]

[method.mfvi]
prior = "{prior}"
"""


def test_a_call_that_fails_twice_is_recorded_with_its_last_error():
    errors = iter([MemoryError("out of memory"), RuntimeError("again")])
    retried = []

    def failing():
        raise next(errors)

    with Retrying(SyncExecutor(), on_retry=retried.append) as executor:
        task = executor.submit(failing)
        assert executor.next_completed() == [task]
    assert task.outcome == Failed("RuntimeError: again", attempts=2)
    assert task.errors == ["MemoryError: out of memory", "RuntimeError: again"]
    assert retried == [task] and executor.next_completed() == []


def test_an_interrupted_fit_is_not_a_failure():
    def interrupted():
        raise Interrupted(3, None)

    with Retrying(SyncExecutor()) as executor:
        executor.submit(interrupted)
        with pytest.raises(Interrupted):
            executor.next_completed()


def test_a_local_cluster_retries_on_another_worker_after_a_raise_or_a_death(tmp_path):
    """Two worker processes: a call that raises once runs again on the other worker; one that
    kills its worker (SIGKILL) runs again; one that kills every worker it meets fails."""
    marker = tmp_path / "killed"

    def raises_once(path):
        from distributed import get_worker

        here = get_worker().address
        if not path.exists():
            path.write_text(here)
            raise RuntimeError("CUDA out of memory")
        return path.read_text(), here

    def dies_once(path):
        if not path.exists():
            path.write_text("")
            os.kill(os.getpid(), signal.SIGKILL)
        return os.getpid()

    def always_dies():
        os.kill(os.getpid(), signal.SIGKILL)

    with dask_executor(workers=2) as dask, Retrying(dask) as executor:
        raised = executor.submit(raises_once, tmp_path / "raised")
        assert executor.next_completed() == [raised]
        first, second = raised.outcome
        assert first != second and raised.errors == ["RuntimeError: CUDA out of memory"]
        died = executor.submit(dies_once, marker)
        assert executor.next_completed() == [died] and isinstance(died.outcome, int)
        assert "the worker running it died" in died.errors[0]
        dead = executor.submit(always_dies)
        assert executor.next_completed() == [dead]
    assert isinstance(dead.outcome, Failed) and dead.outcome.attempts == 2
    assert "the worker running it died" in dead.outcome.error


@pytest.fixture
def faults(tmp_path, monkeypatch):
    """The fault plugin importable here and on worker processes, and its marker folder."""
    folder = tmp_path / "faults"
    folder.mkdir()
    monkeypatch.syspath_prepend(str(TESTS))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(TESTS), *sys.path]))
    monkeypatch.setenv("PYRODIP_TEST_FAULTS", str(folder))
    return folder


def compare(tmp_path, prior, *options):
    from conftest import exit_code

    study = tmp_path / f"{prior}.toml"
    study.write_text(STUDY.format(prior=prior))
    return exit_code(["compare", str(study), "--out", str(tmp_path / prior), "--quiet",
                      "--workers", "2", *options])


def test_a_study_survives_a_killed_worker_with_the_result_unchanged(faults, tmp_path, capsys):
    assert compare(tmp_path, "test_killonce") == 0
    said = capsys.readouterr().err
    assert "failed (the worker running it died" in said and "running it again" in said
    study = read_dataset(tmp_path / "test_killonce" / "comparison.nc")
    assert set(study["status"].values.ravel()) == {"ok"}
    killed = said.split("failed (the worker")[0].rsplit("pyrodip: ", 1)[1]  # phantom-mfvi-seed1
    seed = int(killed.rsplit("seed", 1)[1])
    # The killed run, fitted again, equals a fit that was never killed (here, in process).
    config = next(c for m, _, s, c in Comparison.from_toml(tmp_path / "test_killonce.toml")
                  .runs() if m == "mfvi" and s == seed)
    alone = Comparison(["mfvi"], ["sample:phantom"], [seed], settings={
        **json.loads(config.to_json()), "prior": "normal"})
    alone = run_comparison(alone, tmp_path / "alone", progress=False, figures=False)
    np.testing.assert_array_equal(study["mean"].sel({"method": "mfvi", "seed": seed}).squeeze(),
                                  alone["mean"].squeeze())


def test_runs_that_keep_failing_are_recorded_and_rerun_on_request(faults, tmp_path, capsys,
                                                                 monkeypatch):
    assert compare(tmp_path, "test_oom") == 1
    said = capsys.readouterr()
    out = tmp_path / "test_oom"
    study = read_dataset(out / "comparison.nc")
    assert study["status"].sel({"method": "dip"}).values.ravel().tolist() == ["ok", "ok"]
    assert study["status"].sel({"method": "mfvi"}).values.ravel().tolist() == ["failed", "failed"]
    assert np.isnan(study["mean_psnr"].sel({"method": "mfvi"})).all()
    assert np.isfinite(study["mean_psnr"].sel({"method": "dip"})).all()
    error = "OutOfMemoryError: CUDA out of memory. Tried to allocate 20.00 GiB"
    assert error in str(study["error"].sel({"method": "mfvi", "seed": 1}).item())
    assert f"- mfvi on phantom, seed 0: {error}" in said.out  # under the table
    assert "2 of 4 runs failed" in said.err and "--retry-failed" in said.err
    record = json.loads((out / "runs" / "phantom-mfvi-seed0.failed.json").read_text())
    assert record == {"error": error, "attempts": 2}
    kept = {p.name: p.stat().st_mtime_ns for p in (out / "runs").glob("*.nc")}
    assert compare(tmp_path, "test_oom") == 1  # not asked: the failed runs are not run again
    assert "running it again" not in capsys.readouterr().err
    monkeypatch.delenv("PYRODIP_TEST_FAULTS")  # the fault is mended
    assert compare(tmp_path, "test_oom", "--retry-failed") == 0
    study = read_dataset(out / "comparison.nc")
    assert set(study["status"].values.ravel()) == {"ok"}
    assert not list((out / "runs").glob("*.failed.json"))
    assert {p.name: p.stat().st_mtime_ns for p in (out / "runs").glob("*dip*.nc")} == {
        name: time for name, time in kept.items() if "dip" in name}


def test_an_interrupted_study_fit_resumes_from_its_checkpoint(tmp_path):
    """A fit cut short in a study (SIGTERM in this process) leaves its checkpoint; the study
    run again resumes it to the result of an uninterrupted study."""
    import threading

    study = Comparison(["mfvi"], ["sample:phantom"], [0], settings={
        "size": 32, "steps": 12, "samples": 2})
    whole = run_comparison(study, tmp_path / "whole", progress=False, figures=False)
    stop = threading.Event()
    stop.set()
    with pytest.raises(Interrupted, match="interrupted at step 1; state saved to"):
        run_comparison(study, tmp_path / "cut", progress=False, stop=stop, checkpoint_every=5)
    assert (tmp_path / "cut" / "runs" / "phantom-mfvi-seed0.checkpoint.pt").exists()
    resumed = run_comparison(study, tmp_path / "cut", progress=False, figures=False)
    assert not list((tmp_path / "cut" / "runs").glob("*.pt"))
    assert json.loads(read_dataset(tmp_path / "cut" / "runs" / "phantom-mfvi-seed0.nc").attrs[
        "resumed_at"]) == [1]
    for name in ("mean", "std_total", "psnr", "loss"):
        np.testing.assert_array_equal(resumed[name], whole[name])


def test_bo_retries_a_failed_trial_once_and_reruns_failed_ones_on_request(tmp_path):
    attempts = []
    broken = {"on": True}

    def fragile(params):
        attempts.append(params["prior_scale"])
        if params["prior_scale"] == 0.3 and broken["on"]:
            raise RuntimeError("out of memory")
        return -abs(np.log10(params["prior_scale"] / 0.05))

    study = Study(params=(Param("prior_scale", 0.01, 0.4, log=True),), init=((0.3,), (0.03,)),
                  rounds=1, batch=1)
    dataset = optimize(study, tmp_path, evaluate=fragile, figures=False)
    assert attempts.count(0.3) == 2  # tried, then once more
    assert list(dataset["status"].values) == ["failed", "ok", "ok"]
    assert dataset["error"].values[0] == "RuntimeError: out of memory (after 2 attempts)"
    log = [json.loads(line) for line in (tmp_path / "trials.jsonl").read_text().splitlines()]
    assert [r["event"] for r in log if r["trial"] == 0] == ["submitted", "retried", "finished"]
    broken["on"] = False
    attempts.clear()
    dataset = resume(tmp_path, evaluate=fragile, figures=False, retry_failed=True)
    assert attempts == [0.3]  # the failed trial only; the others are kept
    assert list(dataset["status"].values) == ["ok", "ok", "ok"]
    assert read_trials(tmp_path)[0].status == "ok"


def test_bo_on_a_local_cluster_survives_a_killed_worker(faults, tmp_path, capsys):
    from conftest import exit_code

    out = tmp_path / "bo"
    assert exit_code(["bo", "--image", "sample:phantom", "--size", "32", "--prior",
                      "test_killonce", "--plugin", "fault_injection", "--param",
                      "prior_scale=0.01:0.4:log", "--init-points", "2", "--rounds", "1",
                      "--batch", "1", "--steps", "4", "--samples", "2", "--workers", "2",
                      "--out", str(out), "--quiet"]) == 0
    dataset = read_dataset(out / "bo.nc")
    assert list(dataset["status"].values) == ["ok"] * 3
    log = (out / "trials.jsonl").read_text()
    assert log.count('"retried"') == 1 and "the worker running it died" in log
    assert "3 trials (3 ok, 0 failed)" in capsys.readouterr().out



def test_a_bo_trial_whose_worker_is_killed_resumes_from_its_checkpoint(tmp_path):
    """A real SIGKILL of the worker once the trial's fit saved a checkpoint: the trial runs
    again on the worker the nanny restarts, resumes at the checkpoint's step (no step run
    twice) and gives the value of a trial that was never killed."""
    import threading

    from pyrodip.run.config import RunConfig

    config = RunConfig(image="sample:phantom", size=32, steps=75, samples=2)
    study = Study(params=(Param("prior_scale", 0.01, 0.4, log=True),), init=((0.05,),),
                  rounds=0, batch=1, config=config)
    folder = tmp_path / "killed"
    checkpoint = folder / "trial000.checkpoint.pt"
    with dask_executor(workers=1) as executor:  # the same worker threads: the same numbers
        whole = optimize(study, tmp_path / "whole", executor=executor, figures=False)
        [pid] = executor.client.run(os.getpid).values()

        def kill_at_the_first_checkpoint() -> None:
            while not checkpoint.exists():
                time.sleep(0.005)
            os.kill(pid, signal.SIGKILL)

        killer = threading.Thread(target=kill_at_the_first_checkpoint, daemon=True)
        killer.start()
        dataset = optimize(study, folder, executor=executor, figures=False, checkpoint_every=25)
    assert not killer.is_alive()
    [trial] = read_trials(folder).values()
    assert trial.status == "ok" and len(trial.resumed_at) == 1 and trial.resumed_at[0] >= 25
    log = (folder / "trials.jsonl").read_text()
    assert log.count('"retried"') == 1 and "the worker running it died" in log
    assert dataset["objective"].values.tolist() == whole["objective"].values.tolist()
    assert not checkpoint.exists()
