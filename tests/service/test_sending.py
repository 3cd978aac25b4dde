"""The sending side under stress: stalled workers, slow providers, bad rows, database
outages, in-process on SQLite and PostgreSQL, with one send at a time and with several
in flight. Each is a way a customer would get a message twice, late, at night, or never."""

from __future__ import annotations

import threading
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, update

from services.relay import claim_due_deliveries
from services.sender import claim_batch, send_claimed, send_deliveries
from store.models import Attempt, Coupon, Delivery
from tests.service.conftest import allow_connections
from tests.support import order_paid


@pytest.fixture(params=[1, 4], ids=["serial", "4-in-flight"])
def concurrency(request) -> int:
    return request.param


@pytest.fixture()
def services(make_services, concurrency):
    return make_services(ENCORE_SEND_CONCURRENCY=str(concurrency))


def sms_order(event_id: str, customer_id: str, phone: str, occurred_at: datetime, **kwargs) -> dict:
    """A US customer reachable by SMS only, in UTC unless told (noon: daytime)."""
    return order_paid(event_id, customer_id=customer_id, consent=["sms"], phone=phone, occurred_at=occurred_at,
                      timezone=kwargs.pop("timezone", "UTC"), **kwargs)


def relay_claim(services) -> list[int]:
    """What the relay would enqueue now."""
    with services.session() as session:
        return claim_due_deliveries(session, services.clock(), timedelta(seconds=services.runtime.settings.lease_seconds))


def attempts_of(services, customer_id: str) -> list[tuple]:
    with services.session() as session:
        return session.execute(
            select(Attempt.outcome, Attempt.reason, Attempt.at).join(Delivery, Delivery.id == Attempt.delivery_id)
            .where(Delivery.customer_id == customer_id).order_by(Attempt.id)
        ).all()


def once(action):
    """A sink hook that acts on the first request only (later ones, e.g. from the
    worker that takes over, pass through)."""
    done = threading.Event()

    def hook(_path: str) -> None:
        if not done.is_set():
            done.set()
            action()

    return hook


# -- fenced claims: a stalled worker neither sends again nor overwrites ----------------------------------------------------------

def test_a_worker_that_lost_its_lease_sends_nothing_and_writes_nothing(services):
    # Given a due order, claimed by worker A
    services.emit(sms_order("e1", "c1", "+14155550101", services.clock()))
    batch_a = claim_batch(services.runtime, relay_claim(services), services.clock)
    # When A stalls past its lease, and the relay hands the row to worker B, who sends it
    services.clock.advance(seconds=services.runtime.settings.lease_seconds + 1)
    services.relay_and_send()
    assert services.http.count == 1
    # ...and A wakes up and carries on with its batch
    report = send_claimed(services.runtime, batch_a, services.clock)
    # Then A sends nothing and B's result stands
    assert report.lost == 1
    assert services.http.count == 1
    [row] = services.deliveries()
    assert (row["state"], row["attempts"]) == ("sent", 1)


@pytest.mark.parametrize("concurrency", [1])
def test_a_stalled_worker_neither_sends_its_batch_again_nor_overwrites_the_new_owner(services):
    # Given two due orders, and a provider that accepts B's two sends and refuses A's
    now = services.clock()
    services.emit(sms_order("e1", "c1", "+14155550101", now), sms_order("e2", "c2", "+14155550102", now))
    services.http.respond("/sms/", [200, 200, 503])
    lease = services.runtime.settings.lease_seconds

    def stall_past_the_lease_while_b_takes_over() -> None:
        services.clock.advance(seconds=lease + 1)
        assert services.relay_and_send() == 2

    # When worker A stalls during its first send, long enough for B to take and send both
    services.http.before_answer = once(stall_past_the_lease_while_b_takes_over)
    send_deliveries(services.runtime, relay_claim(services), services.clock)
    # Then both deliveries stay sent by B: A's late 503 does not put one back to scheduled
    rows = services.deliveries()
    assert [(r["state"], r["attempts"]) for r in rows] == [("sent", 1), ("sent", 1)]
    # ...and A did not send its second message: only the one it had in flight went out twice
    per_recipient = Counter(request.path for request in services.http.requests)
    assert sorted(per_recipient.values()) == [1, 2]
    # ...and the stale 503 left no attempt row behind
    assert [a[:2] for a in attempts_of(services, "c1") + attempts_of(services, "c2")] == [("sent", "sent")] * 2


