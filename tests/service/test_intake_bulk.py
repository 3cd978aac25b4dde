"""Intake speed: consecutive order.paid events are applied together (one
customer upsert, one order insert, one early-refund look-up), with exactly the result
of applying them one by one, each bad one still isolated, and a statement count that
does not grow with the batch."""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from datetime import timedelta

import pytest
from sqlalchemy import select

from services.intake import apply_events
from services.ports import APPLY_EVENTS
from store.models import Customer, DeadLetter, Order, PendingRefund
from tests.service.conftest import apply_while_another_batch_is_open, executed_statements, store_only
from tests.support import RecordingDoorbell, iso, order_paid, stream_ended


def event(kind: str, event_id: str, occurred_at, **data) -> dict:
    return {"id": event_id, "type": kind, "occurred_at": iso(occurred_at), "data": data}


def scenario(p: str, now) -> list[dict]:
    """A day of one shop, every id prefixed with `p`: repeat customers whose consent
    changes, an opt-out between their orders, a refund that overtakes its order, the same
    order under a second event id, a stream that ends between two of its orders, a
    stream that has not ended, and plain orders."""
    h = lambda hours: now - timedelta(hours=hours)  # noqa: E731
    return [
        order_paid(f"{p}e1", order_id=f"{p}o1", customer_id=f"{p}c1", occurred_at=h(5), consent=["email", "sms"],
                   phone="+12025550101", timezone="UTC"),
        event("customer.opted_out", f"{p}stop", h(4.5), customer_id=f"{p}c1", channels=["sms"]),
        order_paid(f"{p}e2", order_id=f"{p}o2", customer_id=f"{p}c1", occurred_at=h(4), consent=["email", "sms"],
                   name="Ann New", timezone="UTC"),
        order_paid(f"{p}e3", order_id=f"{p}o3", customer_id=f"{p}c2", occurred_at=h(3.9), consent=["sms"],
                   phone="+12025550102", timezone="UTC"),
        order_paid(f"{p}e3-again", order_id=f"{p}o3", customer_id=f"{p}c2", occurred_at=h(3.85), consent=["email"],
                   timezone="UTC"),
        order_paid(f"{p}e4", order_id=f"{p}o4", customer_id=f"{p}c2", occurred_at=h(3.8), consent=["email"],
                   name="Bob", timezone="UTC"),
        event("order.refunded", f"{p}r5", h(6), order_id=f"{p}o5"),
        order_paid(f"{p}e5", order_id=f"{p}o5", customer_id=f"{p}c3", occurred_at=h(3.7), timezone="UTC"),
        order_paid(f"{p}e6", order_id=f"{p}o6", customer_id=f"{p}c4", stream_id=f"{p}s1", occurred_at=h(3.6),
                   timezone="UTC"),
        stream_ended(f"{p}end", f"{p}s1", h(3.5)),
        order_paid(f"{p}e7", order_id=f"{p}o7", customer_id=f"{p}c5", stream_id=f"{p}s1", occurred_at=h(3.4),
                   timezone="UTC"),
        order_paid(f"{p}e7b", order_id=f"{p}o7b", customer_id=f"{p}c5", stream_id=f"{p}s1", occurred_at=h(3.35),
                   items=[{"sku": "serum", "name": "Serum", "unit_price": "90.00", "quantity": 2}], timezone="UTC"),
        order_paid(f"{p}e8", order_id=f"{p}o8", customer_id=f"{p}c6", stream_id=f"{p}s2", occurred_at=h(3.3),
                   timezone="UTC"),
        *[order_paid(f"{p}e{n}", order_id=f"{p}o{n}", customer_id=f"{p}c{n}", occurred_at=h(3 - n / 10),
                     timezone="UTC") for n in range(9, 15)],
        order_paid(f"{p}e15", order_id=f"{p}o15", customer_id=f"{p}c9", occurred_at=h(1), consent=[],
                   timezone="UTC"),
    ]


