"""Group commit of send results: results that arrive while the batch's one
connection is busy are written together, in one statement on PostgreSQL (one
transaction on SQLite), yet each is written as soon as the connection is free, the
fence still holds per row, and a database outage reaches every waiting thread.
In-process on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from collections import Counter
from contextlib import ExitStack
from datetime import timedelta

import pytest
from sqlalchemy import select, update
from sqlalchemy.exc import OperationalError

from channels.classify import SendResult
from services.relay import claim_due_deliveries
from services.sender import claim_batch
from services.sending.claim import Claim
from store.models import SCHEDULED, Attempt, Delivery
from tests.service.conftest import allow_connections, executed_statements
from tests.support import order_paid, wait_until

RESULTS = 8
JOIN_SECONDS = 60.0
"""Longest a test waits for a recording thread: a thread still alive after it hangs."""


def sms_orders(services, count: int) -> None:
    services.emit(*[order_paid(f"e{n}", customer_id=f"c{n:02d}", consent=["sms"], phone=f"+141555501{n:02d}",
                               occurred_at=services.clock(), timezone="UTC") for n in range(count)])


def claimed(services, count: int):
    """`count` due SMS deliveries claimed as one batch, and that batch's claim."""
    sms_orders(services, count)
    with services.session() as session:
        ids = claim_due_deliveries(session, services.clock(), timedelta(seconds=services.runtime.settings.lease_seconds))
    batch = claim_batch(services.runtime, ids, services.clock)
    assert len(batch.outgoing) == count
    return batch, Claim(services.runtime, batch, services.clock)


def record_together(services, claim: Claim, items, before_release=lambda: None,
                    write=None) -> tuple[list[object], int]:
    """Each item's result recorded (a `sent` answer, or `write(item)`) by its own thread
    while the claim's connection is busy (held as a lease renewal holds it), released
    once every result is queued; returns what each write returned or raised, and how
    many round trips wrote results: statements adding attempts on PostgreSQL (each
    one autocommits), transactions on SQLite."""
    outcomes: list[object] = [None] * len(items)
    ok = SendResult(ok=True, transient=False, reason="sent", detail="200 OK")

    def record(n: int) -> None:
        try:
            outcomes[n] = (write(items[n]) if write is not None else
                           claim.record(items[n], ok, started_at=services.clock(), answered_at=services.clock()))
        except BaseException as error:  # noqa: BLE001 - reported to the test
            outcomes[n] = error

    threads = [threading.Thread(target=record, args=(n,)) for n in range(len(items))]
    with ExitStack() as stack:
        with claim.writer.lock:
            for thread in threads:
                thread.start()
            wait_until(lambda: claim.writer.queued() == len(items))
            before_release()
            executed = stack.enter_context(executed_statements(services.runtime.database_url))
        for thread in threads:
            thread.join(JOIN_SECONDS)
    assert not any(thread.is_alive() for thread in threads), "a recording thread never got its answer"
    claim.close()
    if services.runtime.database_url.startswith("postgresql"):
        return outcomes, sum(1 for statement, _ in executed if "INSERT INTO attempts" in statement)
    return outcomes, sum(1 for statement, _ in executed if statement.startswith("BEGIN"))


def attempts_by_delivery(services) -> Counter:
    with services.session() as session:
        return Counter(session.execute(select(Attempt.delivery_id)).scalars())


def test_results_that_queue_for_the_connection_are_written_together_and_all_apply(make_services):
    # Given a batch of 8 claimed deliveries whose sends all answered while the
    # connection was busy
    services = make_services()
    batch, claim = claimed(services, RESULTS)
    # When their results are recorded
    outcomes, round_trips = record_together(services, claim, batch.outgoing)
    # Then one round trip wrote them all, and every one applied
    assert round_trips == 1
    assert outcomes == [True] * RESULTS
    assert Counter((row["state"], row["attempts"]) for row in services.deliveries()) == {("sent", 1): RESULTS}
    assert attempts_by_delivery(services) == {item.delivery_id: 1 for item in batch.outgoing}


