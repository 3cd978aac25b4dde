"""The dashboard's money and latest streams, its date range, and a stream's review page
(SPEC section 9), in-process on real SQLite and PostgreSQL."""

from __future__ import annotations

import re
from datetime import timedelta

from tests.service.test_web import make_web, web  # noqa: F401 - fixtures
from tests.support import order_paid, stream_ended

MUG = [{"sku": "mug", "name": "Mug", "unit_price": "30.00", "quantity": 1}]


def _stream(web, stream_id: str, buyers: list[str]) -> None:  # noqa: F811
    services = web.services
    now = services.clock()
    assert web.post("/events", [order_paid(f"{stream_id}-{c}", customer_id=c, stream_id=stream_id, occurred_at=now,
                                           timezone="UTC", items=MUG) for c in buyers]).status_code == 202
    services.clock.advance(minutes=10)
    web.post("/events", stream_ended(f"end-{stream_id}", stream_id, occurred_at=services.clock()))
    while services.relay_and_send():
        pass


def _redeem_by_a_later_order(web, row: dict, event_id: str) -> None:  # noqa: F811
    event = order_paid(event_id, customer_id=row["customer_id"], occurred_at=web.services.clock(), timezone="UTC",
                       items=[{"sku": "mug", "name": "Mug", "unit_price": "27.00", "quantity": 1}])
    event["data"]["discount_codes"] = [row["code"]]
    assert web.post("/events", event).status_code == 202


def test_the_dashboard_shows_money_back_and_the_latest_streams_linked_to_their_review(web):  # noqa: F811
    # Given a big stream, then a smaller one two days later, and a coupon of the big one
    # redeemed by a later order
    _stream(web, "big-live", [f"b{n}" for n in range(5)])
    web.services.clock.advance(days=2)
    _stream(web, "small-live", ["s1"])
    first = next(row for row in web.services.deliveries() if row["customer_id"] == "b0")
    _redeem_by_a_later_order(web, first, "again-b0")

    page = web.client.get("/").text
    # Then the money figures are there: the redeeming order's revenue and the 10% given on a USD 30 mug
    assert re.search(r'id="revenue"><b>USD 27\.00</b>', page)
    assert re.search(r'id="discount"><b>USD 3\.00</b>', page)
    # And the latest stream comes first (not the one with most buyers), with its date and its review's link
    links = re.findall(r'href="(/streams/[^"]+)"', page)
    assert links == ["/streams/default/small-live", "/streams/default/big-live"]
    assert web.services.clock().strftime("%Y-%m-%d") in page
    # And the review page shows the stream's redemption and its revenue, beside the previous stream
    review = web.client.get("/streams/default/big-live")
    assert review.status_code == 200
    assert re.search(r'id="revenue">USD 27\.00<', review.text)
    small = web.client.get("/streams/default/small-live").text
    assert "big-live" in small  # the previous stream beside it


def test_a_date_range_narrows_every_figure_and_a_bad_date_is_named(web):  # noqa: F811
    _stream(web, "live", ["a", "b"])
    today = web.services.clock().strftime("%Y-%m-%d")
    assert re.search(r"<b>2</b><span>buyers</span>", web.client.get(f"/?from={today}&to={today}").text)
    earlier = web.client.get("/?from=2020-01-01&to=2020-01-31").text
    assert re.search(r"<b>0</b><span>buyers</span>", earlier) and "/streams/default/live" not in earlier
    bad = web.client.get("/?from=yesterday")
    assert bad.status_code == 400 and "from: must be a date" in bad.text


def test_an_unknown_stream_has_no_review(web):  # noqa: F811
    assert web.client.get("/streams/default/nope").status_code == 404


def test_a_backfill_is_shown_apart_and_not_counted_in_on_time(web):  # noqa: F811
    # Given one order sent on time, and a backfilled order two days old (expired on arrival)
    web.post("/events", order_paid("now-1", customer_id="c1", occurred_at=web.services.clock(), timezone="UTC"))
    web.services.relay_and_send()
    web.post("/events", order_paid("old-1", customer_id="c2", occurred_at=web.services.clock() - timedelta(days=2),
                                   timezone="UTC"))
    page = web.client.get("/").text
    # Then on time is 100% on the dashboard as in `encore status`, and the backfill is counted apart
    assert re.search(r'id="on-time"><b>100%</b>', page)
    assert re.search(r'id="late-events"><b>1</b>', page)
    assert web.services.status()["on_time_rate"] == 1.0
    assert "encore_on_time_rate 1.0" in web.client.get("/metrics").text