# -- one bad row ends alone; its batch goes on ------------------------------------------------------------

def test_a_delivery_that_cannot_be_rendered_fails_alone_and_the_rest_are_sent(services):
    # Given three due orders, one of whose coupons is corrupt in the database
    services.emit(*[order_paid(f"e{n}", customer_id=f"c{n}", occurred_at=services.clock(), timezone="UTC")
                    for n in (1, 2, 3)])
    with services.session() as session:
        session.execute(update(Coupon).where(Coupon.customer_id == "c2").values(price="not-a-price"))
    # When the batch is sent
    services.relay_and_send()
    # Then the two others are sent, and the bad one ends failed with its reason, at once
    states = {row["customer_id"]: (row["state"], row["reason"]) for row in services.deliveries()}
    assert states == {"c1": ("sent", None), "c2": ("failed", "render_error"), "c3": ("sent", None)}
    assert services.smtp.count == 2
    [(outcome, reason, _)] = attempts_of(services, "c2")
    assert (outcome, reason) == ("permanent", "render_error")


# -- deadline and quiet hours at each attempt, not once per batch ---------------------------------

def test_a_slow_provider_does_not_carry_a_batch_past_its_deadline(services, concurrency):
    # Given eight orders whose 24 h deadline is 10 minutes away
    triggered = services.clock() - timedelta(hours=24) + timedelta(minutes=10)
    services.emit(*[sms_order(f"e{n}", f"c{n}", f"+1415555010{n}", triggered) for n in range(8)])
    deadline = triggered + timedelta(hours=24)
    # ...and a provider that takes 4 minutes per message
    services.http.before_answer = lambda _path: services.clock.advance(minutes=4)
    # When the batch is sent
    services.relay_and_send()
    # Then no attempt started after the deadline: the last ones end expired instead
    rows = services.deliveries()
    states = Counter((r["state"], r["reason"]) for r in rows)
    started = [at for n in range(8) for _, _, at in attempts_of(services, f"c{n}")]
    assert all(at < deadline for at in started)
    assert states[("sent", None)] == len(started) == services.http.count
    assert states[("expired", "deadline")] == 8 - len(started) >= 1
    if concurrency == 1:
        assert len(started) == 3


def test_a_slow_provider_does_not_carry_a_batch_into_quiet_hours(services, concurrency):
    # Given six customers for whom it is 20:52 (quiet hours start at 21:00), orders now
    services.clock.now = datetime(2026, 3, 10, 11, 52, tzinfo=UTC)
    zone = "Etc/GMT-9"  # UTC+9
    services.emit(*[sms_order(f"e{n}", f"c{n}", f"+1415555010{n}", services.clock(), timezone=zone) for n in range(6)])
    # ...and a provider that takes 4 minutes per message
    services.http.before_answer = lambda _path: services.clock.advance(minutes=4)
    # When the batch is sent
    services.relay_and_send()
    # Then what would start after 21:00 local waits for 08:00 local, keeping its planned due time
    with services.session() as session:
        rows = session.execute(select(Delivery.state, Delivery.due_at, Delivery.next_attempt_at)
                               .order_by(Delivery.id)).all()
    planned = datetime(2026, 3, 10, 11, 52, tzinfo=UTC)
    quiet_from = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)  # 21:00 at UTC+9
    morning = datetime(2026, 3, 10, 23, 0, tzinfo=UTC)  # 08:00 at UTC+9
    sent = [state for state, _, _ in rows if state == "sent"]
    assert len(sent) == services.http.count
    assert all(at < quiet_from for n in range(6) for _, _, at in attempts_of(services, f"c{n}"))
    assert {(state, due) for state, due, _ in rows} == {("sent", planned), ("scheduled", planned)}
    assert [next_at for state, _, next_at in rows if state == "scheduled"] == [morning] * (6 - len(sent))
    assert len(sent) == 2 if concurrency == 1 else 2 <= len(sent) < 6


