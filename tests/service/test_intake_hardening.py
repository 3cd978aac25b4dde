"""The intake side of the promises to shops and customers: nothing lost at the edge,
consent ordered by shop time, early refunds kept, replays that do what they say, no
customer data in errors."""

from __future__ import annotations

import json
import logging
from datetime import timedelta

import pytest
from sqlalchemy import select

from services.intake import apply_events
from store.models import Customer, DeadLetter, InboxEvent, Order
from tests.service.conftest import executed_statements
from tests.support import iso, order_paid, stream_ended


def emit_raw(services, *lines: str | bytes) -> tuple[list[str], list[tuple[int, str]]]:
    """Store and apply lines exactly as given (str or bytes), as `encore emit` does."""
    from services.emit import emit_lines
    from services.ports import APPLY_EVENTS

    rejected: list[tuple[int, str]] = []
    emit_lines(services.runtime, [("test", n, line) for n, line in enumerate(lines, 1)],
               lambda _s, n, why: rejected.append((n, why)))
    stored = [event_id for _, (ids,) in services.doorbell.take(APPLY_EVENTS) for event_id in ids]
    if stored:
        with services.session() as session:
            apply_events(session, services.runtime, stored, services.clock())
    return stored, rejected


def event(kind: str, event_id: str, occurred_at, **data) -> dict:
    return {"id": event_id, "type": kind, "occurred_at": iso(occurred_at), "data": data}


def dead_letters(services, source: str | None = None) -> list[DeadLetter]:
    with services.session() as session:
        query = select(DeadLetter).order_by(DeadLetter.id)
        if source:
            query = query.where(DeadLetter.source == source)
        return list(session.scalars(query))


# --- one bad line never loses the good ones ------------------------------------------

def test_bad_lines_are_rejected_by_field_and_every_good_line_is_kept(services):
    # Given ten valid orders and, between them, lines the database or the planner would choke on
    now = services.clock()
    good = [json.dumps(order_paid(f"ok-{n}", customer_id=f"c{n}", occurred_at=now, timezone="UTC"))
            for n in range(10)]
    surrogate = json.dumps(order_paid("bad-1", customer_id="x1", occurred_at=now, name="Ann \ud800"))
    nul = json.dumps(order_paid("bad-2", customer_id="x2", occurred_at=now, name="Ann\u0000"))
    year_one = json.dumps({**order_paid("bad-3", customer_id="x3"), "occurred_at": "0001-01-01T00:00:00+01:00"})
    year_9999 = json.dumps({**order_paid("bad-4", customer_id="x4"), "occurred_at": "9999-12-31T23:00:00-05:00"})
    huge = json.dumps(order_paid("bad-5", customer_id="x5", occurred_at=now)).replace('"quantity": 1', '"quantity": '
                                                                                        + "9" * 5000)
    undecodable = json.dumps(order_paid("bad-6", customer_id="x6", occurred_at=now)).encode().replace(b"Ann", b"A\xff")
    lines = [good[0], surrogate, good[1], nul, good[2], year_one, good[3], year_9999, good[4], huge, good[5],
             undecodable, *good[6:]]
    # When they are emitted together
    stored, rejected = emit_raw(services, *lines)
    # Then each bad line is rejected with a reason naming what broke, and all ten good ones are kept
    assert len(stored) == 10
    reasons = dict(rejected)
    assert reasons[2].startswith("data.customer.name: must not contain unpaired surrogates")
    assert reasons[4] == "data.customer.name: must not contain NUL characters (\\u0000)"
    assert reasons[6] == "occurred_at: must not be before 2000-01-01"
    assert reasons[8] == "occurred_at: must be before 9000-01-01"
    assert reasons[10] == "data.items[0].quantity: must be at most 1,000,000,000"
    assert reasons[12].startswith("not valid UTF-8 (byte 0xff at position")
    assert len(dead_letters(services)) == 6
    # And the ten good orders reach their customers
    services.relay_and_send()
    assert services.smtp.count == 10


def test_an_undecodable_line_is_kept_as_a_readable_dead_letter(services):
    _, rejected = emit_raw(services, b'{"id": "\xff\xfe"}')
    [letter] = dead_letters(services)
    assert rejected[0][1].startswith("not valid UTF-8")
    assert letter.raw == '{"id": "\\xff\\xfe"}'


