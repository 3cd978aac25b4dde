"""Which task rings next, checked without a broker: each step rings the next one by
name, after its commit, through the runtime's doorbell (here `RecordingDoorbell`).
A missing ring is a stall until beat's next tick (5 s for the relay, a minute for the
sweep); a ring before the commit lets a worker look for rows that are not there yet."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from services.ports import APPLY_EVENTS, PLAN_STREAM, RELAY, RUN_CAMPAIGN, SEND_DELIVERIES
from tests.service.conftest import store_only, write_campaign
from tests.support import order_paid, stream_ended


def emit_only(services, *events: dict) -> None:
    """`encore emit` alone: stored, intake rung, nobody answering yet."""
    from services.emit import emit_lines

    emit_lines(services.runtime, [("test", n, json.dumps(e)) for n, e in enumerate(events, 1)],
               lambda *reject: pytest.fail(str(reject)))


def answer_intake_only(services) -> None:
    """Apply what intake was rung for, leaving every ring it makes in turn recorded."""
    from services.intake import apply_events

    for _, (event_ids,) in services.doorbell.take(APPLY_EVENTS):
        with services.session() as session:
            apply_events(session, services.runtime, event_ids, services.clock())


def order(services, event_id: str, customer_id: str, **fields) -> dict:
    return order_paid(event_id, customer_id=customer_id, occurred_at=services.clock(), timezone="UTC", **fields)


def test_emit_rings_intake_with_the_ids_it_stored_and_not_for_a_repeat(services):
    emit_only(services, order(services, "e1", "c1"))
    assert services.doorbell.take() == [(APPLY_EVENTS, (["e1"],))]
    # The same event again is stored once: nothing new to apply, no ring
    emit_only(services, order(services, "e1", "c1"))
    assert services.doorbell.take() == []


def test_intake_rings_the_relay_once_it_scheduled_a_delivery(services):
    emit_only(services, order(services, "e1", "c1"))
    answer_intake_only(services)
    assert services.doorbell.take() == [(RELAY, ())]


def test_intake_rings_the_planner_for_an_ended_stream_not_the_relay(services):
    services.emit(*(order(services, f"e{n}", f"c{n}", stream_id="S") for n in range(3)))
    assert services.doorbell.take() == []  # stream orders wait for the stream's end
    services.clock.advance(minutes=10)
    emit_only(services, stream_ended("end-S", "S", services.clock()))
    answer_intake_only(services)
    # The stream's buyers are the planner's: it rings the relay itself, chunk by chunk
    assert services.doorbell.take() == [(PLAN_STREAM, ("S",))]


def test_the_planner_rings_the_relay_after_a_chunk_that_scheduled_deliveries(services):
    from services.stream_planning import plan_stream

    services.emit(*(order(services, f"e{n}", f"c{n}", stream_id="S") for n in range(3)))
    services.clock.advance(minutes=10)
    emit_only(services, stream_ended("end-S", "S", services.clock()))
    answer_intake_only(services)
    services.doorbell.take()
    assert plan_stream(services.runtime, "S") == 3
    assert services.doorbell.take() == [(RELAY, ())]
    # Planned again, the stream has nothing left to schedule: no ring
    assert plan_stream(services.runtime, "S") == 0
    assert services.doorbell.take() == []


def test_a_chunk_whose_buyers_are_all_suppressed_does_not_ring_the_relay(services):
    services.emit(*(order(services, f"e{n}", f"c{n}", stream_id="S", consent=[]) for n in range(3)),
                  stream_ended("end-S", "S", services.clock() + timedelta(minutes=5)))
    assert {row["state"] for row in services.deliveries()} == {"suppressed"}
    assert RELAY not in services.doorbell.names()


def test_a_ring_after_commit_waits_for_the_commit_and_is_dropped_on_rollback(services):
    with pytest.raises(RuntimeError), services.session() as session:
        services.doorbell.ring_after_commit(session, RELAY)
        with session.begin_nested():  # a savepoint released inside does not ring either
            services.doorbell.ring_after_commit(session, PLAN_STREAM, "S")
        assert services.doorbell.names() == []
        raise RuntimeError("the unit of work fails")
    assert services.doorbell.names() == []
    with services.session() as session:
        services.doorbell.ring_after_commit(session, RELAY)
        assert services.doorbell.names() == []  # not before the commit
    assert services.doorbell.names() == [RELAY]


def test_the_campaign_runner_rings_each_due_run_and_the_run_rings_the_relay(campaign_services, campaigns_dir):
    from services.campaigns import run_named, start_due_runs

    s = campaign_services
    write_campaign(campaigns_dir, "win-back.toml", name="win-back", audience="lapsed", days=60,
                   schedule="0 12 * * *", timezone="UTC")
    s.emit(order_paid("e1", customer_id="c1", occurred_at=s.clock() - timedelta(days=70), timezone="UTC"))
    s.doorbell.take()
    # The runner's tick rings the run by name and scheduled time
    assert start_due_runs(s.runtime) == 1
    [(task, (name, scheduled_at))] = s.doorbell.take()
    assert (task, name, scheduled_at) == (RUN_CAMPAIGN, "win-back", "2026-03-10T12:00:00Z")
    # The run plans its audience and rings the relay once its chunk is committed
    assert run_named(s.runtime, name, scheduled_at) == "done"
    assert s.doorbell.take() == [(RELAY, ())]


def test_the_relay_rings_the_senders_in_batches_and_intake_for_events_whose_ring_was_lost(services):
    from services.relay import SEND_BATCH, relay_once

    services.emit(*(order(services, f"e{n}", f"c{n:03d}") for n in range(SEND_BATCH + 1)))
    store_only(services, order(services, "lost", "c-lost"))  # stored, its ring lost
    services.doorbell.take()
    assert relay_once(services.runtime) == SEND_BATCH + 1
    assert [(task, len(ids)) for task, (ids,) in services.doorbell.take()] == [
        (SEND_DELIVERIES, SEND_BATCH), (SEND_DELIVERIES, 1)]
    # After the lease, with nothing waiting in intake's queue, the lost event is rung for again
    services.clock.advance(seconds=services.runtime.settings.lease_seconds + 1)
    relay_once(services.runtime)
    assert services.doorbell.take(APPLY_EVENTS) == [(APPLY_EVENTS, (["lost"],))]
