"""Delivery when things go wrong (SPEC rules 9–14) on PostgreSQL + Redis with a
real worker process, a real SMTP server and HTTP endpoints that fail on purpose."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select, update

from services.redemption import redeem
from store.db import session_scope
from store.models import Attempt, DeadLetter, Delivery, InboxEvent
from tests.support import codes_at, order_paid, running_stack, stream_ended, wait_until, zone_where_local_hour_is





def day() -> str:
    return zone_where_local_hour_is(13)


def night() -> str:
    return zone_where_local_hour_is(23)


def sms_order(event_id: str, customer_id: str, **kwargs) -> dict:
    """A US customer reachable by SMS only."""
    return order_paid(event_id, customer_id=customer_id, consent=["sms"], phone="+14155550100",
                      timezone=kwargs.pop("timezone", day()), **kwargs)


def attempts_of(stack, delivery_id: int) -> list[tuple]:
    return stack.query(select(Attempt.channel, Attempt.outcome, Attempt.reason, Attempt.at)
                       .where(Attempt.delivery_id == delivery_id).order_by(Attempt.id))


def make_due_now(stack, customer_id: str) -> None:
    """Stand in for the clock reaching the customer's morning."""
    with session_scope(stack.runtime.database_url) as session:
        session.execute(update(Delivery).where(Delivery.customer_id == customer_id)
                        .values(due_at=datetime.now(UTC) - timedelta(seconds=1),
                                next_attempt_at=datetime.now(UTC) - timedelta(seconds=1)))


# -- rule 12: failures, retries, fallbacks ------------------------------------------

def test_two_503s_then_200_is_sent_on_the_third_attempt(stack):
    # Given an SMS provider that answers 503 twice, then 200
    stack.http.respond("/sms/", [503, 503])
    # When a customer reachable only by SMS orders
    stack.emit(sms_order("e-503", "ivy"))
    # Then the third attempt delivers it, on the same channel
    [row] = stack.wait_for_states(1, ("sent",))
    assert (row["channel"], row["attempts"]) == ("sms", 3)
    assert [(c, o, r) for c, o, r, _ in attempts_of(stack, row["id"])] == [
        ("sms", "transient", "http_503"), ("sms", "transient", "http_503"), ("sms", "sent", "sent")]
    assert stack.http.count == 3


def test_400_on_whatsapp_falls_back_to_sms_at_once(stack):
    # Given a Brazilian customer on WhatsApp and SMS, and a WhatsApp provider that refuses them
    stack.http.respond("/whatsapp/", [400], forever=True)
    event = order_paid("e-400", customer_id="joa", country="BR", currency="BRL", consent=["whatsapp", "sms"],
                       whatsapp="+5511912345678", phone="+5511912345678", timezone=day())
    stack.emit(event)
    # Then SMS delivers it, after exactly one WhatsApp attempt
    [row] = stack.wait_for_states(1, ("sent",))
    assert row["channel"] == "sms"
    assert [(c, o) for c, o, _, _ in attempts_of(stack, row["id"])] == [("whatsapp", "permanent"), ("sms", "sent")]


@pytest.mark.parametrize("stack", [{"ENCORE_MAX_ATTEMPTS_PER_CHANNEL": "3"}], indirect=True)
def test_503_past_the_attempts_per_channel_keeps_retrying_the_only_channel(stack):
    # Given a customer reachable by SMS only, and an SMS provider that keeps answering 503
    stack.http.respond("/sms/", [503], forever=True)
    stack.emit(sms_order("e-down", "kit"))
    # When it has refused more often than the attempts per channel (3)
    wait_until(lambda: len(stack.http.requests) >= 5, timeout=60)
    # Then the delivery is still waiting for its next retry, with the provider's reason
    [row] = stack.deliveries()
    assert (row["state"] in ("scheduled", "sending"), row["reason"], row["sent_at"]) == (True, "http_503", None)
    assert {(c, o, r) for c, o, r, _ in attempts_of(stack, row["id"])} == {("sms", "transient", "http_503")}


