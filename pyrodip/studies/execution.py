"""Running trials: one after another in this process, or in parallel on ``dask.distributed``.

An executor has two methods, all that the optimisation loop (:mod:`pyrodip.studies.bo`) uses:
``submit(fn, *args)`` returns a future (``.result()`` returns or raises) and
``next_completed()`` blocks until at least one submitted call has finished, then returns
every future that finished since the last call.

* :class:`SyncExecutor` runs the calls in this process, in submission order, when
  ``next_completed`` is called: deterministic, for tests and for the API's default.
* :class:`DaskExecutor` runs them on a Dask cluster: :func:`dask_executor` starts a local one
  sized to the machine (:func:`worker_environments`) or connects to a running scheduler.

Trials go through :func:`run_trial`, which times the call and turns an exception into an
error string, so that a failed trial is data and not a crash.

>>> with SyncExecutor() as executor:
...     futures = [executor.submit(run_trial, float, "2.5"), executor.submit(run_trial, int, "x")]
...     done = executor.next_completed()
>>> [future.result()[0] for future in done], done[1].result()[2]
([2.5, nan], "ValueError: invalid literal for int() with base 10: 'x'")
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from typing import Any, Protocol

from ..errors import InvalidInputError, error_line

#: Seconds to wait for a remote scheduler to answer.
CONNECT_TIMEOUT_S = 30
#: Dask's configuration of the environment its nannies give worker processes.
PRE_SPAWN_ENVIRON = "distributed.nanny.pre-spawn-environ"


class Executor(Protocol):
    """What runs trials and study fits: :class:`SyncExecutor` or :class:`DaskExecutor`."""

    def submit(self, fn: Callable, *args: Any) -> Any:
        """Start ``fn(*args)``; a future whose ``.result()`` returns or raises."""

    def next_completed(self) -> list:
        """Block until a submitted call finishes; every future finished since the last call."""


def run_trial(fn: Callable[[Any], float], params: Any) -> tuple[float, float, str]:
    """``fn(params)`` timed: (value, wall time in s, error). A raised exception gives value
    NaN and its type and message, on one line, as the error; a success gives error ``""``."""
    start = time.perf_counter()
    try:
        value, error = float(fn(params)), ""
    except Exception as exc:  # a failed trial is recorded, not raised
        value, error = math.nan, error_line(exc)
    return value, time.perf_counter() - start, error


def run_trials(
    fn: Callable[[list[Any]], list[tuple[float, str]]], params: list[Any]
) -> list[tuple[float, float, str]]:
    """``fn(params)`` for trials evaluated together (one batched fit), timed as a whole:
    (value, wall time of the batch in s, error) per trial; a raised exception fails every
    trial with it."""
    start = time.perf_counter()
    try:
        outcomes = fn(params)
    except Exception as exc:  # a failed batch is recorded, not raised
        error = error_line(exc)
        outcomes = [(math.nan, error)] * len(params)
    elapsed = time.perf_counter() - start
    return [(float(value), elapsed, error) for value, error in outcomes]


class SyncExecutor:
    """Runs every submitted call in this process when :meth:`next_completed` is called."""

    def __init__(self) -> None:
        self._queue: list[tuple[Future, Callable, tuple]] = []

    def submit(self, fn: Callable, *args: Any) -> Future:
        future: Future = Future()
        self._queue.append((future, fn, args))
        return future

    def next_completed(self) -> list[Future]:
        queue, self._queue = self._queue, []
        for future, fn, args in queue:
            try:
                future.set_result(fn(*args))
            except Exception as exc:
                future.set_exception(exc)
        return [future for future, _, _ in queue]

    def __enter__(self) -> SyncExecutor:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._queue.clear()


class DaskExecutor:
    """Submits calls to a ``distributed.Client``; finished ones come back through
    ``distributed.as_completed``, in the order they finish."""

    def __init__(self, client) -> None:
        from distributed import as_completed

        self.client = client
        self._completed = as_completed()

    def submit(self, fn: Callable, *args: Any):
        future = self.client.submit(fn, *args, pure=False)
        self._completed.add(future)
        return future

    def next_completed(self) -> list:
        return self._completed.next_batch(block=True)


def worker_environments(
    device: str = "cpu",
    workers: int | None = None,
    concurrency: int = 1,
    cores: int | None = None,
    gpus: int | None = None,
) -> list[dict[str, str]]:
    """The environment of each worker of a local cluster, one dict per worker.

    ``device="cuda"``: one worker per GPU (``gpus``, default all that torch sees), each pinned
    to its GPU by ``CUDA_VISIBLE_DEVICES`` (``workers`` more than GPUs share them in turn).
    ``cuda:N``: one worker on that GPU. ``cpu``: ``min(concurrency, cores)`` workers (there is
    no use for more than the trials run at once), each with ``cores // workers`` torch threads
    (``OMP_NUM_THREADS``), so that the workers together do not oversubscribe the cores.

    >>> worker_environments("cpu", concurrency=3, cores=8)
    [{'OMP_NUM_THREADS': '2', 'MKL_NUM_THREADS': '2'}, {'OMP_NUM_THREADS': '2', 'MKL_NUM_THREADS': '2'}, {'OMP_NUM_THREADS': '2', 'MKL_NUM_THREADS': '2'}]
    >>> worker_environments("cuda", gpus=2)
    [{'CUDA_VISIBLE_DEVICES': '0'}, {'CUDA_VISIBLE_DEVICES': '1'}]
    """  # noqa: E501
    if workers is not None and (isinstance(workers, bool) or workers < 1):
        raise InvalidInputError(f"workers must be a positive integer, got {workers!r}")
    if device == "cuda":
        if gpus is None:
            import torch

            gpus = torch.cuda.device_count()
        if gpus < 1:
            raise InvalidInputError("device 'cuda' requested but no GPU is visible: use cpu")
        return [{"CUDA_VISIBLE_DEVICES": str(i % gpus)} for i in range(workers or gpus)]
    if device.startswith("cuda:"):
        return [{} for _ in range(workers or 1)]
    cores = cores or len(os.sched_getaffinity(0))
    count = workers or max(1, min(concurrency, cores))
    threads = str(max(1, cores // count))
    return [{"OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads} for _ in range(count)]


@contextlib.contextmanager
def dask_executor(
    scheduler: str | None = None,
    workers: int | None = None,
    device: str = "cpu",
    concurrency: int = 1,
) -> Iterator[DaskExecutor]:
    """A :class:`DaskExecutor` on the scheduler at ``scheduler`` (e.g. ``tcp://host:8786``,
    one that dask-jobqueue started), or on a local cluster of worker processes laid out by
    :func:`worker_environments`; the local cluster is shut down at the end.

    The local cluster is a ``distributed.SpecCluster`` of ``Nanny`` processes with one thread
    each (one trial at a time per worker): the machinery of ``LocalCluster``, with an
    environment per worker so that each can be pinned to its own GPU. Its workers do not get
    Dask's ``MALLOC_TRIM_THRESHOLD_``: any explicit glibc malloc setting fixes the mmap
    threshold, so that torch's large tensors are mapped and unmapped at every step (measured:
    a CPU fit 1.8 times slower, ten times the page faults).
    """
    import dask
    from distributed import Client, Nanny, Scheduler, SpecCluster

    if scheduler is not None:
        if workers is not None:
            raise InvalidInputError(
                "`workers` sizes the local cluster: with `scheduler`, scale the cluster that "
                "runs the scheduler instead (e.g. cluster.scale(N))"
            )
        try:
            client = Client(scheduler, timeout=CONNECT_TIMEOUT_S)
        except (OSError, TimeoutError, ValueError) as error:
            raise InvalidInputError(
                f"cannot reach the Dask scheduler at {scheduler!r} ({error}): check the address "
                "and that the scheduler is running"
            ) from None
        with client:
            yield DaskExecutor(client)
        return
    environments = worker_environments(device, workers, concurrency)
    options = {"host": "127.0.0.1", "nthreads": 1, "silence_logs": logging.ERROR}
    spec = {
        i: {"cls": Nanny, "options": {**options, "env": env}} for i, env in enumerate(environments)
    }
    scheduler_spec = {"cls": Scheduler, "options": {"host": "127.0.0.1", "dashboard": False}}
    with (
        dask.config.set({f"{PRE_SPAWN_ENVIRON}.MALLOC_TRIM_THRESHOLD_": None}),
        SpecCluster(workers=spec, scheduler=scheduler_spec, silence_logs=logging.ERROR) as cluster,
        Client(cluster) as client,
    ):
        client.wait_for_workers(len(environments))
        yield DaskExecutor(client)