def outcome(services, p: str) -> str:
    """Everything a user could see of the scenario, with the prefix taken out."""
    with services.session() as session:
        customers = [
            {"id": c.id, "name": c.name, "email": c.email, "phone": c.phone, "consent": c.consent,
             "opted_out": c.opted_out, "changes": c.consent_changes, "updated_at": iso(c.updated_at)}
            for c in session.scalars(select(Customer).where(Customer.id.startswith(p)).order_by(Customer.id))]
        orders = [(o.id, o.event_id, o.customer_id, o.stream_id, o.refunded_at is not None, o.coupon_id is not None)
                  for o in session.scalars(select(Order).where(Order.id.startswith(p)).order_by(Order.id))]
        pending = list(session.scalars(select(PendingRefund.order_id).where(PendingRefund.order_id.startswith(p))))
    deliveries = sorted(
        (d["customer_id"], d["state"], d["reason"], d["offer"]["type"], d["offer"]["sku"], d["trigger"], d["trigger_at"])
        for d in services.deliveries() if d["customer_id"].startswith(p))
    text = json.dumps({"customers": customers, "orders": orders, "pending": pending, "deliveries": deliveries},
                      indent=1, sort_keys=True, default=str)
    return text.replace(p, "P_")


def test_a_batch_applied_together_ends_exactly_as_applied_one_by_one(services, monkeypatch, caplog):
    import services.intake as intake

    now = services.clock()
    # Given the same day of events twice, under two prefixes, each stored as one batch
    together, alone = scenario("pa_", now), scenario("pb_", now)
    # When one batch is applied with its orders together
    with caplog.at_level(logging.WARNING, logger="services.intake"):
        assert services.emit(*together) == []
    assert "one by one" not in caplog.text  # the bulk path did it, not the fallback
    # and the other one event at a time (the fallback, as every event was applied before)
    real = intake._orders_paid

    def one_at_a_time(session, events, now):
        if len(events) > 1:
            raise RuntimeError("apply these one by one")
        return real(session, events, now)

    monkeypatch.setattr(intake, "_orders_paid", one_at_a_time)
    with caplog.at_level(logging.WARNING, logger="services.intake"):
        assert services.emit(*alone) == []
    assert "one by one" in caplog.text
    # Then customers, consent, orders, refunds and planned deliveries are the same
    assert outcome(services, "pa_") == outcome(services, "pb_")
    # And the rules held: the checkout after the opt-out consents again, the early refund
    # promised nothing, the first event of an order wins
    result = json.loads(outcome(services, "pa_"))
    c1 = next(c for c in result["customers"] if c["id"] == "P_c1")
    assert c1["name"] == "Ann New" and c1["consent"] == ["email", "sms"]
    assert ["P_o5", "P_e5", "P_c3", None, True, False] in result["orders"]
    assert result["pending"] == []
    assert ["P_o3", "P_e3", "P_c2", None, False, True] in result["orders"]


def test_an_order_that_fails_inside_a_batch_is_dead_lettered_alone(services, monkeypatch):
    import services.intake as intake

    # Given a bug that breaks one order of five stored together
    real = intake._order_row

    def broken(event):
        if event.data.order_id == "o-3":
            raise RuntimeError("bug")
        return real(event)

    monkeypatch.setattr(intake, "_order_row", broken)
    now = services.clock()
    orders = [order_paid(f"e-{n}", order_id=f"o-{n}", customer_id=f"c{n}", occurred_at=now - timedelta(minutes=n),
                         timezone="UTC") for n in range(1, 6)]
    # When they are applied as one batch
    services.emit(*orders)
    # Then the four others are stored and planned, and only the broken one is a dead letter
    with services.session() as session:
        assert sorted(session.scalars(select(Order.id))) == ["o-1", "o-2", "o-4", "o-5"]
        assert session.get(Customer, "c3") is None  # its customer change was undone with it
        [letter] = session.scalars(select(DeadLetter))
        assert letter.source == "apply" and letter.reason == "RuntimeError: bug" and json.loads(letter.raw)["id"] == "e-3"
    services.relay_and_send()
    assert services.smtp.count == 4