def test_a_permanent_refusal_on_the_only_channel_ends_failed_with_its_reason(stack):
    stack.http.respond("/sms/", [400], forever=True)
    stack.emit(sms_order("e-refused", "kim"))
    [row] = stack.wait_for_states(1, ("failed",))
    assert (row["reason"], row["attempts"], row["sent_at"]) == ("http_400", 1, None)


def attempts_per_delivery(stack) -> list[int]:
    return [n for _, n in stack.query(select(Attempt.delivery_id, func.count()).group_by(Attempt.delivery_id))]


def test_an_smtp_relay_refusing_451_past_the_attempts_per_channel_loses_no_buyer(stack):
    buyers = 20
    # Given an email-only audience and an SMTP relay in an incident: 451 to every recipient
    stack.smtp.refuse_everyone(451)
    stack.emit(*[order_paid(f"e-451-{i}", customer_id=f"inc-{i:02d}", timezone=day()) for i in range(buyers)])
    # When every delivery was refused more often than ENCORE_MAX_ATTEMPTS_PER_CHANNEL (5)
    wait_until(lambda: len(counts := attempts_per_delivery(stack)) == buyers and min(counts) > 5, timeout=90)
    assert {row["state"] for row in stack.deliveries()} <= {"scheduled", "sending"}
    assert stack.smtp.count == 0
    # ...and the relay recovers
    stack.smtp.accept_everyone()
    # Then every buyer gets the coupon, once, and no delivery failed
    rows = stack.wait_for_states(buyers, ("sent",), timeout=90)
    assert stack.smtp.wait_for(buyers, timeout=10)
    assert codes_at(stack.smtp) == Counter({row["code"]: 1 for row in rows})
    assert all(row["attempts"] > 6 and row["channel"] == "email" for row in rows)


def test_a_refusal_quoting_the_customers_address_is_stored_and_listed_without_it(stack):
    # Given a relay whose refusal quotes the mailbox, as Postfix does
    address = "jane.private.doe@example.com"
    stack.smtp.refuse(address, 550, f"5.1.1 <{address}>: Recipient address rejected")
    # When an email-only customer with that address orders
    stack.emit(order_paid("e-jane", customer_id="jane", email=address, timezone=day()))
    [row] = stack.wait_for_states(1, ("failed",))
    # Then the attempt row keeps the status codes and the domain, not the mailbox
    [detail] = [d for (d,) in stack.query(select(Attempt.detail).where(Attempt.delivery_id == row["id"]))]
    assert detail == "recipient refused: 550 5.1.1 <***@example.com>: Recipient address rejected"
    # ...and so does what `encore dead-letters --json` prints, and the worker's log
    listed = subprocess.run([sys.executable, "-m", "workers.cli", "dead-letters", "--json"], env=stack.worker.env,
                            capture_output=True, text=True, timeout=120)
    assert listed.returncode == 0, listed.stderr
    [letter] = json.loads(listed.stdout)
    assert (letter["id"], letter["reason"], letter["raw"]) == (f"D{row['id']}", "invalid_address", detail)
    assert "jane.private" not in listed.stdout + listed.stderr + stack.worker.log()


@pytest.mark.parametrize("stack", [{"ENCORE_RETRY_BASE_SECONDS": "2", "ENCORE_MAX_ATTEMPTS_PER_CHANNEL": "50"}],
                         indirect=True)
def test_retries_never_run_past_the_deadline(stack):
    # Given an order whose 24 h deadline is 15 seconds away (room for a busy machine
    # to make the first attempt), and a provider that is down
    stack.http.respond("/sms/", [503], forever=True)
    occurred = datetime.now(UTC) - timedelta(hours=24) + timedelta(seconds=15)
    stack.emit(sms_order("e-late", "lou", occurred_at=occurred))
    # Then it is retried while a retry fits, waits for its deadline when the next would
    # not, and ends expired there with the provider's reason (not failed before it)
    [row] = stack.wait_for_states(1, ("failed", "expired"), timeout=45)
    assert (row["state"], row["reason"]) == ("expired", "http_503")
    deadline = datetime.fromisoformat(row["deadline_at"].replace("Z", "+00:00"))
    attempts = attempts_of(stack, row["id"])
    assert len(attempts) >= 2
    assert all(at <= deadline for *_, at in attempts)