# -- the planned due time stays: latency is measured from it ------------------------------------------------

def test_latency_runs_from_the_planned_due_time_and_a_retry_waits_for_its_own_time(services):
    # Given an order at noon and a provider that answers 503 once
    services.http.respond("/sms/", [503])
    services.emit(sms_order("e1", "c1", "+14155550101", services.clock()))
    services.relay_and_send()
    # When the relay runs again at once, the retry is not due yet
    assert services.relay_and_send() == 0
    # ...and two minutes later it is, and is sent
    services.clock.advance(minutes=2)
    services.relay_and_send()
    [row] = services.deliveries()
    # Then the delivery still shows the time it was due, and latency counts the retry's wait
    assert (row["state"], row["due_at"], row["sent_at"]) == ("sent", "2026-03-10T12:00:00Z", "2026-03-10T12:02:00Z")
    assert services.status()["latency_seconds"]["p50"] == 120.0


# -- a database outage while recording loses no result -----------------------------------------

OUTAGE_SECONDS = 3.0
"""Over four times the old recorder's patience (0.7 s), short enough for the suite;
the retry is bounded by the lease (minutes), not by a count."""


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_database_outage_while_recording_is_waited_out_and_nothing_is_sent_twice(services, database_url):
    def outage() -> None:
        allow_connections(database_url, False)
        threading.Timer(OUTAGE_SECONDS, allow_connections, args=(database_url, True)).start()

    # Given a due order, and a database that goes away while the provider accepts it
    services.emit(sms_order("e1", "c1", "+14155550101", services.clock()))
    services.http.before_answer = once(outage)
    try:
        # When it is sent
        services.relay_and_send()
    finally:
        allow_connections(database_url, True)
    # Then the result was recorded once the database came back
    [row] = services.deliveries()
    assert (row["state"], row["attempts"]) == ("sent", 1)
    # ...and nothing is sent again, even after the lease
    services.clock.advance(seconds=services.runtime.settings.lease_seconds + 1)
    services.relay_and_send()
    assert services.http.count == 1


# -- rule 12: a provider incident never fails a delivery before its deadline --------------

def next_attempt_at(services, customer_id: str) -> datetime:
    with services.session() as session:
        return session.scalar(select(Delivery.next_attempt_at).where(Delivery.customer_id == customer_id))


def retry_when_due(services, customer_id: str) -> None:
    """Move the clock to the delivery's next attempt and let the relay and a sender run;
    fails if the delivery is no longer waiting for one."""
    [row] = services.deliveries(customer_id)
    assert row["state"] == "scheduled", row
    services.clock.now = max(services.clock(), next_attempt_at(services, customer_id))
    services.relay_and_send()


def channels_attempted(services, customer_id: str) -> list[str]:
    with services.session() as session:
        return list(session.scalars(select(Attempt.channel).join(Delivery, Delivery.id == Attempt.delivery_id)
                                    .where(Delivery.customer_id == customer_id).order_by(Attempt.id)))


def buyer_on_email_and_sms_while_both_refuse(make_services, attempts_per_channel: str, sms_status: int):
    """A customer on email and SMS, a relay answering 451, an SMS provider answering `sms_status`."""
    services = make_services(ENCORE_MAX_ATTEMPTS_PER_CHANNEL=attempts_per_channel)
    services.smtp.refuse_everyone(451)
    services.http.respond("/sms/", [sms_status], forever=True)
    services.emit(order_paid("e1", customer_id="c1", consent=["email", "sms"], phone="+14155550101",
                             occurred_at=services.clock(), timezone="UTC"))
    return services