def count_statements(services, events: list[dict]) -> int:
    from services.emit import emit_lines

    lines = [("test", n, json.dumps(e)) for n, e in enumerate(events, 1)]
    emit_lines(services.runtime, lines, lambda *reject: pytest.fail(str(reject)))
    stored = [event_id for _, (ids,) in services.doorbell.take(APPLY_EVENTS) for event_id in ids]
    with executed_statements(services.runtime.database_url) as statements, services.session() as session:
        apply_events(session, services.runtime, stored, services.clock())
    return len(statements)


def test_applying_a_batch_of_orders_takes_the_same_statements_for_20_or_200(services):
    now = services.clock()

    def batch(tag: str, size: int) -> list[dict]:
        # stream orders (planning is the planner's business) of new and returning customers
        return [order_paid(f"{tag}-{n}", customer_id=f"{tag}-c{n % (size - size // 10)}", stream_id="s",
                           occurred_at=now - timedelta(seconds=n), timezone="UTC") for n in range(size)]

    small, large = count_statements(services, batch("small", 20)), count_statements(services, batch("large", 200))
    assert large == small, (small, large)


# --- PostgreSQL: workers applying batches at the same time -------------------------------------

@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_two_batches_sharing_customers_applied_at_once_both_land_merged(services):
    # Given two batches whose customers overlap, in opposite orders
    now = services.clock()
    a = [order_paid(f"a-{c}", customer_id=c, occurred_at=now - timedelta(hours=2), consent=["email"], timezone="UTC")
         for c in ("c1", "c2", "c3")]
    b = [order_paid(f"b-{c}", customer_id=c, occurred_at=now - timedelta(hours=1), consent=["email", "sms"],
                    phone="+12025550100", timezone="UTC") for c in ("c4", "c3", "c2")]
    store_only(services, *a, *b)
    # When two workers apply them at the same time
    errors = apply_while_another_batch_is_open(services, [e["id"] for e in a], [e["id"] for e in b])
    # Then nothing failed, every order is stored, and shared customers carry the newer consent
    assert errors == []
    with services.session() as session:
        assert session.scalars(select(DeadLetter.reason)).all() == []
        assert len(session.scalars(select(Order.id)).all()) == 6
        consent = {c.id: c.consent for c in session.scalars(select(Customer))}
    assert consent == {"c1": ["email"], "c2": ["email", "sms"], "c3": ["email", "sms"], "c4": ["email", "sms"]}


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_refund_applied_while_its_order_is_applied_in_a_batch_is_not_lost(services):
    # Given a batch of orders and the refund of one of them, stored
    now = services.clock()
    orders = [order_paid(f"e-{n}", order_id=f"o-{n}", customer_id=f"c{n}", occurred_at=now - timedelta(minutes=9 - n),
                         timezone="UTC") for n in range(3)]
    refund = event("order.refunded", "r-1", now, order_id="o-1")
    store_only(services, *orders, refund)
    # When one worker applies the orders and another the refund at the same time
    errors = apply_while_another_batch_is_open(services, [e["id"] for e in orders], ["r-1"])
    # Then the order ends refunded: neither lost nor left pending
    assert errors == []
    with services.session() as session:
        assert session.get(Order, "o-1").refunded_at is not None
        assert session.scalars(select(PendingRefund.order_id)).all() == []
    services.relay_and_send()
    assert sorted(d["customer_id"] for d in services.deliveries() if d["state"] == "sent") == ["c0", "c2"]


# --- memory: `encore emit` streams its input in bounded batches ---------------------------------