# --- consent ordered by occurred_at: a late retry cannot undo an opt-out -----------------------------------------------------

def opt_out(event_id: str, customer_id: str, at, channels=None) -> dict:
    data = {"customer_id": customer_id, **({"channels": channels} if channels is not None else {})}
    return event("customer.opted_out", event_id, at, **data)


@pytest.mark.parametrize("arrival", ["late checkout last", "shop order"])
def test_an_older_checkout_never_undoes_a_newer_opt_out(services, arrival):
    # Given an order at 10:00, an opt-out at 11:00 and another checkout at 10:30 consenting to email
    now = services.clock()
    first = order_paid("o-1", customer_id="c1", occurred_at=now - timedelta(hours=2), timezone="UTC")
    stop = opt_out("stop", "c1", now - timedelta(hours=1), ["email"])
    late = order_paid("o-2", customer_id="c1", occurred_at=now - timedelta(minutes=90), timezone="UTC")
    # When they arrive with the older checkout last, or in the order they happened
    for item in ([first, stop, late] if arrival == "late checkout last" else [first, late, stop]):
        assert services.emit(item) == []
    services.relay_and_send()
    # Then nothing is sent: the customer said no after both checkouts
    assert services.smtp.count == 0
    with services.session() as session:
        customer = session.get(Customer, "c1")
        assert "email" not in customer.consent and customer.opted_out == ["email"]


def test_a_checkout_newer_than_the_opt_out_consents_again(services):
    now = services.clock()
    services.emit(opt_out("stop", "c1", now - timedelta(hours=2)))
    services.emit(order_paid("o-1", customer_id="c1", occurred_at=now - timedelta(hours=1), timezone="UTC"))
    services.relay_and_send()
    assert services.smtp.count == 1


def test_an_opt_out_that_arrives_before_an_older_first_order_still_holds(services):
    now = services.clock()
    services.emit(opt_out("stop", "c1", now - timedelta(hours=1)))
    services.emit(order_paid("o-1", customer_id="c1", occurred_at=now - timedelta(hours=2), timezone="UTC"))
    services.relay_and_send()
    assert services.smtp.count == 0
    with services.session() as session:
        assert session.get(Customer, "c1").country == "US"  # the profile still comes from the order


def test_the_profile_comes_from_the_newest_order_whatever_arrives_last(services):
    now = services.clock()
    services.emit(order_paid("o-new", customer_id="c1", occurred_at=now - timedelta(hours=1), timezone="UTC",
                             email="new@example.com"))
    services.emit(order_paid("o-old", customer_id="c1", occurred_at=now - timedelta(hours=2), timezone="UTC",
                             email="old@example.com"))
    with services.session() as session:
        assert session.get(Customer, "c1").email == "new@example.com"


# --- a refund that overtakes its order still cancels it ----------------------------------------------------

def test_a_refund_that_arrives_before_its_order_means_no_coupon(services):
    # Given a refund whose order.paid arrives after it
    now = services.clock()
    assert services.emit(event("order.refunded", "r-1", now, order_id="o-1")) == []
    assert services.emit(order_paid("p-1", order_id="o-1", customer_id="c1", occurred_at=now - timedelta(minutes=5),
                                     timezone="UTC")) == []
    services.relay_and_send()
    # Then the order is stored as refunded and nothing is promised or sent for it
    assert services.smtp.count == 0
    assert services.deliveries() == []
    with services.session() as session:
        assert session.get(Order, "o-1").refunded_at == now


def test_a_stream_order_refunded_in_advance_leaves_the_coupon_to_the_other_orders(services):
    now = services.clock()
    expensive = [{"sku": "serum", "name": "Serum", "unit_price": "90.00", "quantity": 1, "refill_sku": "serum-r"}]
    services.emit(event("order.refunded", "r-1", now, order_id="o-serum"))
    services.emit(order_paid("p-1", order_id="o-serum", customer_id="c1", stream_id="s1", items=expensive,
                             occurred_at=now - timedelta(minutes=20), timezone="UTC"))
    services.emit(order_paid("p-2", order_id="o-shampoo", customer_id="c1", stream_id="s1",
                             occurred_at=now - timedelta(minutes=10), timezone="UTC"))
    services.emit(stream_ended("end", "s1", now))
    services.relay_and_send()
    [row] = services.deliveries()
    assert row["state"] == "sent" and row["offer"]["sku"] == "shampoo-refill"


