import math
import os

import pytest

import pyrodip.studies.execution as execution
from pyrodip.errors import InvalidInputError
from pyrodip.studies.execution import (
    SyncExecutor,
    dask_executor,
    run_trial,
    run_trials,
    worker_environments,
)


def test_run_trial_times_the_call():
    value, seconds, error = run_trial(math.sqrt, 16.0)
    assert (value, error) == (4.0, "") and seconds >= 0
    with pytest.raises(ValueError):  # for Retrying to run again or record
        run_trial(math.sqrt, -1.0)


def test_sync_executor_runs_in_order_when_asked():
    calls = []

    def record(x):
        calls.append(x)
        if x == 2:
            raise KeyError(x)
        return 10 * x

    with SyncExecutor() as executor:
        futures = [executor.submit(record, x) for x in (1, 2, 3)]
        assert calls == []  # nothing runs before next_completed
        done = executor.next_completed()
    assert done == futures and calls == [1, 2, 3]
    assert futures[0].result() == 10 and futures[2].result() == 30
    with pytest.raises(KeyError):
        futures[1].result()
    assert executor.next_completed() == []


@pytest.mark.parametrize("kwargs, expected", [
    ({"concurrency": 2, "cores": 2}, [{"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}] * 2),
    ({"concurrency": 1, "cores": 2}, [{"OMP_NUM_THREADS": "2", "MKL_NUM_THREADS": "2"}]),
    ({"concurrency": 8, "cores": 4}, [{"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}] * 4),
    ({"workers": 3, "cores": 16}, [{"OMP_NUM_THREADS": "5", "MKL_NUM_THREADS": "5"}] * 3),
    ({"device": "cuda", "gpus": 3, "concurrency": 1},
     [{"CUDA_VISIBLE_DEVICES": "0"}, {"CUDA_VISIBLE_DEVICES": "1"},
      {"CUDA_VISIBLE_DEVICES": "2"}]),
    ({"device": "cuda", "gpus": 2, "workers": 3},
     [{"CUDA_VISIBLE_DEVICES": "0"}, {"CUDA_VISIBLE_DEVICES": "1"},
      {"CUDA_VISIBLE_DEVICES": "0"}]),
    ({"device": "cuda:1", "concurrency": 4}, [{}]),
])
def test_worker_environments_fit_the_machine(kwargs, expected):
    assert worker_environments(**kwargs) == expected


def test_worker_environments_refuse_nonsense():
    with pytest.raises(InvalidInputError, match="workers must be a positive integer"):
        worker_environments(workers=0)
    with pytest.raises(InvalidInputError, match="no GPU is visible"):
        worker_environments("cuda", gpus=0)


def test_scheduler_and_workers_exclude_each_other():
    with (
        pytest.raises(InvalidInputError, match="`workers` sizes the local cluster"),
        dask_executor("tcp://127.0.0.1:8786", workers=2),
    ):
        pass


def test_unreachable_scheduler_is_one_clear_error(monkeypatch):
    monkeypatch.setattr(execution, "CONNECT_TIMEOUT_S", 0.5)
    with (
        pytest.raises(InvalidInputError, match="cannot reach the Dask scheduler"),
        dask_executor("tcp://127.0.0.1:9"),
    ):
        pass


@pytest.mark.slow
def test_local_cluster_runs_trials_in_processes_with_their_threads():
    """One worker with all the cores: torch there uses them all; a raising call raises here;
    Dask's MALLOC_TRIM_THRESHOLD_ is not set; results arrive through as_completed."""
    import torch

    with dask_executor(workers=1) as executor:
        futures = [executor.submit(run_trial, lambda _: torch.get_num_threads(), None),
                   executor.submit(run_trial, math.sqrt, -1.0),
                   executor.submit(run_trial, lambda _: "MALLOC_TRIM_THRESHOLD_" in os.environ,
                                   None)]
        done = []
        while len(done) < 3:
            done += executor.next_completed()
        results = [futures[0].result(), futures[2].result()]
        with pytest.raises(ValueError, match="math domain error"):
            futures[1].result()
    assert set(done) == set(futures)
    assert results[0][0] == len(os.sched_getaffinity(0))
    assert results[1][0] == 0.0  # Dask's malloc setting would slow torch down


def test_run_trials_times_the_batch():
    outcomes = run_trials(lambda params: [(p * 2, "") for p in params], [1.0, 2.0])
    assert [(value, error) for value, _, error in outcomes] == [(2.0, ""), (4.0, "")]
    assert outcomes[0][1] == outcomes[1][1] >= 0  # one wall time: the batch's



def test_the_local_cluster_listens_on_loopback_only():
    """A scheduler runs what is submitted to it: the one pyrodip starts, its workers, nannies
    and HTTP (dashboard) ports are reachable from this machine only."""
    import socket

    from distributed.utils import get_ip

    with dask_executor(workers=1) as executor:
        info = executor.client.scheduler_info()
        [(worker, details)] = info["workers"].items()
        addresses = [info["address"], worker, details["nanny"]]
        ports = [int(address.rsplit(":", 1)[1]) for address in addresses]
        ports += [info["services"]["dashboard"], details["services"]["dashboard"]]
        assert all(address.startswith("tcp://127.0.0.1:") for address in addresses), addresses
        outside = get_ip()  # the address others reach this machine at
        for port in ports if outside != "127.0.0.1" else []:
            with pytest.raises(ConnectionRefusedError):
                socket.create_connection((outside, port), timeout=5)