def attempted_after(services, count: int) -> list[str]:
    """Retry whenever due until `count` attempts were made; their channels."""
    while len(channels_attempted(services, "c1")) < count:
        retry_when_due(services, "c1")
    return channels_attempted(services, "c1")


def test_after_each_channel_had_its_attempts_they_take_turns_until_one_recovers(make_services):
    # Given email and SMS both refusing transiently (451, 503), three attempts per channel
    services = buyer_on_email_and_sms_while_both_refuse(make_services, "3", 503)
    # When each channel had its three attempts, and four more went round
    # Then email and SMS took turns, one attempt each, and the delivery is still waiting
    assert attempted_after(services, 10) == ["email"] * 3 + ["sms"] * 3 + ["email", "sms"] * 2
    [row] = services.deliveries()
    assert (row["state"], row["reason"]) == ("scheduled", "http_503")
    # ...and when the email relay recovers, email's next turn sends it
    services.smtp.accept_everyone()
    while services.smtp.count == 0:
        retry_when_due(services, "c1")
    assert services.deliveries()[0]["state"] == "sent"
    assert channels_attempted(services, "c1")[-1] == "email"
    assert services.smtp.count == 1


def test_a_channel_refused_for_good_is_dropped_and_the_transient_one_keeps_its_turns(make_services):
    # Given a relay answering 451, and an SMS provider that refuses the number (400)
    services = buyer_on_email_and_sms_while_both_refuse(make_services, "2", 400)
    # When it was refused a few times
    # Then SMS was tried once and never again, and email keeps being retried
    assert attempted_after(services, 6) == ["email", "email", "sms", "email", "email", "email"]
    [row] = services.deliveries()
    assert (row["state"], row["reason"]) == ("scheduled", "smtp_4xx")


@pytest.mark.parametrize("ended_by", ["sender", "expiry sweep"])
def test_a_delivery_retried_all_day_ends_expired_at_its_deadline_with_the_providers_reason(make_services, ended_by):
    from services.expiry import expire_overdue

    services = make_services()
    # Given an SMS-only customer and a provider that answers 503 all day
    services.http.respond("/sms/", [503], forever=True)
    services.emit(sms_order("e1", "c1", "+14155550101", services.clock()))
    deadline = services.clock() + timedelta(hours=24)
    # When the relay and a sender retry it whenever it is due, until no retry fits
    while next_attempt_at(services, "c1") < deadline:
        retry_when_due(services, "c1")
    # ...and the deadline comes, meeting a sender or the expiry sweep first
    services.clock.now = deadline
    if ended_by == "sender":
        services.relay_and_send()
    else:
        with services.session() as session:
            assert expire_overdue(session, services.clock()) == 1
    # Then it ends expired with the provider's reason, after attempts all day, none after the deadline
    [row] = services.deliveries()
    assert (row["state"], row["reason"], row["sent_at"]) == ("expired", "http_503", None)
    attempts = [at for _, _, at in attempts_of(services, "c1")]
    assert len(attempts) > 20 and max(attempts) < deadline
    assert services.http.count == len(attempts)


def test_dead_letters_list_a_failure_stored_before_masking_without_the_customers_number(services):
    from services.dead_letters import list_dead_letters

    # Given a delivery that failed, whose attempt row was written by an older version unmasked
    services.http.respond("/sms/", [400], forever=True)
    services.emit(sms_order("e1", "c1", "+14155550101", services.clock()))
    services.relay_and_send()
    with services.session() as session:
        session.execute(update(Attempt).values(detail="The 'To' number +14155550101 is not a valid phone number"))
    # When the operator lists the dead letters
    with services.session() as session:
        [letter] = list_dead_letters(session)
    # Then the number is masked there too
    assert letter["raw"] == "The 'To' number +1*** is not a valid phone number"