# --- replay does what it says ---------------------------------------------------------------

def test_replaying_an_event_whose_applying_failed_applies_it(services, monkeypatch):
    import services.intake as intake
    from services.dead_letters import replay

    # Given an order whose applying failed (a bug, since fixed)
    real = intake._order_paid

    def broken(*args, **kwargs):
        raise RuntimeError("bug")

    monkeypatch.setattr(intake, "_order_paid", broken)
    services.emit(order_paid("p-1", customer_id="c1", occurred_at=services.clock(), timezone="UTC"))
    monkeypatch.setattr(intake, "_order_paid", real)
    [letter] = dead_letters(services, "apply")
    assert letter.reason == "RuntimeError: bug"
    # When it is replayed, and the queued event applied
    with services.session() as session:
        result = replay(session, f"L{letter.id}", services.clock(), runtime=services.runtime)
    assert result.ok and result.event_id == "p-1" and "applied again" in result.message
    with services.session() as session:
        apply_events(session, services.runtime, [result.event_id], services.clock())
    services.relay_and_send()
    # Then the customer gets the coupon, and the letter is marked replayed
    assert services.smtp.count == 1
    assert dead_letters(services, "apply")[0].replayed_at is not None


def test_replaying_a_stored_event_with_a_fixed_text_applies_the_fix(services):
    from services.dead_letters import replay

    # Given an inbox row the current rules reject when applying (stored by an older, laxer version)
    bad = order_paid("p-1", customer_id="c1", occurred_at=services.clock(), timezone="UTC")
    bad["data"]["currency"] = "usd"
    with services.session() as session:
        session.add(InboxEvent(id="p-1", type="order.paid", occurred_at=services.clock(),
                               received_at=services.clock(), payload=json.dumps(bad)))
    with services.session() as session:
        apply_events(session, services.runtime, ["p-1"], services.clock())
    [letter] = dead_letters(services, "apply")
    assert letter.reason.startswith("EventError: data.currency")
    # When it is replayed with the corrected text
    bad["data"]["currency"] = "USD"
    with services.session() as session:
        result = replay(session, f"L{letter.id}", services.clock(), json.dumps(bad), runtime=services.runtime)
    with services.session() as session:
        apply_events(session, services.runtime, ["p-1"], services.clock())
    services.relay_and_send()
    assert result.ok and services.smtp.count == 1


def test_replaying_a_planning_dead_letter_plans_that_trigger_again(services, monkeypatch):
    import services.planner as planner
    from services.dead_letters import replay

    # Given an order whose planning failed
    real = planner.choose_offer

    def broken(*args, **kwargs):
        raise ArithmeticError("offer bug")

    monkeypatch.setattr(planner, "choose_offer", broken)
    services.emit(order_paid("p-1", customer_id="c1", occurred_at=services.clock(), timezone="UTC"))
    [letter] = dead_letters(services, "plan")
    assert json.loads(letter.raw)["trigger_key"] == "order:order-p-1"
    # When it is replayed while the bug is still there, it is refused and stays listed
    with services.session() as session:
        refused = replay(session, f"L{letter.id}", services.clock(), runtime=services.runtime)
    assert not refused.ok and refused.message == "still failing: ArithmeticError: offer bug"
    assert dead_letters(services, "plan")[0].replayed_at is None
    # And once fixed, replaying plans it and the coupon goes out
    monkeypatch.setattr(planner, "choose_offer", real)
    with services.session() as session:
        result = replay(session, f"L{letter.id}", services.clock(), runtime=services.runtime)
    assert result.ok and result.delivery_id is not None, result.message
    services.relay_and_send()
    assert services.smtp.count == 1