def test_retry_after_is_respected(stack):
    # Given a provider that says "come back in 3 seconds", and notes, by its own clock,
    # whether each request came before or after its window reopened
    stack.http.respond("/sms/", [(429, {"Retry-After": "3"})])
    reopens_at: list[float] = []
    after_window: list[bool] = []

    def provider(path: str) -> None:
        if path.startswith("/sms/"):
            now = time.monotonic()
            after_window.append(bool(reopens_at) and now >= reopens_at[0])
            if not reopens_at:
                reopens_at.append(now + 3)  # what its 429 to this first request says

    stack.http.before_answer = provider
    stack.emit(sms_order("e-429", "max"))
    [row] = stack.wait_for_states(1, ("sent",), timeout=30)
    (_, _, reason, _), (_, outcome, _, _) = attempts_of(stack, row["id"])
    # Then the retry came after the window reopened, not on the 0.2 s backoff
    assert (reason, outcome) == ("http_429", "sent")
    assert after_window == [False, True]


# -- rules 9, 10, 11: cap, consent, refunds ---------------------------------------

def test_a_second_trigger_within_24_hours_is_suppressed(stack):
    zone = day()
    stack.emit(order_paid("e-cap1", customer_id="ned", order_id="o-cap1", timezone=zone))
    stack.wait_for_states(1, ("sent",))
    stack.emit(order_paid("e-cap2", customer_id="ned", order_id="o-cap2", timezone=zone))
    rows = stack.wait_for_states(2, ("sent", "suppressed"))
    assert sorted((r["state"], r["reason"]) for r in rows) == [("sent", None), ("suppressed", "frequency_cap")]
    assert stack.smtp.count == 1


def test_an_opt_out_reaches_a_delivery_already_scheduled(stack):
    # Given a delivery waiting for the customer's morning
    stack.emit(order_paid("e-opt", customer_id="oli", timezone=night()))
    stack.wait_for_states(1, ("scheduled",))
    # When the customer opts out of email, then morning comes
    stack.emit({"id": "e-opt-out", "type": "customer.opted_out", "occurred_at": _now(),
                "data": {"customer_id": "oli", "channels": ["email"]}})
    wait_until(lambda: all_events_applied(stack))
    make_due_now(stack, "oli")
    # Then nothing is sent: no usable channel is left
    [row] = stack.wait_for_states(1, ("suppressed",))
    assert row["reason"] == "no_channel"
    assert stack.smtp.count == 0


def test_a_refund_before_sending_cancels_the_delivery(stack):
    stack.emit(order_paid("e-ref", customer_id="pam", order_id="o-ref", timezone=night()))
    stack.wait_for_states(1, ("scheduled",))
    stack.emit({"id": "e-ref-r", "type": "order.refunded", "occurred_at": _now(), "data": {"order_id": "o-ref"}})
    [row] = stack.wait_for_states(1, ("cancelled",))
    assert row["reason"] == "refunded"


def test_a_refund_after_sending_voids_the_coupon(stack):
    stack.emit(order_paid("e-void", customer_id="quin", order_id="o-void", timezone=day()))
    [row] = stack.wait_for_states(1, ("sent",))
    stack.emit({"id": "e-void-r", "type": "order.refunded", "occurred_at": _now(), "data": {"order_id": "o-void"}})
    wait_until(lambda: stack.deliveries()[0]["void"])
    with session_scope(stack.runtime.database_url) as session:
        assert redeem(session, row["code"], "o-next", datetime.now(UTC)).status == "void"


def test_a_stream_with_some_orders_refunded_still_sends_to_the_others(stack):
    zone = day()
    stack.emit(order_paid("e-s1", customer_id="ray", order_id="o-s1", stream_id="st", timezone=zone),
               order_paid("e-s2", customer_id="sue", order_id="o-s2", stream_id="st", timezone=zone),
               {"id": "e-s1-r", "type": "order.refunded", "occurred_at": _now(), "data": {"order_id": "o-s1"}})
    wait_until(lambda: all_events_applied(stack))
    stack.emit(stream_ended("e-st-end", "st"))
    [row] = stack.wait_for_states(1, ("sent",))
    assert row["customer_id"] == "sue"


