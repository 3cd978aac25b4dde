"""The guarantees still hold with many sends in flight per worker, on PostgreSQL +
Redis with a real `encore worker`: a send longer than the lease keeps its rows, a
worker killed with many messages in flight (and Redis flushed) still sends each code
once, and an HTTP provider that answers 503 for a while gets every message once
after it recovers, within its deadline. Small versions of `python -m bench crash`
and `python -m bench outage`; they assert correctness, never durations."""

from __future__ import annotations

from collections import Counter
from datetime import datetime

import pytest
from sqlalchemy import func, select

from store.models import InboxEvent
from tests.support import codes_at, order_paid, stream_ended, wait_until, zone_where_local_hour_is





def codes_at_the_smtp_server(stack) -> Counter:
    return codes_at(stack.smtp)


def buyers_of_a_stream(stack, stream_id: str, buyers: int) -> None:
    zone = zone_where_local_hour_is(13)
    stack.emit(*[order_paid(f"e-{stream_id}-{i}", customer_id=f"{stream_id}-{i:03d}", stream_id=stream_id,
                            timezone=zone) for i in range(buyers)])
    wait_until(lambda: stack.query(select(func.count()).select_from(InboxEvent)
                                   .where(InboxEvent.processed_at.is_(None))) == [(0,)], timeout=60)
    stack.emit(stream_ended(f"e-{stream_id}-end", stream_id))


@pytest.mark.parametrize("stack", [{"ENCORE_LEASE_SECONDS": "2", "ENCORE_SEND_CONCURRENCY": "1"}], indirect=True)
def test_a_send_longer_than_the_lease_keeps_its_rows_while_its_worker_lives(stack):
    # Given a 2 s lease, one send in flight per worker child, and an SMTP server that
    # takes 3 s per recipient: each batch outlives its lease
    stack.smtp.rcpt_delay = 3.0
    zone = zone_where_local_hour_is(13)
    # When two orders are sent in one batch
    stack.emit(*[order_paid(f"e-slow-{i}", customer_id=f"slow-{i}", timezone=zone) for i in range(2)])
    rows = stack.wait_for_states(2, ("sent",), timeout=60)
    # Then the relay never handed the rows to the other child: each went out once
    assert sorted(codes_at_the_smtp_server(stack).values()) == [1, 1]
    assert [r["attempts"] for r in rows] == [1, 1]


@pytest.mark.parametrize("stack", [{"ENCORE_LEASE_SECONDS": "3", "ENCORE_SEND_CONCURRENCY": "8"}], indirect=True)
def test_a_worker_killed_with_many_sends_in_flight_and_a_flushed_redis_still_send_each_code_once(stack, redis_url):
    import redis

    buyers = 400
    # Given a stream with 400 buyers, 2 worker children with 8 sends in flight each,
    # and an SMTP server that takes 50 ms per recipient
    stack.smtp.rcpt_delay = 0.05
    buyers_of_a_stream(stack, "crash", buyers)
    # When the server starts holding every new message, so that the senders pile up
    # in flight, and everything it accepted is recorded (the one duplicate window, a
    # message accepted but not yet recorded, is documented and not this test's subject)
    stack.hold_smtp_until_settled(senders_waiting=8, after=60)
    # ...the worker is killed with SIGKILL
    stack.worker.kill()
    sent_before_crash = stack.smtp.count
    assert sent_before_crash < buyers
    # ...Redis loses every queued message, and the worker and the server come back
    redis.Redis.from_url(redis_url).flushdb()
    stack.smtp.release_recipients()
    stack.worker.start()
    # Then every buyer ends with exactly one sent delivery
    rows = stack.wait_for_states(buyers, ("sent",), timeout=120)
    assert Counter(r["customer_id"] for r in rows) == {f"crash-{i:03d}": 1 for i in range(buyers)}
    # ...and the server accepted each code exactly once
    assert stack.smtp.wait_for(buyers, timeout=10)
    assert codes_at_the_smtp_server(stack) == Counter({r["code"]: 1 for r in rows})


@pytest.mark.parametrize("stack", [{"ENCORE_SEND_CONCURRENCY": "4", "ENCORE_MAX_ATTEMPTS_PER_CHANNEL": "50"}],
                         indirect=True)
def test_an_http_provider_that_answers_503_for_a_while_gets_every_message_once_after_it_recovers(stack):
    buyers = 40
    # Given an SMS provider that answers 503 to everything
    stack.http.respond("/sms/", [503], forever=True)
    zone = zone_where_local_hour_is(13)
    stack.emit(*[order_paid(f"e-out-{i}", customer_id=f"out-{i:02d}", consent=["sms"], phone=f"+141555502{i:02d}",
                            timezone=zone) for i in range(buyers)])
    # When every delivery has been refused at least once
    wait_until(lambda: len({r.path for r in stack.http.requests}) == buyers, timeout=60)
    assert stack.sent_count() == 0
    # ...and the provider recovers
    recovered_at = datetime.now().astimezone().replace(microsecond=0)  # sent_at is shown in whole seconds
    stack.http.respond("/sms/", [])
    # Counted after the switch: every request recorded later is answered 200
    refused = stack.http.count
    # Then every delivery is sent, once, after the recovery and before its deadline
    rows = stack.wait_for_states(buyers, ("sent",), timeout=120)
    for row in rows:
        sent_at = datetime.fromisoformat(row["sent_at"].replace("Z", "+00:00"))
        assert recovered_at <= sent_at < datetime.fromisoformat(row["deadline_at"].replace("Z", "+00:00"))
        assert row["attempts"] >= 2
    after_recovery = Counter(r.path for r in stack.http.requests[refused:])
    assert set(after_recovery.values()) <= {1}