def test_replaying_an_emit_rejection_whose_id_is_taken_since_is_refused(services):
    from services.dead_letters import replay

    bad = order_paid("p-1", customer_id="c1", occurred_at=services.clock())
    bad["data"]["currency"] = "usd"
    services.emit(bad)
    services.emit(order_paid("p-1", customer_id="c1", occurred_at=services.clock()))
    [letter] = dead_letters(services)
    bad["data"]["currency"] = "USD"
    with services.session() as session:
        result = replay(session, f"L{letter.id}", services.clock(), json.dumps(bad), runtime=services.runtime)
    assert not result.ok and "already stored" in result.message


# --- no customer data in errors, dead letters and logs -------------------------------------

def test_database_errors_never_show_bound_parameters(services):
    from sqlalchemy import text
    from sqlalchemy.exc import DBAPIError

    from store.db import engine_for

    with pytest.raises(DBAPIError) as caught, engine_for(services.runtime.database_url).connect() as connection:
        connection.execute(text("SELECT * FROM no_such_table WHERE email = :email"), {"email": "ann@example.com"})
    assert "ann@example.com" not in str(caught.value)


def test_an_apply_failure_leaves_no_customer_data_in_its_dead_letter_or_the_log(services, monkeypatch, caplog):
    import services.intake as intake

    def leaky(*args, **kwargs):
        raise ValueError("cannot store ann@example.com / +6281234567890\nDETAIL: Key (email)=(ann@example.com)")

    monkeypatch.setattr(intake, "_order_paid", leaky)
    with caplog.at_level(logging.INFO):
        services.emit(order_paid("p-1", customer_id="c1", occurred_at=services.clock(), email="ann@example.com"))
    [letter] = dead_letters(services, "apply")
    assert letter.reason == "ValueError: cannot store ***@example.com / +62***"
    assert "ann@example.com" not in caplog.text and "+6281234567890" not in caplog.text
    assert "p-1" in caplog.text  # the id is what the operator follows


# --- the dead-letter listing is set-based and bounded -----------------------------------------

def test_listing_failed_deliveries_takes_a_fixed_number_of_queries(services):
    from services.dead_letters import list_dead_letters
    from store.models import Attempt, Coupon, Delivery

    now = services.clock()
    with services.session() as session:
        for n in range(30):
            coupon = Coupon(code=f"CODE{n}", trigger_key=f"order:o{n}", customer_id=f"c{n}", market="north_america",
                            offer_type="percent_off", sku="s", product_name="S", currency="USD", percent="10",
                            created_at=now, expires_at=now + timedelta(days=7))
            session.add(coupon)
            session.flush()
            delivery = Delivery(coupon_id=coupon.id, customer_id=f"c{n}", state="failed", reason="invalid_address",
                                failed_channels=["email"], trigger_at=now, due_at=now + timedelta(seconds=n),
                                deadline_at=now + timedelta(hours=24), updated_at=now)
            session.add(delivery)
            session.flush()
            for attempt in range(2):
                session.add(Attempt(delivery_id=delivery.id, at=now, channel="email", outcome="permanent",
                                    reason="invalid_address", detail=f"try {attempt} of D{delivery.id}"))
    with executed_statements(services.runtime.database_url) as statements, services.session() as session:
        rows = list_dead_letters(session, limit=20)
    selects = [s for s, _ in statements if s.lstrip().upper().startswith("SELECT")]
    assert len(selects) <= 3, selects
    deliveries = [r for r in rows if r["kind"] == "delivery"]
    assert len(deliveries) == 20  # bounded: the newest 20
    assert all(r["raw"] == f"try 1 of {r['id']}" for r in deliveries)  # the last attempt's detail


def test_the_relay_claims_an_unapplied_backlog_in_chunks_each_row_once(services):
    from services.relay import claim_unapplied_events

    now = services.clock()
    with services.session() as session:
        session.add_all(InboxEvent(id=f"e{n}", type="order.paid", occurred_at=now, received_at=now, payload="{}")
                        for n in range(2500))
    with services.session() as session:
        first = claim_unapplied_events(session, now, timedelta(seconds=300), limit=2200)
        again = claim_unapplied_events(session, now, timedelta(seconds=300))
    assert len(first) == len(set(first)) == 2200
    assert sorted(again) == sorted(set(f"e{n}" for n in range(2500)) - set(first))
