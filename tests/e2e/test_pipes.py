"""Every command in a shell pipe whose reader stops early (`encore deliveries | head`):
the command ends quietly, as `ls | head` does, without a traceback on the terminal."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime

import pytest

from tests.support import order_paid

ORDERS = 1500  # the table alone is ~200 KB: far more than a pipe holds, so the writer meets the closed end


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """An empty folder whose embedded database holds 1,500 deliveries, applied in-process."""
    from config.settings import load_settings
    from services.bootstrap import bootstrap
    from services.emit import emit_lines
    from services.intake import apply_events
    from services.ports import APPLY_EVENTS
    from store.db import session_scope
    from tests.support import RecordingDoorbell

    folder = tmp_path_factory.mktemp("pipes")
    now = datetime.now(UTC)
    runtime = bootstrap(load_settings({"ENCORE_DATA_DIR": str(folder / "var")}), clock=lambda: now,
                        doorbell=RecordingDoorbell())
    lines = [("test", n, json.dumps(order_paid(f"e{n}", customer_id=f"c{n:05d}", occurred_at=now)))
             for n in range(ORDERS)]
    lines.append(("test", ORDERS, "{broken"))  # one dead letter, so `dead-letters` prints a row
    emit_lines(runtime, lines, lambda *_: None)
    stored = [event_id for _, (ids,) in runtime.doorbell.take(APPLY_EVENTS) for event_id in ids]
    with session_scope(runtime.database_url) as session:
        apply_events(session, runtime, stored, now)
    return folder


def run_into_a_closed_pipe(folder, *args: str, read_first_line: bool, stdin: str | None = None):
    """Run `encore ARGS` with its stdout on a pipe that is closed after one line (or at
    once); return (first line, exit code, stderr)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENCORE_")}
    process = subprocess.Popen([sys.executable, "-m", "workers.cli", *args], cwd=folder, env=env,
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    first = process.stdout.readline() if read_first_line else b""
    process.stdout.close()
    _, stderr = process.communicate(stdin.encode() if stdin else None, timeout=120)
    return first, process.returncode, stderr.decode()


@pytest.mark.parametrize("args", [["deliveries"], ["deliveries", "--json"]])
def test_a_long_listing_into_a_pipe_closed_after_one_line_ends_quietly(folder, args):
    # Given 1,500 deliveries
    # When the reader takes the first line and goes away (`encore deliveries | head -1`)
    first, code, stderr = run_into_a_closed_pipe(folder, *args, read_first_line=True)
    # Then the command had started printing, stops without a traceback, and says so by
    # its exit code (1, what Python's documentation advises; a shell shows no message)
    assert first.strip()
    assert "Traceback" not in stderr and "BrokenPipeError" not in stderr, stderr
    assert code == 1


@pytest.mark.parametrize("args", [["status"], ["status", "--json"], ["dead-letters"], ["dead-letters", "--json"],
                                  ["campaigns"], ["campaigns", "--json"], ["check"], ["emit", "-"]])
def test_every_command_into_a_pipe_already_closed_ends_without_a_traceback(folder, args):
    # Given a reader that closed the pipe before the command printed anything
    stdin = json.dumps(order_paid("piped", customer_id="p1")) + "\n" if args[0] == "emit" else None
    _, code, stderr = run_into_a_closed_pipe(folder, *args, read_first_line=False, stdin=stdin)
    # Then the command ends without a traceback
    assert "Traceback" not in stderr and "BrokenPipeError" not in stderr, stderr
    assert code in (0, 1)