def test_a_row_taken_over_in_a_group_is_left_alone_while_its_neighbours_apply(make_services):
    # Given 8 results queued together, where meanwhile one row was taken over by
    # another worker and one was handed back to the relay (its lease ran out)
    services = make_services()
    batch, claim = claimed(services, RESULTS)
    stolen, released = batch.outgoing[2].delivery_id, batch.outgoing[5].delivery_id

    def lose_two_rows() -> None:
        with services.session() as session:
            session.execute(update(Delivery).where(Delivery.id == stolen).values(claim_token="another-worker"))
            session.execute(update(Delivery).where(Delivery.id == released).values(state=SCHEDULED))

    # When the group is written
    outcomes, round_trips = record_together(services, claim, batch.outgoing, before_release=lose_two_rows)
    # Then in the same single write, those two rows are not applied (their threads
    # learn it) and get no attempt, and the six others are
    assert round_trips == 1
    assert outcomes == [item.delivery_id not in (stolen, released) for item in batch.outgoing]
    states = {row["id"]: (row["state"], row["attempts"]) for row in services.deliveries()}
    assert states[stolen] == ("sending", 0) and states[released] == ("scheduled", 0)
    assert attempts_by_delivery(services) == {item.delivery_id: 1 for item in batch.outgoing
                                              if item.delivery_id not in (stolen, released)}


def test_a_group_mixing_results_and_reschedules_applies_each(make_services):
    # Given 8 queued writes: results of sends, and every third one a reschedule
    # (quiet hours began before its send), which writes fewer columns
    services = make_services()
    batch, claim = claimed(services, RESULTS)
    later = services.clock() + timedelta(hours=8)
    rescheduled = {item.delivery_id for item in batch.outgoing[::3]}
    ok = SendResult(ok=True, transient=False, reason="sent", detail="250 OK")

    def write(item) -> bool:
        if item.delivery_id in rescheduled:
            return claim.finish(item.delivery_id, services.clock(), state=SCHEDULED, reason=None, next_attempt_at=later)
        return claim.record(item, ok, started_at=services.clock(), answered_at=services.clock())

    # When they are written together
    outcomes, _ = record_together(services, claim, batch.outgoing, write=write)
    # Then each applied as its own kind: sent with an attempt, or back to the relay without one
    assert outcomes == [True] * RESULTS
    assert {row["id"]: row["state"] for row in services.deliveries()} == {
        item.delivery_id: "scheduled" if item.delivery_id in rescheduled else "sent" for item in batch.outgoing}
    assert attempts_by_delivery(services) == {item.delivery_id: 1 for item in batch.outgoing
                                              if item.delivery_id not in rescheduled}


def test_a_result_is_written_while_the_other_sends_are_still_out(make_services):
    # Given two SMS sent at once, where the provider answers the second only after
    # the first one's result is in the database
    services = make_services(ENCORE_SEND_CONCURRENCY_SMS="2")
    sms_orders(services, 2)
    first_recorded = threading.Event()

    def answer_second_after_first_is_recorded(path: str) -> None:
        if path.endswith("0100"):
            return
        try:
            wait_until(lambda: services.deliveries("c00")[0]["state"] == "sent", timeout=JOIN_SECONDS / 2)
            first_recorded.set()
        except AssertionError:
            pass  # the first waited for the second: the test fails below

    services.http.before_answer = answer_second_after_first_is_recorded
    # When the batch is sent
    services.relay_and_send()
    # Then the first result was written without waiting for the second to arrive
    assert first_recorded.is_set()
    assert Counter(row["state"] for row in services.deliveries()) == {"sent": 2}


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_database_outage_during_a_group_write_is_waited_out_for_every_result(make_services, database_url):
    # Given 8 results queued together, and a database that goes away before they are
    # written and comes back 2 s later
    services = make_services()
    batch, claim = claimed(services, RESULTS)

    def outage() -> None:
        allow_connections(database_url, False)
        threading.Timer(2.0, allow_connections, args=(database_url, True)).start()

    try:
        # When they are written
        outcomes, _ = record_together(services, claim, batch.outgoing, before_release=outage)
    finally:
        allow_connections(database_url, True)
    # Then every thread learns its result applied, and it did
    assert outcomes == [True] * RESULTS
    assert Counter((row["state"], row["attempts"]) for row in services.deliveries()) == {("sent", 1): RESULTS}


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_an_outage_longer_than_the_lease_allows_reaches_every_waiting_thread(make_services, database_url):
    # Given 8 results queued together late in the lease (so the write's patience is
    # short), and a database that stays away
    services = make_services()
    batch, claim = claimed(services, RESULTS)
    services.clock.advance(seconds=services.runtime.settings.lease_seconds)
    try:
        # When they are written
        outcomes, _ = record_together(services, claim, batch.outgoing,
                                   before_release=lambda: allow_connections(database_url, False))
    finally:
        allow_connections(database_url, True)
    # Then no thread hangs: each one gets the database error to raise
    assert all(isinstance(outcome, OperationalError) for outcome in outcomes), outcomes
