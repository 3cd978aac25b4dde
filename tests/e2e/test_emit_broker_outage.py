"""`encore emit` while the broker is away: events are stored before they are enqueued,
so the user is told so in one line (no traceback), the command does not hang, and the
relay enqueues the stored events once the broker is back."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from tests.e2e.test_cli import encore
from tests.support import order_paid

@pytest.fixture()
def refused_broker() -> Iterator[str]:
    """A Redis URL whose port refuses connections: bound by the test (so no other process
    can take it meanwhile) and never listening."""
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        yield f"redis://127.0.0.1:{closed.getsockname()[1]}/0"


@pytest.fixture()
def silent_broker() -> Iterator[str]:
    """A Redis URL whose server accepts connections and never answers (a hung host)."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        yield f"redis://127.0.0.1:{silent.getsockname()[1]}/0"


def three_orders() -> str:
    return "".join(json.dumps(order_paid(f"e{n}", customer_id=f"c{n}")) + "\n" for n in range(3))


@pytest.mark.parametrize("broker", ["refused", "silent"])
def test_emit_during_a_broker_outage_says_so_in_one_line_and_keeps_the_events(tmp_path, broker, request):
    url = request.getfixturevalue(f"{broker}_broker")
    # Given a broker that refuses connections, or accepts them and never answers
    # When three orders are emitted (the subprocess timeout is what a hang would hit)
    result = encore("emit", "-", cwd=tmp_path, stdin=three_orders(), env={"ENCORE_BROKER_URL": url}, timeout=90)
    # Then the usual count, one line saying what happened and that the events are kept,
    # and exit 0 as SPEC section 4 says when no line was rejected: every event is kept
    assert result.stdout.strip() == "accepted 3, rejected 0"
    assert "Traceback" not in result.stderr
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("encore emit: the broker did not answer (")
    assert "the 3 accepted events are stored" in line and "relay" in line
    assert result.returncode == 0
    # ...and they are in the inbox
    status = json.loads(encore("status", "--json", cwd=tmp_path, env={"ENCORE_BROKER_URL": url}).stdout)
    assert status["events"] == {"accepted": 3, "rejected": 0}


def test_events_stored_during_a_broker_outage_are_enqueued_by_the_relay_once_it_is_back(tmp_path, redis_url,
                                                                                        refused_broker):
    from config.settings import load_settings
    from services.ports import APPLY_EVENTS
    from services.relay import relay_once
    from tasks.app import compose, configure

    # Given three orders emitted while the broker refused connections
    assert encore("emit", "-", cwd=tmp_path, stdin=three_orders(),
                  env={"ENCORE_BROKER_URL": refused_broker}).returncode == 0
    # When the broker is back and beat's relay ticks after the lease
    settings = load_settings({"ENCORE_DATA_DIR": str(tmp_path / "var"), "ENCORE_BROKER_URL": redis_url})
    try:
        runtime = compose(settings)
        assert runtime.doorbell.waiting(APPLY_EVENTS) == 0
        after_the_lease = datetime.now(UTC) + timedelta(seconds=settings.lease_seconds + 1)
        relay_once(replace(runtime, clock=lambda: after_the_lease))
        # Then the stored events are in the intake queue, one message for the three
        assert runtime.doorbell.waiting(APPLY_EVENTS) == 1
    finally:
        configure(load_settings())


def test_a_replay_during_a_broker_outage_is_stored_and_says_so_in_one_line(tmp_path, refused_broker):
    # Given a rejected event, and a fixed version of it
    bad = order_paid("fix-me", customer_id="z")
    bad["data"]["currency"] = "usd"
    env = {"ENCORE_BROKER_URL": refused_broker}
    encore("emit", "-", cwd=tmp_path, stdin=json.dumps(bad) + "\n", env=env)
    [letter] = json.loads(encore("dead-letters", "--json", cwd=tmp_path, env=env).stdout)
    bad["data"]["currency"] = "USD"
    (tmp_path / "fixed.json").write_text(json.dumps(bad))
    # When it is replayed while the broker refuses connections
    result = encore("replay", letter["id"], "--file", str(tmp_path / "fixed.json"), cwd=tmp_path, env=env)
    # Then the replay is done (the event is stored) and one line says the relay takes it from there
    assert result.returncode == 0 and "accepted as event fix-me" in result.stdout
    assert "Traceback" not in result.stderr
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("encore replay: the broker did not answer (") and "relay" in line
    assert json.loads(encore("status", "--json", cwd=tmp_path, env=env).stdout)["events"]["accepted"] == 1
