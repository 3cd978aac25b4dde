"""Planning keeps its promises around bad rows, late orders and expiry: one broken order
must not stop a stream's other buyers, a late order must not change a coupon someone may
have read, and an expiry date means the end of that day where the customer lives."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import select, update

from tests.support import order_paid, stream_ended

MUG = [{"sku": "mug", "name": "Mug", "unit_price": "30.00", "quantity": 1}]
SHAMPOO = [{"sku": "shampoo", "name": "Shampoo", "unit_price": "20.00", "quantity": 1, "refill_sku": "shampoo-refill"}]


def _plan_dead_letters(services) -> list[dict]:
    from store.models import DeadLetter

    with services.session() as session:
        return [json.loads(raw) for raw in session.scalars(
            select(DeadLetter.raw).where(DeadLetter.source == "plan").order_by(DeadLetter.id))]


def test_one_bad_stream_order_does_not_block_the_rest_of_the_stream(services):
    from services.stream_planning import streams_waiting
    from store.models import Order

    # Given a stream with five buyers, two of whose rows make planning raise:
    # an absurd order time (year 9999) and a price that is not a number
    now = services.clock()
    buyers = ["c1", "c2", "c3", "c4", "c5"]
    assert services.emit(*(order_paid(f"e-{c}", customer_id=c, stream_id="S", occurred_at=now, timezone="UTC")
                           for c in buyers)) == []
    with services.session() as session:
        session.execute(update(Order).where(Order.customer_id == "c2")
                        .values(occurred_at=datetime(9999, 12, 31, 23, 0, tzinfo=UTC)))
        session.execute(update(Order).where(Order.customer_id == "c4").values(
            items=[{"sku": "x", "name": "X", "unit_price": "not a number", "quantity": 1}]))

    # When the stream ends and is planned
    services.clock.advance(minutes=30)
    services.emit(stream_ended("end-S", "S", occurred_at=services.clock()))

    # Then every other buyer has a coupon, and each bad one a "plan" dead letter that says what to replan
    assert sorted(row["customer_id"] for row in services.deliveries()) == ["c1", "c3", "c5"]
    assert sorted(map(json.dumps, _plan_dead_letters(services))) == sorted([
        json.dumps({"trigger_key": "stream:S", "customer_id": "c2"}),
        json.dumps({"trigger_key": "stream:S", "customer_id": "c4"}),
    ])
    # And the stream is done: the sweep does not pick it up (and dead-letter them) again every minute
    services.clock.advance(hours=7)
    with services.session() as session:
        assert streams_waiting(session, services.clock()) == []
    services.plan_stream("S")
    assert len(_plan_dead_letters(services)) == 2
    services.relay_and_send()
    assert services.smtp.count == 3


def test_a_bad_row_in_a_stream_that_never_ended_does_not_block_the_sweep(services):
    from services.stream_planning import streams_waiting
    from store.models import Order

    # Given a stream whose end never comes, one buyer with an absurd order time
    now = services.clock()
    services.emit(*(order_paid(f"e-{c}", customer_id=c, stream_id="S", occurred_at=now, timezone="UTC")
                    for c in ("c1", "c2", "c3")))
    with services.session() as session:
        session.execute(update(Order).where(Order.customer_id == "c2")
                        .values(occurred_at=datetime(9999, 12, 31, 23, 0, tzinfo=UTC)))
    # When the 6-hour sweep plans it
    services.clock.advance(hours=6, minutes=1)
    with services.session() as session:
        assert streams_waiting(session, services.clock()) == ["S"]
    services.plan_stream("S")
    # Then the others are planned and the stream no longer waits
    assert sorted(row["customer_id"] for row in services.deliveries()) == ["c1", "c3"]
    with services.session() as session:
        assert streams_waiting(session, services.clock()) == []


def test_two_late_orders_in_one_batch_give_one_coupon_chosen_from_both(services):
    # Given a stream that already ended
    now = services.clock()
    services.emit(order_paid("e-early", customer_id="c0", stream_id="S", occurred_at=now - timedelta(hours=1)),
                  stream_ended("end-S", "S", occurred_at=now - timedelta(minutes=30)))
    # When one customer's two late orders arrive in one batch: a mug, then a consumable
    services.emit(
        order_paid("e1", order_id="o1", customer_id="c1", stream_id="S", occurred_at=now - timedelta(minutes=20),
                   items=MUG),
        order_paid("e2", order_id="o2", customer_id="c1", stream_id="S", occurred_at=now - timedelta(minutes=10),
                   items=SHAMPOO),
    )
    # Then one coupon, chosen from all the items: the refill (rule 3), at the later order's time
    [row] = services.deliveries("c1")
    assert row["offer"] == {"type": "refill", "sku": "shampoo-refill", "currency": "USD", "price": "14.00"}
    assert row["trigger_at"] == (now - timedelta(minutes=10)).strftime("%Y-%m-%dT%H:%M:%SZ")


def test_a_coupon_is_redeemable_until_the_end_of_the_day_its_message_names(services):
    from services.redemption import redeem

    # Given an order at 08:00 in New York (valid 7 days in north_america)
    zone = ZoneInfo("America/New_York")
    services.clock.now = datetime(2026, 3, 10, 8, 0, tzinfo=zone).astimezone(UTC)
    services.emit(order_paid("e1", customer_id="c1", occurred_at=services.clock(), timezone="America/New_York"))
    [row] = services.deliveries()
    # Then it expires at the end of 17 March in New York, and the message says so
    assert row["expires_at"] == "2026-03-18T04:00:00Z"
    services.relay_and_send()
    [message] = services.smtp.messages
    text = message.get_body(("plain",)).get_content()
    assert "March 17, 2026" in text and "11:59" in text
    # When the customer redeems it in the afternoon of 17 March
    services.clock.now = datetime(2026, 3, 17, 16, 0, tzinfo=zone).astimezone(UTC)
    with services.session() as session:
        result = redeem(session, row["code"], "order-2", services.clock())
    # Then it is accepted
    assert result.status == "redeemed"


def test_rupiah_in_encore_deliveries_and_in_the_message_are_the_same_whole_amount(services):
    # Given an Indonesian buyer of a serum at Rp189.001 (× 0.7 = 132300.7), at 14:00 in Jakarta
    zone = ZoneInfo("Asia/Jakarta")
    services.clock.now = datetime(2026, 3, 10, 14, 0, tzinfo=zone).astimezone(UTC)
    services.emit(order_paid("e1", customer_id="c1", country="ID", currency="IDR", occurred_at=services.clock(),
                             locale="id-ID", items=[{"sku": "s", "name": "Serum", "unit_price": "189001",
                                                     "quantity": 1, "refill_sku": "s-refill"}]))
    # When it is planned and sent
    [row] = services.deliveries()
    services.relay_and_send()
    # Then `encore deliveries` and the email name the same whole rupiah, rounded half-up, no sen
    assert row["offer"]["price"] == "132301"
    [message] = services.smtp.messages
    text = message.get_body(("plain",)).get_content()
    assert re.search(r"Rp132\.301(?![,\d])", text), text


def test_a_customer_in_a_country_no_market_lists_is_not_written_to_at_night_in_its_main_zone(services):
    # Given an Ecuadorian customer without a time zone (Ecuador is in no market's list), ordering at
    # 21:00 in Guayaquil, where Ecuadorians live: 20:00 in the Galapagos, once taken as Ecuador's zone
    mainland = ZoneInfo("America/Guayaquil")
    services.clock.now = datetime(2026, 3, 10, 21, 0, tzinfo=mainland).astimezone(UTC)
    services.emit(order_paid("e1", customer_id="c1", country="EC", occurred_at=services.clock()))
    [row] = services.deliveries()
    assert datetime.fromisoformat(row["due_at"]).astimezone(mainland) == datetime(2026, 3, 11, 8, 0, tzinfo=mainland)
    # When the relay runs every half hour through the night
    sent_at_local_hours = []
    while services.clock().astimezone(mainland).hour != 9:
        services.relay_and_send()
        sent_at_local_hours += [services.clock().astimezone(mainland).hour] * (services.smtp.count
                                                                                - len(sent_at_local_hours))
        services.clock.advance(minutes=30)
    # Then the one email went out at 08:00 Guayaquil time, none in quiet hours
    assert sent_at_local_hours == [8]


def test_a_coupon_is_refused_the_morning_after_its_last_day(services):
    from services.redemption import redeem

    zone = ZoneInfo("Asia/Jakarta")
    services.clock.now = datetime(2026, 3, 10, 20, 0, tzinfo=zone).astimezone(UTC)
    services.emit(order_paid("e1", customer_id="c1", country="ID", currency="IDR", occurred_at=services.clock(),
                             timezone="Asia/Jakarta",
                             items=[{"sku": "s", "name": "S", "unit_price": "189000", "quantity": 1,
                                     "refill_sku": "s-refill"}]))
    [row] = services.deliveries()
    assert row["offer"]["price"] == "132300"  # SPEC rule 3
    services.clock.now = datetime(2026, 3, 25, 0, 0, 1, tzinfo=zone).astimezone(UTC)  # 14 days: 24 March was the last
    with services.session() as session:
        assert redeem(session, row["code"], "order-2", services.clock()).status == "expired"


def test_a_plan_dead_letter_can_be_replanned_once_its_row_is_fixed(services):
    from services.planner import replan
    from store.models import Order

    # Given a stream buyer whose row made planning raise
    now = services.clock()
    services.emit(order_paid("e1", order_id="o1", customer_id="c1", stream_id="S", occurred_at=now))
    with services.session() as session:
        session.execute(update(Order).where(Order.id == "o1").values(
            items=[{"sku": "x", "name": "X", "unit_price": "not a number", "quantity": 1}]))
    services.emit(stream_ended("end-S", "S", occurred_at=services.clock.advance(minutes=5)))
    [letter] = _plan_dead_letters(services)
    assert services.deliveries() == []
    # When the row is fixed and the trigger replanned from the dead letter's text
    with services.session() as session:
        session.execute(update(Order).where(Order.id == "o1").values(items=SHAMPOO))
    with services.session() as session:
        scheduled = replan(session, services.runtime, letter["trigger_key"], letter["customer_id"], services.clock())
    # Then the customer gets the coupon
    assert scheduled == 1
    [row] = services.deliveries()
    assert row["customer_id"] == "c1" and row["offer"]["type"] == "refill"


def _quiet_zone(services) -> str:
    from coupons.timing import zone_at_local_hour

    return zone_at_local_hour(2, services.clock())  # 02:00 there: the delivery waits for the morning


def test_a_late_order_in_a_later_batch_updates_an_offer_nobody_has_seen(services):
    # Given an ended stream and a buyer whose coupon (a percent off a mug) waits for their morning
    now = services.clock()
    zone = _quiet_zone(services)
    services.emit(stream_ended("end-S", "S", occurred_at=now - timedelta(minutes=30)))
    services.emit(order_paid("e1", order_id="o1", customer_id="c1", stream_id="S", timezone=zone,
                             occurred_at=now - timedelta(minutes=20), items=MUG))
    [before] = services.deliveries("c1")
    assert before["offer"]["type"] == "percent_off" and before["state"] == "scheduled"
    # When their second order, with a consumable, arrives in a later batch
    services.emit(order_paid("e2", order_id="o2", customer_id="c1", stream_id="S", timezone=zone,
                             occurred_at=now - timedelta(minutes=10), items=SHAMPOO))
    # Then the one coupon is chosen from both orders (rule 2): same code, the refill offer
    [after] = services.deliveries("c1")
    assert after["code"] == before["code"]
    assert after["offer"] == {"type": "refill", "sku": "shampoo-refill", "currency": "USD", "price": "14.00"}
    assert after["due_at"] == before["due_at"] and after["expires_at"] == before["expires_at"]


def test_a_late_order_does_not_change_a_coupon_already_sent(services):
    # Given a stream buyer whose coupon was already sent
    now = services.clock()
    services.emit(stream_ended("end-S", "S", occurred_at=now - timedelta(minutes=30)))
    services.emit(order_paid("e1", order_id="o1", customer_id="c1", stream_id="S", timezone="UTC",
                             occurred_at=now - timedelta(minutes=20), items=MUG))
    services.relay_and_send()
    [sent] = services.deliveries("c1")
    assert sent["state"] == "sent"
    # When a later order arrives
    services.emit(order_paid("e2", order_id="o2", customer_id="c1", stream_id="S", timezone="UTC",
                             occurred_at=now - timedelta(minutes=10), items=SHAMPOO))
    # Then the coupon the customer holds stays what their message said
    [after] = services.deliveries("c1")
    assert after["offer"] == sent["offer"] and after["code"] == sent["code"]
    assert services.smtp.count == 1


def test_buyers_of_one_stream_each_get_the_plan_of_their_own_zone_consent_and_addresses(services):
    from tests.support import iso, zone_where_local_hour_is

    # Given one stream whose buyers differ only in time zone, an opt-out or a missing address
    now = services.clock()
    day, night = zone_where_local_hour_is(13, now), zone_where_local_hour_is(2, now)
    buyers = {"day-1": {"timezone": day}, "day-2": {"timezone": day}, "night": {"timezone": night},
              "opted-out": {"timezone": day}, "no-address": {"timezone": day, "email": None}}
    assert services.emit(*(order_paid(f"e-{c}", customer_id=c, stream_id="S", occurred_at=now, **fields)
                           for c, fields in buyers.items())) == []
    assert services.emit({"id": "stop", "type": "customer.opted_out", "occurred_at": iso(now),
                          "data": {"customer_id": "opted-out", "channels": ["email"]}}) == []

    # When the stream ends and its buyers are planned in one chunk
    ended_at = services.clock.advance(minutes=30)
    services.emit(stream_ended("end-S", "S", occurred_at=ended_at))

    # Then each has the plan and the expiry of their own circumstances, not their neighbour's
    rows = {row["customer_id"]: row for row in services.deliveries()}
    assert {c: (row["state"], row["reason"]) for c, row in rows.items()} == {
        "day-1": ("scheduled", None), "day-2": ("scheduled", None), "night": ("scheduled", None),
        "opted-out": ("suppressed", "no_channel"), "no-address": ("suppressed", "no_channel")}
    assert rows["day-1"]["due_at"] == rows["day-2"]["due_at"] == ended_at.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert datetime.fromisoformat(rows["night"]["due_at"]) > datetime.fromisoformat(rows["day-1"]["due_at"])
    assert rows["night"]["expires_at"] != rows["day-1"]["expires_at"] == rows["day-2"]["expires_at"]


def test_planning_a_stream_again_or_after_a_crash_creates_nothing_twice(services):
    from services.stream_planning import next_unplanned_customers, plan_stream_chunk
    from store.models import Order, Stream

    # Given an ended stream of five buyers, whose planner crashed after committing its first chunk of two
    now = services.clock()
    buyers = [f"c{n}" for n in range(1, 6)]
    services.emit(*(order_paid(f"e-{c}", customer_id=c, stream_id="S", occurred_at=now) for c in buyers))
    services.clock.advance(minutes=30)
    with services.session() as session:
        session.merge(Stream(id="S", ended_at=services.clock()))  # ended, not planned yet
    with services.session() as session:
        first_chunk = next_unplanned_customers(session, "S", "", chunk=2)
        plan_stream_chunk(session, services.runtime, "S", first_chunk, services.clock())
    planned_first = {row["customer_id"]: row["code"] for row in services.deliveries()}

    # When the planning resumes, and then a second planner plans every buyer again
    services.plan_stream("S")
    with services.session() as session:
        again = plan_stream_chunk(session, services.runtime, "S", buyers, services.clock())

    # Then each buyer has exactly one coupon, the first chunk's codes unchanged, every order linked to it
    rows = services.deliveries()
    assert sorted(row["customer_id"] for row in rows) == buyers
    assert again == 0 and _plan_dead_letters(services) == []
    assert {row["customer_id"]: row["code"] for row in rows if row["customer_id"] in planned_first} == planned_first
    with services.session() as session:
        assert session.scalar(select(Order.id).where(Order.coupon_id.is_(None))) is None
        assert next_unplanned_customers(session, "S", "") == []
