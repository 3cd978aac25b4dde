"""A worker's pool process given SIGTERM (a deploy signals the whole process group) stops
taking sends instead of dying mid-send (SPEC rule 19), and a second SIGTERM still ends it;
one signalled alone, whose worker goes on giving it tasks, sends again after a while."""

from __future__ import annotations

import os
import signal
import threading
from types import SimpleNamespace

import pytest

import tasks.app as app_module


@pytest.fixture()
def pool_process(monkeypatch):
    """This test process dressed as a pool process with a runtime; SIGTERM restored after."""
    original = signal.getsignal(signal.SIGTERM)
    runtime = SimpleNamespace(stopping=threading.Event())
    monkeypatch.setattr(app_module, "current_process", lambda: SimpleNamespace(_name="ForkPoolWorker-1"))
    monkeypatch.setattr(app_module, "_runtime", runtime)
    monkeypatch.setattr(app_module, "_stop_requested_at", None)
    yield runtime
    signal.signal(signal.SIGTERM, original)


def test_sigterm_before_a_task_stops_the_sends_and_a_second_one_ends_the_process(pool_process):
    # Given billiard's own handler (exit at once), and a task about to run
    signal.signal(signal.SIGTERM, lambda *_: pytest.fail("billiard's handler would have ended the process"))
    app_module._stop_gracefully_on_sigterm()
    # When SIGTERM arrives
    os.kill(os.getpid(), signal.SIGTERM)
    # Then the process keeps running, told to stop taking sends; the next SIGTERM is the default's
    assert pool_process.stopping.is_set()
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    app_module._stop_gracefully_on_sigterm()  # a task already in the pipe: still stopping
    assert pool_process.stopping.is_set() and signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


def test_a_process_still_given_tasks_long_after_its_sigterm_sends_again(pool_process, monkeypatch):
    app_module._stop_gracefully_on_sigterm()
    os.kill(os.getpid(), signal.SIGTERM)
    assert pool_process.stopping.is_set()
    later = app_module._stop_requested_at + app_module.RESUME_AFTER_SECONDS + 1
    monkeypatch.setattr(app_module.time, "monotonic", lambda: later)
    app_module._stop_gracefully_on_sigterm()
    assert not pool_process.stopping.is_set()
    assert signal.getsignal(signal.SIGTERM) is app_module._stop_taking_sends


def test_the_workers_own_process_keeps_celerys_handler(monkeypatch):
    original = signal.getsignal(signal.SIGTERM)
    monkeypatch.setattr(app_module, "current_process", lambda: SimpleNamespace(_name="MainProcess"))
    app_module._stop_gracefully_on_sigterm()
    assert signal.getsignal(signal.SIGTERM) is original
