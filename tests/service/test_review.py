"""`encore review` after a stream (SPEC section 9): what the stream brought back -- its
buyers, coupons sent on time, the later orders that redeemed them and their revenue per
currency, the experiment's groups -- beside the shop's previous stream."""

from __future__ import annotations

from datetime import timedelta

import pytest

from tests.service.test_experiments import markets_with_experiment
from tests.support import order_paid, stream_ended

MUG = [{"sku": "mug", "name": "Mug", "unit_price": "30.00", "quantity": 1}]


def _review(services, stream: str, shop: str = "default") -> dict:
    from services.review import review

    with services.session() as session:
        return review(session, services.runtime.markets, stream, shop)


def _stream(services, stream_id: str, buyers: list[str], **order) -> None:
    now = services.clock()
    assert services.emit(*(order_paid(f"{stream_id}-{c}", customer_id=c, stream_id=stream_id, occurred_at=now,
                                      timezone="UTC", items=MUG, **order) for c in buyers)) == []
    services.clock.advance(minutes=10)
    assert services.emit(stream_ended(f"end-{stream_id}", stream_id, occurred_at=services.clock())) == []
    while services.relay_and_send():
        pass


def test_later_orders_that_use_the_codes_show_as_redemptions_with_their_revenue(make_services, tmp_path):
    services = make_services(ENCORE_MARKETS_FILE=markets_with_experiment(tmp_path, "holdout = 0.5"))
    # Given an earlier stream, and this stream with 20 US buyers and 2 Brazilian ones
    _stream(services, "S0", ["old1", "old2"])
    services.clock.advance(days=2)
    _stream(services, "S1", [f"u{n:02d}" for n in range(20)])
    _stream(services, "S1", ["b1", "b2"], country="BR", currency="BRL")
    rows = [row for row in services.deliveries() if row["trigger_at"] >= services.deliveries()[-1]["trigger_at"]
            or row["customer_id"] in ("b1", "b2")]
    sent = [row for row in rows if row["state"] == "sent"]
    held = [row for row in rows if row["variant"] == "control"]
    assert sent and held

    # When two US customers and one Brazilian order again with their codes, a day later,
    # and one held-out customer orders again without any code
    services.clock.advance(days=1)
    us = [row for row in sent if not row["customer_id"].startswith("b")][:2]
    br = [row for row in sent if row["customer_id"].startswith("b")][:1]
    later = [order_paid(f"again-{row['customer_id']}", customer_id=row["customer_id"], occurred_at=services.clock(),
                        timezone="UTC", items=[{"sku": "mug", "name": "Mug", "unit_price": "12.50", "quantity": 2}])
             for row in us]
    for event, row in zip(later, us, strict=True):
        event["data"]["discount_codes"] = [row["code"].lower()]
    for row in br:
        event = order_paid(f"again-{row['customer_id']}", customer_id=row["customer_id"], country="BR",
                           currency="BRL", occurred_at=services.clock(), timezone="UTC",
                           items=[{"sku": "mug", "name": "Mug", "unit_price": "99.90", "quantity": 1}])
        event["data"]["discount_codes"] = [row["code"]]
        event["data"]["total_price"] = "89.91"  # what the shop says was paid, after the discount
        later.append(event)
    later.append(order_paid(f"again-{held[0]['customer_id']}", customer_id=held[0]["customer_id"],
                            occurred_at=services.clock(), timezone="UTC", items=MUG, country="US"))
    assert services.emit(*later) == []

    # Then the review counts the buyers, coupons (the held-out have none), redemptions and revenue per currency
    review = _review(services, "S1")
    assert review["buyers"] == 22
    assert review["coupons"] == 22 - len(held) == len(sent)
    assert review["sent"] == len(sent) and review["on_time_rate"] == 1.0
    assert review["redeemed"] == 3
    assert review["revenue"] == {"BRL": "89.91", "USD": "50.00"}
    assert {row["market"] for row in review["markets"]} == {"north_america", "latin_america"}
    # And the experiment's groups: the held-out customer who came back counts as a repurchase
    groups = {group["variant"]: group for group in review["groups"]}
    assert groups["control"]["customers"] == len(held) and groups["control"]["repurchased"] == 1
    assert groups["control"]["ci95"] is None
    low, high = groups["treatment"]["ci95"]
    assert low < groups["treatment"]["repurchase_rate"] - groups["control"]["repurchase_rate"] < high
    # And the previous stream is beside it
    assert review["previous"]["stream"] == "S0" and review["previous"]["buyers"] == 2
    assert review["previous"]["previous"] is None
    assert review["last_message_seconds"] >= 0


def test_an_unknown_stream_is_refused_by_name(services):
    from services.review import UnknownStream

    with pytest.raises(UnknownStream, match="stream 'nope'"):
        _review(services, "nope")


def test_a_backfill_is_shown_apart_and_never_counted_late(services):
    # Given a stream whose orders arrive two days after it ended (a backfill)
    long_ago = services.clock() - timedelta(days=2)
    assert services.emit(order_paid("bf-1", customer_id="z1", stream_id="OLD", occurred_at=long_ago,
                                    timezone="UTC", items=MUG),
                         stream_ended("end-OLD", "OLD", occurred_at=long_ago + timedelta(minutes=5))) == []
    # Then its delivery expired on arrival, and on time is not dragged down by it
    review = _review(services, "OLD")
    assert review["late_events"] == 1 and review["on_time_rate"] == 1.0
    assert services.status()["on_time_rate"] == 1.0
