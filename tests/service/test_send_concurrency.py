"""Many sends in flight per worker process: a slow provider is sent to by
several threads at once, never more than the configured bound, over reused
connections, and the fence still holds when a worker with several sends in flight
stalls past its lease. In-process on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
import time
from collections import Counter
from datetime import timedelta

import pytest
from sqlalchemy import select

from services.relay import claim_due_deliveries
from services.sender import send_deliveries
from store.models import Attempt
from tests.support import order_paid

HOLD_SECONDS = 10.0
"""Longest the stand-in holds a request while waiting for the others to arrive: a
safety valve for a sender that never reaches the bound (the test then fails on the
peak it saw); a correct sender releases the hold at once."""


class InFlight:
    """An HttpSink hook that counts requests being answered at once. Each request is
    held until `bound` are in flight together (once), so the peak a correct sender
    reaches is exactly its bound; a sender that exceeds it shows a higher one."""

    def __init__(self, bound: int, hold: float = HOLD_SECONDS) -> None:
        self.bound = bound
        self.hold = hold
        self.now = 0
        self.peak = 0
        self._changed = threading.Condition()

    def __call__(self, _path: str) -> None:
        with self._changed:
            self.now += 1
            self.peak = max(self.peak, self.now)
            self._changed.notify_all()
            self._changed.wait_for(lambda: self.peak >= self.bound, timeout=self.hold)
            self.now -= 1


def sms_orders(services, count: int) -> None:
    services.emit(*[order_paid(f"e{n}", customer_id=f"c{n:02d}", consent=["sms"], phone=f"+141555501{n:02d}",
                               occurred_at=services.clock(), timezone="UTC") for n in range(count)])


def test_a_slow_chat_provider_gets_several_messages_at_once_up_to_the_bound(make_services):
    # Given an SMS channel allowed 4 sends in flight per worker, and 12 due messages
    services = make_services(ENCORE_SEND_CONCURRENCY_SMS="4")
    sms_orders(services, 12)
    in_flight = InFlight(bound=4)
    services.http.before_answer = in_flight
    # When one batch is sent
    services.relay_and_send()
    # Then 4 were in flight at once, never more, and every message went out once
    assert in_flight.peak == 4
    assert sorted(Counter(r.path for r in services.http.requests).values()) == [1] * 12
    assert Counter(r["state"] for r in services.deliveries()) == {"sent": 12}


def test_the_bound_holds_when_it_is_one(make_services):
    # Given one send in flight allowed: the old behaviour, one message after another
    services = make_services(ENCORE_SEND_CONCURRENCY="1")
    sms_orders(services, 5)
    # ...and a stand-in that holds each request a moment for a second one to arrive
    in_flight = InFlight(bound=2, hold=0.3)
    services.http.before_answer = in_flight
    # When the batch is sent
    services.relay_and_send()
    # Then no second one ever came while one was in flight
    assert in_flight.peak == 1
    assert services.http.count == 5


def test_http_connections_are_kept_alive_between_messages_and_batches(make_services):
    # Given 2 sending slots for SMS
    services = make_services(ENCORE_SEND_CONCURRENCY_SMS="2")
    sms_orders(services, 10)
    # When two batches are sent, one after the other
    with services.session() as session:
        ids = claim_due_deliveries(session, services.clock(), timedelta(minutes=5))
    send_deliveries(services.runtime, ids[:5], services.clock)
    send_deliveries(services.runtime, ids[5:], services.clock)
    # Then 10 messages went over at most 2 connections (one per slot), not 10
    assert services.http.count == 10
    assert services.http.connections <= 2


def test_a_slow_smtp_server_gets_several_messages_at_once_over_one_session_per_slot(make_services):
    # Given 3 sending slots for email and an SMTP server that takes 0.2 s per recipient
    services = make_services(ENCORE_SEND_CONCURRENCY_EMAIL="3")
    services.smtp.rcpt_delay = 0.2
    services.emit(*[order_paid(f"e{n}", customer_id=f"c{n:02d}", occurred_at=services.clock(), timezone="UTC")
                    for n in range(9)])
    # When the batch is sent
    services.relay_and_send()
    # Then several messages waited at the server together, never more than 3
    assert 1 < services.smtp.peak_waiting_in_rcpt <= 3
    # ...each message arrived once, over at most one SMTP session per slot
    assert sorted(Counter(m["To"] for m in services.smtp.messages).values()) == [1] * 9
    assert services.smtp.sessions <= 3


def test_a_stalled_worker_with_sends_in_flight_neither_sends_more_nor_overwrites_the_new_owner(make_services):
    # Given worker A with 3 sends in flight allowed, and 9 due messages
    services = make_services(ENCORE_SEND_CONCURRENCY_SMS="3")
    sms_orders(services, 9)
    lease = services.runtime.settings.lease_seconds
    # A stalls as a whole process does: all 3 of its sending threads are parked in a
    # request when the stall begins (none of them can renew its lease meanwhile).
    a_in_flight = threading.Barrier(3)
    taking_over, taken_over = threading.Event(), threading.Event()

    def stall_past_the_lease_while_b_takes_over(_path: str) -> None:
        if taking_over.is_set():
            return  # B's requests, and A's after the stall
        if a_in_flight.wait(timeout=30) != 0:
            taken_over.wait(timeout=30)
            return
        taking_over.set()
        # A stalls while its requests are with the provider; the relay gives its
        # rows to worker B, who sends what A had not finished...
        services.clock.advance(seconds=lease + 1)
        services.relay_and_send()
        # ...and from now on the provider refuses: A's late answers are 503s
        services.http.respond("/sms/", [503], forever=True)
        taken_over.set()

    services.http.before_answer = stall_past_the_lease_while_b_takes_over
    # When A sends its batch
    with services.session() as session:
        ids = claim_due_deliveries(session, services.clock(), timedelta(seconds=lease))
    report = send_deliveries(services.runtime, ids, services.clock)
    # Then every delivery is sent once, by B, and A's late 503s changed nothing
    rows = services.deliveries()
    assert [(r["state"], r["attempts"]) for r in rows] == [("sent", 1)] * 9
    with services.session() as session:
        outcomes = Counter(session.execute(select(Attempt.outcome)).scalars())
    assert outcomes == {"sent": 9}
    # ...and A sent nothing after the stall: at most its in-flight messages went out twice
    per_recipient = Counter(request.path for request in services.http.requests)
    twice = [path for path, n in per_recipient.items() if n == 2]
    assert set(per_recipient.values()) <= {1, 2} and len(twice) == 3
    assert report.sent == 9 - report.lost - report.retried


@pytest.mark.parametrize("concurrency", ["1", "8"])
def test_a_rate_limit_holds_with_several_sends_in_flight(make_services, concurrency):
    # Given an SMS channel limited to 5 messages per second (burst 5)
    services = make_services(ENCORE_SEND_CONCURRENCY_SMS=concurrency, ENCORE_RATE_LIMIT_SMS="5")
    sms_orders(services, 16)
    arrivals: list[float] = []
    services.http.before_answer = lambda _path: arrivals.append(time.monotonic())
    # When the batch is sent
    services.relay_and_send()
    # Then all went out, and no second carried more than the burst plus one second's rate
    assert Counter(r["state"] for r in services.deliveries()) == {"sent": 16}
    arrivals.sort()
    busiest = max(sum(1 for t in arrivals if start <= t < start + 1.0) for start in arrivals)
    assert busiest <= 10
