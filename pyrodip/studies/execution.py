"""Running trials: one after another in this process, or in parallel on ``dask.distributed``.

An executor has two methods, all that the optimisation loop (:mod:`pyrodip.studies.bo`) uses:
``submit(fn, *args)`` returns a future (``.result()`` returns or raises) and
``next_completed()`` blocks until at least one submitted call has finished, then returns
every future that finished since the last call.

* :class:`SyncExecutor` runs the calls in this process, in submission order, when
  ``next_completed`` is called: deterministic, for tests and for the API's default.
* :class:`DaskExecutor` runs them on a Dask cluster: :func:`dask_executor` starts a local one
  sized to the machine (:func:`worker_environments`) or connects to a running scheduler.

Calls go through :class:`Retrying`: a call that raises (a fit that fails or runs out of
memory) or whose worker dies (killed, or by the out-of-memory killer) is run once more, on
another worker where there is one; if it fails again its outcome is a :class:`Failed`, so that a
failed trial is data and not a crash. :func:`run_trial` times one trial.

>>> with Retrying(SyncExecutor()) as executor:
...     tasks = [executor.submit(run_trial, float, "2.5"), executor.submit(run_trial, int, "x")]
...     while executor.busy:
...         _ = executor.next_completed()
>>> tasks[0].outcome[0], tasks[1].outcome
(2.5, Failed(error="ValueError: invalid literal for int() with base 10: 'x'", attempts=2))
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..errors import InvalidInputError, error_line

#: Seconds to wait for a remote scheduler to answer.
CONNECT_TIMEOUT_S = 30
#: Dask's configuration of the environment its nannies give worker processes.
PRE_SPAWN_ENVIRON = "distributed.nanny.pre-spawn-environ"
#: How many times a call that failed is run again before it is recorded as failed.
RETRIES = 1
#: The states of a Dask worker that is being stopped (``distributed.core.Status``).
STOPPING = ("stopping", "stopped", "closing", "closing_gracefully", "closed", "failed")


class Executor(Protocol):
    """What runs trials and study fits: :class:`SyncExecutor` or :class:`DaskExecutor`."""

    def submit(self, fn: Callable, *args: Any, avoid: str | None = None) -> Any:
        """Start ``fn(*args)`` (on another worker than ``avoid``, where there is one); a future
        whose ``.result()`` returns or raises."""

    def next_completed(self) -> list:
        """Block until a submitted call finishes; every future finished since the last call."""


def run_trial(fn: Callable[[Any], float], params: Any) -> tuple[float, float, str]:
    """``fn(params)`` timed: (value, wall time in s, ``""``: no error).

    >>> run_trial(abs, -2.0)[0]
    2.0
    """
    start = time.perf_counter()
    value = float(fn(params))
    return value, time.perf_counter() - start, ""


def run_trials(
    fn: Callable[[list[Any]], list[tuple[float, str]]], params: list[Any]
) -> list[tuple[float, float, str]]:
    """``fn(params)`` for trials evaluated together (one batched fit), timed as a whole:
    (value, wall time of the batch in s, error) per trial (``fn`` gives each trial's error)."""
    start = time.perf_counter()
    outcomes = fn(params)
    elapsed = time.perf_counter() - start
    return [(float(value), elapsed, error) for value, error in outcomes]


@dataclass(frozen=True)
class Failed:
    """The outcome of a call that failed on every attempt: its last error, on one line."""

    error: str
    attempts: int


@dataclass(frozen=True)
class _Raised:
    """What a call that raised returns to :class:`Retrying`: the error and where it ran."""

    error: str
    worker: str | None


def _guarded(fn: Callable, args: tuple) -> Any:
    """``fn(*args)``, or the exception it raised as a :class:`_Raised`. An interrupted fit
    (:class:`~pyrodip.infer.checkpoints.Interrupted`) is raised in this process (Ctrl-C stops
    the study); on a worker that is being stopped it is a call to run again elsewhere."""
    from ..infer.checkpoints import Interrupted

    try:
        return fn(*args)
    except Interrupted as exc:
        worker = _current_worker()
        if worker is None:
            raise
        return _Raised(f"its worker was stopped ({exc})", worker.address)
    except Exception as exc:  # a failed call is data, to retry or record
        worker = _current_worker()
        return _Raised(error_line(exc), None if worker is None else worker.address)


class WorkerStopping:
    """Set once the Dask worker this was made on is being stopped (SLURM preempting its job
    sends SIGTERM; the worker then closes): passed to a fit as its ``stop``, it saves a
    checkpoint at the end of the step and ends, so that the fit resumes on another worker
    without losing steps. None outside a worker (:meth:`here`)."""

    def __init__(self, worker) -> None:
        self.worker = worker

    @classmethod
    def here(cls) -> WorkerStopping | None:
        worker = _current_worker()
        return None if worker is None else cls(worker)

    def is_set(self) -> bool:
        return self.worker.status.name in STOPPING


def _current_worker():
    """The Dask worker this runs on, None outside one."""
    try:
        from distributed import get_worker

        return get_worker()
    except (ImportError, ValueError):
        return None


def _lost(exc: Exception) -> str:
    """Why a call gave no outcome: its worker died (killed, or out of memory), or ``exc``."""
    if type(exc).__name__ == "KilledWorker":
        return "the worker running it died (killed, or out of memory: see its log)"
    return error_line(exc)


@dataclass(eq=False)
class Task:
    """One call submitted to :class:`Retrying`: ``outcome`` is its value once it succeeded, or
    :class:`Failed`; ``errors`` lists the error of every failed attempt."""

    fn: Callable
    args: tuple
    attempts: int = 0
    errors: list[str] = field(default_factory=list)
    outcome: Any = None


class Retrying:
    """Runs calls on ``executor``; a call that raises, or whose worker dies, is run again up to
    ``retries`` times (on another worker than the one where it raised, where there is one),
    then its outcome is :class:`Failed`. ``on_retry(task)`` is called before each retry.

    >>> attempts = []
    >>> def flaky():
    ...     attempts.append(1)
    ...     if len(attempts) == 1:
    ...         raise MemoryError("out of memory")
    ...     return "done"
    >>> with Retrying(SyncExecutor()) as executor:
    ...     task = executor.submit(flaky)
    ...     executor.next_completed()[0].outcome, task.errors
    ('done', ['MemoryError: out of memory'])
    """

    def __init__(self, executor: Executor, retries: int = RETRIES,
                 on_retry: Callable[[Task], None] | None = None) -> None:
        self.executor, self.retries, self.on_retry = executor, retries, on_retry
        self._running: dict[Any, Task] = {}

    @property
    def busy(self) -> int:
        """How many calls are submitted and not yet finished."""
        return len(self._running)

    def submit(self, fn: Callable, *args: Any) -> Task:
        task = Task(fn, args)
        self._start(task)
        return task

    def _start(self, task: Task, avoid: str | None = None) -> None:
        task.attempts += 1
        self._running[self.executor.submit(_guarded, task.fn, task.args, avoid=avoid)] = task

    def next_completed(self) -> list[Task]:
        """Block until a call has finished for good (succeeded, or failed on every attempt);
        every such call since the last time. Empty only when nothing is running."""
        from ..infer.checkpoints import Interrupted

        while self._running:
            done = []
            for future in self.executor.next_completed():
                task = self._running.pop(future)
                try:
                    value = future.result()
                except Interrupted:
                    raise
                except Exception as exc:  # the worker died, or the call could not run
                    value = _Raised(_lost(exc), None)
                if not isinstance(value, _Raised):
                    task.outcome = value
                    done.append(task)
                    continue
                task.errors.append(value.error)
                if task.attempts > self.retries:
                    task.outcome = Failed(value.error, task.attempts)
                    done.append(task)
                    continue
                if self.on_retry is not None:
                    self.on_retry(task)
                self._start(task, avoid=value.worker)
            if done:
                return done
        return []

    def __enter__(self) -> Retrying:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._running.clear()


class SyncExecutor:
    """Runs every submitted call in this process when :meth:`next_completed` is called."""

    def __init__(self) -> None:
        self._queue: list[tuple[Future, Callable, tuple]] = []

    def submit(self, fn: Callable, *args: Any, avoid: str | None = None) -> Future:
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

    def submit(self, fn: Callable, *args: Any, avoid: str | None = None):
        others = {}
        if avoid is not None:
            workers = [w for w in self.client.scheduler_info()["workers"] if w != avoid]
            if workers:
                others = {"workers": workers, "allow_other_workers": True}
        future = self.client.submit(fn, *args, pure=False, **others)
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
    environment per worker so that each can be pinned to its own GPU. Its scheduler, workers
    and their HTTP ports listen on 127.0.0.1 only: a scheduler runs whatever code is
    submitted to it. Its workers do not get
    Dask's ``MALLOC_TRIM_THRESHOLD_``: any explicit glibc malloc setting fixes the mmap
    threshold, so that torch's large tensors are mapped and unmapped at every step (measured:
    a CPU fit 1.8 times slower, ten times the page faults). Its scheduler gives up on a call
    the first time its worker dies (``allowed-failures`` 0), so that :class:`Retrying` records
    the death and runs the call once more; a remote scheduler keeps its own setting (Dask's
    default reruns a call whose worker died 3 times before it reports it).
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
    scheduler_spec = {"cls": Scheduler, "options": {"host": "127.0.0.1", "dashboard": False,
                                                     "dashboard_address": "127.0.0.1:0"}}
    with (
        dask.config.set({f"{PRE_SPAWN_ENVIRON}.MALLOC_TRIM_THRESHOLD_": None,
                         "distributed.scheduler.allowed-failures": 0}),
        SpecCluster(workers=spec, scheduler=scheduler_spec, silence_logs=logging.ERROR) as cluster,
        Client(cluster) as client,
    ):
        client.wait_for_workers(len(environments))
        yield DaskExecutor(client)
