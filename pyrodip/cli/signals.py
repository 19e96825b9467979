"""Signals while a command fits: SIGTERM (e.g. SLURM preemption) and Ctrl-C stop a fit in
this process, which saves its checkpoint, or interrupt a study waiting on its workers, which
shuts their cluster down; and the Dask executor a study's options ask for."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..studies.execution import DaskExecutor


def study_executor(stack: contextlib.ExitStack, stop: threading.Event, scheduler: str | None,
                   workers: int | None, device: str) -> DaskExecutor | None:
    """The Dask executor a study's options ask for, entered on ``stack`` (None: the fits run in
    this process), with the signal handling that goes with it: in this process SIGTERM and
    Ctrl-C stop the fit (``stop``), which saves its checkpoint; with workers they interrupt the
    study, which shuts its cluster down."""
    if scheduler is None and workers is None:
        stack.enter_context(stop_on_signals(stop))
        return None
    from ..studies.execution import dask_executor

    stack.enter_context(interrupt_on_sigterm(stop))
    return stack.enter_context(dask_executor(scheduler, workers, device))


@contextlib.contextmanager
def interrupt_on_sigterm(stop: threading.Event) -> Iterator[None]:
    """While a study waits on its workers, SIGTERM (e.g. SLURM preemption) interrupts it as
    Ctrl-C does (recording which signal as ``stop.signal``), so that its cluster is shut
    down."""
    stop.signal = signal.SIGINT

    def handler(signum, frame) -> None:
        stop.signal = signum
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """While fitting, SIGTERM (e.g. SLURM preemption) and SIGINT set ``stop`` (recording
    which signal as ``stop.signal``): the fit then saves a checkpoint and ends."""
    stop.signal = None

    def handler(signum, frame) -> None:
        stop.signal = signum
        stop.set()

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