def test_emitting_ten_times_more_lines_does_not_take_more_memory(services, monkeypatch):
    import tracemalloc

    import services.emit as emit_module
    from services.emit import emit_lines

    monkeypatch.setattr(emit_module, "EMIT_BATCH", 100)  # ten batches instead of one, in a tenth of the time

    class Forgetful(RecordingDoorbell):  # a broker holds the rings, not this process
        def ring(self, task: str, *args) -> None:
            pass

    runtime = replace(services.runtime, doorbell=Forgetful())

    now = services.clock()

    def peak_bytes(tag: str, count: int) -> int:
        lines = (("test", n, json.dumps(order_paid(f"{tag}-{n}", customer_id=f"{tag}-c{n}", stream_id="s",
                                                     occurred_at=now, timezone="UTC")))
                 for n in range(1, count + 1))  # produced one at a time, like a file being read
        tracemalloc.start()
        try:
            report = emit_lines(runtime, lines, lambda *reject: pytest.fail(str(reject)))
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert report.accepted == count
        return peak

    peak_bytes("warm", 100)  # statement caches, imports
    small, large = peak_bytes("small", 100), peak_bytes("large", 1_000)
    print(f"peak traced memory: {small:,} bytes for 100 lines, {large:,} for 1,000")
    assert large < small * 1.5, (small, large)


# --- the relay and an inbox backlog longer than the lease --------------------------------------

@pytest.fixture()
def broker(redis_url):
    """The Celery app pointed at the test's Redis, with no worker consuming; restored after."""
    import redis

    from config.settings import load_settings
    from tasks.app import configure

    configure(load_settings({"ENCORE_BROKER_URL": redis_url}))
    yield redis.Redis.from_url(redis_url)
    configure(load_settings())


@pytest.fixture()
def celery_runtime(services, broker):
    """The services' runtime, ringing through that broker as a worker's or beat's does."""
    from tasks.app import app
    from tasks.doorbell import CeleryDoorbell

    return replace(services.runtime, doorbell=CeleryDoorbell(app))


def store_and_enqueue(runtime, count: int) -> None:
    from services.emit import emit_lines

    lines = [("test", n, json.dumps(order_paid(f"e{n}", customer_id=f"c{n}", stream_id="s",
                                                occurred_at=runtime.clock(), timezone="UTC")))
             for n in range(1, count + 1)]
    emit_lines(runtime, lines, lambda *reject: pytest.fail(str(reject)))


def test_an_inbox_backlog_waiting_in_the_broker_longer_than_the_lease_is_not_enqueued_again(services, celery_runtime):
    from services.relay import relay_once

    # Given 2,500 stored events whose three intake messages wait in the broker
    store_and_enqueue(celery_runtime, 2500)
    assert celery_runtime.doorbell.waiting(APPLY_EVENTS) == 3
    # When no worker gets to them for three leases while the relay keeps ticking
    for _ in range(3):
        services.clock.advance(seconds=services.runtime.settings.lease_seconds + 1)
        relay_once(celery_runtime)
    # Then the broker still holds each event once
    assert celery_runtime.doorbell.waiting(APPLY_EVENTS) == 3


def test_stored_events_whose_messages_the_broker_lost_are_enqueued_again_after_the_lease(services, broker,
                                                                                         celery_runtime):
    from services.relay import relay_once

    # Given stored events, and a broker that then loses their messages
    store_and_enqueue(celery_runtime, 1200)
    broker.flushdb()
    # When less than a lease has passed, nothing is presumed lost yet
    relay_once(celery_runtime)
    assert celery_runtime.doorbell.waiting(APPLY_EVENTS) == 0
    # Then after the lease each is enqueued again, once (500 ids per message)
    services.clock.advance(seconds=services.runtime.settings.lease_seconds + 1)
    relay_once(celery_runtime)
    assert celery_runtime.doorbell.waiting(APPLY_EVENTS) == 3
    relay_once(celery_runtime)
    assert celery_runtime.doorbell.waiting(APPLY_EVENTS) == 3
