"""SIGTERM and Ctrl-C while a command fits (pyrodip.cli.signals)."""

import contextlib
import signal
import threading

import pytest

from pyrodip.cli.signals import interrupt_on_sigterm, stop_on_signals, study_executor


def test_a_fit_in_this_process_is_stopped_by_sigterm_and_ctrl_c():
    before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    for sig in (signal.SIGTERM, signal.SIGINT):
        stop = threading.Event()
        with stop_on_signals(stop):
            assert stop.signal is None
            signal.raise_signal(sig)
            assert stop.is_set() and stop.signal == sig
    assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == before


def test_a_study_waiting_on_workers_is_interrupted_by_sigterm():
    before = signal.getsignal(signal.SIGTERM)
    stop = threading.Event()
    with pytest.raises(KeyboardInterrupt), interrupt_on_sigterm(stop):
        assert stop.signal == signal.SIGINT  # what Ctrl-C, the default, would record
        signal.raise_signal(signal.SIGTERM)
    assert stop.signal == signal.SIGTERM and not stop.is_set()
    assert signal.getsignal(signal.SIGTERM) == before


def test_no_workers_no_executor_and_signals_stop_the_fit():
    before = signal.getsignal(signal.SIGTERM)
    stop = threading.Event()
    with contextlib.ExitStack() as stack:
        assert study_executor(stack, stop, None, None, "cpu") is None
        signal.raise_signal(signal.SIGTERM)
        assert stop.is_set()
    assert signal.getsignal(signal.SIGTERM) == before