@pytest.mark.parametrize("stack", [{"ENCORE_RATE_LIMIT_SMS": "4"}], indirect=True)
def test_a_channel_rate_limit_holds_across_worker_processes(stack):
    # Given an SMS provider allowed 4 messages per second, and two worker processes
    zone = day()
    # The provider keeps its own bucket by its own clock: 4 tokens a second, and room for the
    # burst (4) plus one second of arrival jitter; a request that finds no token is over its limit
    bucket = {"tokens": 8.0, "at": None}
    over_limit: list[str] = []
    lock = threading.Lock()

    def provider(path: str) -> None:
        if not path.startswith("/sms/"):
            return
        with lock:
            now = time.monotonic()
            if bucket["at"] is not None:
                bucket["tokens"] = min(8.0, bucket["tokens"] + (now - bucket["at"]) * 4)
            bucket["at"] = now
            if bucket["tokens"] < 1:
                over_limit.append(path)
            else:
                bucket["tokens"] -= 1

    stack.http.before_answer = provider
    stack.emit(*[sms_order(f"e-rl{i}", f"rl-{i:02d}", timezone=zone) for i in range(20)])
    rows = stack.wait_for_states(20, ("sent",), timeout=60)
    times = sorted(at for (at,) in stack.query(select(Attempt.at).where(Attempt.outcome == "sent")))
    # Then every message came after the provider had a token for it...
    assert len(rows) == 20 and over_limit == []
    # ...and no second ever carried more than the burst (4) plus one second's rate (4)
    busiest = max(sum(1 for t in times if start <= t < start + timedelta(seconds=1)) for start in times)
    assert busiest <= 8


# -- rule 13: redemption ------------------------------------------------------------

@pytest.mark.parametrize("database", ["postgres", "sqlite"])
def test_concurrent_redemptions_of_one_code_let_exactly_one_win(database, request, tmp_path, monkeypatch):
    # Given a sent coupon (planned through the real pipeline, sent on the embedded broker)
    url = request.getfixturevalue("postgres_url") if database == "postgres" else f"sqlite:///{tmp_path / 'r.db'}"
    with running_stack(monkeypatch, data_dir=tmp_path, database_url=url,
                       broker_url=f"sqla+sqlite:///{tmp_path / 'broker.db'}") as stack:
        stack.emit(order_paid("e-red", customer_id="tim", timezone=day()))
        [row] = stack.wait_for_states(1, ("sent",))
    # When eight shoppers redeem it at the same instant
    barrier = threading.Barrier(8)
    results: list[str] = []

    def attempt(n: int) -> None:
        barrier.wait()
        with session_scope(url) as session:
            results.append(redeem(session, row["code"].lower(), f"order-{n}", datetime.now(UTC)).status)

    threads = [threading.Thread(target=attempt, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # Then exactly one wins and the others hear why
    assert Counter(results) == {"redeemed": 1, "already_redeemed": 7}


def test_redemption_refuses_unknown_and_expired_codes(postgres_url):
    from store.db import engine_for

    engine_for(postgres_url)
    with session_scope(postgres_url) as session:
        assert redeem(session, "AAAAA-BBBBB-CCCCC", "o", datetime.now(UTC)).status == "unknown"
        assert redeem(session, "not a code", "o", datetime.now(UTC)).status == "unknown"


# -- crash safety -----------------------------------------------------------------

def all_events_applied(stack) -> bool:
    return stack.query(select(func.count()).select_from(InboxEvent).where(InboxEvent.processed_at.is_(None))) == [(0,)]


def end_stream_with_buyers(stack, stream_id: str, buyers: int) -> None:
    zone = day()
    stack.emit(*[order_paid(f"e-{stream_id}-{i}", customer_id=f"{stream_id}-{i:03d}", stream_id=stream_id,
                            timezone=zone) for i in range(buyers)])
    wait_until(lambda: all_events_applied(stack), timeout=60)
    stack.emit(stream_ended(f"e-{stream_id}-end", stream_id))


def codes_received(stack, count: int) -> Counter:
    assert stack.smtp.wait_for(count, timeout=10)
    return codes_at(stack.smtp)


@pytest.mark.parametrize("stack", [{"ENCORE_LEASE_SECONDS": "3"}], indirect=True)
def test_a_killed_worker_and_a_flushed_redis_still_send_each_coupon_once(stack, redis_url):
    import redis

    buyers = 300
    # Given a stream with 300 buyers and an SMTP provider that takes 50 ms per recipient
    stack.smtp.rcpt_delay = 0.05
    end_stream_with_buyers(stack, "crash", buyers)
    # When the worker is killed with SIGKILL in the middle of sending, its senders held
    # by the provider before it accepted anything
    stack.hold_smtp_until_settled(senders_waiting=1, after=40)
    stack.worker.kill()
    sent_before_crash = stack.smtp.count
    assert sent_before_crash < buyers
    # ...restarted, and Redis loses every queued message
    redis.Redis.from_url(redis_url).flushdb()
    stack.smtp.release_recipients()
    stack.worker.start()
    # Then every buyer ends with exactly one sent delivery
    rows = stack.wait_for_states(buyers, ("sent",), timeout=120)
    assert Counter(r["customer_id"] for r in rows) == {f"crash-{i:03d}": 1 for i in range(buyers)}
    # ...and the provider saw each code exactly once
    assert codes_received(stack, buyers) == Counter({r["code"]: 1 for r in rows})


@pytest.mark.parametrize("stack", [{"ENCORE_LEASE_SECONDS": "3"}], indirect=True)
def test_dropped_database_connections_mid_send_still_send_each_coupon_once(stack, postgres_url):
    import psycopg

    buyers = 120
    stack.smtp.rcpt_delay = 0.02
    end_stream_with_buyers(stack, "drop", buyers)
    # When every worker connection to PostgreSQL is cut, three times while sending
    dbname = postgres_url.rsplit("/", 1)[1]
    admin = postgres_url.rsplit("/", 1)[0] + "/test"
    for threshold in (10, 40, 80):
        wait_until(lambda threshold=threshold: stack.smtp.count >= threshold, timeout=60)
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                         "WHERE datname = %s AND pid <> pg_backend_pid()", (dbname,))
    # Then every buyer still gets exactly one message
    rows = stack.wait_for_states(buyers, ("sent",), timeout=120)
    assert codes_received(stack, buyers) == Counter({r["code"]: 1 for r in rows})


# -- rule 14: bad input never stops a worker or loses an event -----------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=12,
)


def _mutated_order(draw_value, field: str, n: int) -> str:
    event = order_paid(f"fz-{n}", customer_id=f"fz-{n}", timezone=day())
    target, key = {"id": (event, "id"), "type": (event, "type"), "occurred_at": (event, "occurred_at"),
                   "currency": (event["data"], "currency"), "customer": (event["data"], "customer"),
                   "items": (event["data"], "items"), "country": (event["data"]["customer"], "country"),
                   "consent": (event["data"]["customer"], "consent")}[field]
    target[key] = draw_value
    return json.dumps(event)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batch=st.lists(
    st.one_of(
        st.text(max_size=60),
        json_values.map(json.dumps),
        st.tuples(json_values, st.sampled_from(["id", "type", "occurred_at", "currency", "customer", "items",
                                                 "country", "consent"]), st.integers(0, 10**6))
        .map(lambda t: _mutated_order(*t)),
    ), min_size=1, max_size=6))
def test_random_and_malformed_events_are_each_accepted_or_dead_lettered(stack, batch):
    before_events = stack.query(select(func.count()).select_from(InboxEvent))[0][0]
    before_letters = stack.query(select(func.count()).select_from(DeadLetter))[0][0]
    lines = [line.replace("\n", " ") for line in batch]
    report = stack.emit(*lines)
    # Every non-blank line is counted once, as accepted or as rejected with a reason
    assert report.accepted + report.rejected == sum(1 for line in lines if line.strip())
    assert all(reason for _, reason in report.rejected_lines)
    after_letters = stack.query(select(func.count()).select_from(DeadLetter))[0][0]
    assert after_letters - before_letters == report.rejected
    assert stack.query(select(func.count()).select_from(InboxEvent))[0][0] - before_events <= report.accepted
    # ...and the worker keeps applying events
    wait_until(lambda: all_events_applied(stack), timeout=30)
    assert stack.worker.process.poll() is None


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
