"""The stream review's arithmetic on small hand-computed data, and the one "on time"."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from coupons.review import (
    Buyer,
    DeliveryRow,
    OnTime,
    OrderLine,
    OrderRow,
    StreamFacts,
    counts_toward_on_time,
    experiment_groups,
    on_time_of,
    on_time_rate,
    revenue,
    stream_review,
)

END = datetime(2026, 3, 10, 20, 0, tzinfo=UTC)
DEADLINE = END + timedelta(hours=24)
VALID_UNTIL = datetime(2026, 3, 17, 23, 59, 59, tzinfo=UTC)


def delivery(customer: str, state: str, *, market: str = "north_america", channel: str | None = "email",
             reason: str | None = None, sent_at: datetime | None = None, redeemed_by: str | None = None,
             experiment: str | None = None, variant: str | None = None) -> DeliveryRow:
    return DeliveryRow(customer_id=customer, market=market, channel=channel, state=state, reason=reason,
                       trigger_at=END, deadline_at=DEADLINE, sent_at=sent_at, valid_until=VALID_UNTIL,
                       redeemed_order_id=redeemed_by, experiment_id=experiment, variant=variant)


def order(order_id: str, customer: str, at: datetime, currency: str = "USD", *lines: tuple[str, int],
          refunded: bool = False) -> OrderRow:
    return OrderRow(order_id, customer, at, currency,
                    tuple(OrderLine(Decimal(price), quantity) for price, quantity in lines), refunded)


# ------------------------------------------------------------------ on time


def test_a_backfill_never_drags_on_time_down():
    # Three sent on time and two events that arrived after their deadline: 100%, not 60%.
    rows = [delivery(f"c{n}", "sent", sent_at=END + timedelta(minutes=5)) for n in range(3)]
    rows += [delivery(f"late{n}", "expired", reason="late_event", channel=None) for n in range(2)]
    timing = on_time_of(rows)
    assert timing == OnTime(finished=3, on_time=3, late_events=2)
    assert timing.rate == 1.0


def test_expiring_for_encores_own_reasons_counts_against_on_time():
    rows = [delivery("a", "sent", sent_at=END), delivery("b", "expired", reason="deadline"),
            delivery("c", "expired", reason="quiet_hours"), delivery("d", "sent", sent_at=DEADLINE + timedelta(seconds=1))]
    assert on_time_of(rows) == OnTime(finished=4, on_time=1, late_events=0)


@pytest.mark.parametrize(("state", "reason", "counts"), [
    ("sent", None, True), ("expired", "deadline", True), ("expired", "late_event", False),
    ("suppressed", "holdout", False), ("suppressed", "frequency_cap", False), ("failed", "channels_exhausted", False),
    ("scheduled", None, False), ("cancelled", "refunded", False),
])
def test_which_deliveries_count_toward_on_time(state, reason, counts):
    assert counts_toward_on_time(state, reason) is counts


def test_nothing_finished_reads_as_fully_on_time_as_status_always_has():
    assert on_time_rate(0, 0) == 1.0
    assert on_time_rate(2, 3) == 0.666667


# ------------------------------------------------------------------ revenue


def test_revenue_is_exact_until_written_once_per_currency():
    # 3 x 0.333 = 0.999 is kept exact, so 44.98 + 0.999 rounds once to 45.98 (not 44.98 + 1.00).
    orders = [order("o1", "c1", END, "USD", ("19.99", 2), ("5.00", 1)), order("o2", "c2", END, "USD", ("0.333", 3)),
              order("o3", "c3", END, "IDR", ("150000.5", 1)), order("o4", "c4", END, "EUR", ("10", 1), refunded=True)]
    assert revenue(orders) == {"IDR": "150001", "USD": "45.98"}


# ------------------------------------------------------------------ the whole review

AFTER = END + timedelta(minutes=5)
STREAM = StreamFacts(
    shop="glow", stream="live-1", ended_at=END,
    buyers=[Buyer(f"c{n}", "north_america") for n in (1, 2, 3, 4, 5, 6, 9)] + [Buyer("c7", "europe"),
                                                                             Buyer("c8", "europe")],
    deliveries=[
        delivery("c1", "sent", sent_at=AFTER, redeemed_by="o1"),
        delivery("c2", "sent", channel="sms", sent_at=DEADLINE + timedelta(minutes=30)),
        delivery("c3", "expired", reason="deadline"),
        delivery("c4", "expired", channel=None, reason="late_event"),
        delivery("c5", "suppressed", channel=None, reason="frequency_cap"),
        delivery("c6", "suppressed", channel=None, reason="holdout", experiment="market:north_america@x",
                 variant="control"),
        delivery("c7", "sent", market="europe", sent_at=AFTER, redeemed_by="o7"),
        delivery("c8", "sent", market="europe", sent_at=AFTER, redeemed_by="o8"),
        delivery("c9", "sent", channel="whatsapp", sent_at=AFTER, redeemed_by="o9"),
    ],
    orders=[
        order("o1", "c1", END + timedelta(days=1), "USD", ("19.99", 2), ("5.00", 1)),
        order("o7", "c7", END + timedelta(days=2), "EUR", ("30.00", 1)),
        order("o8", "c8", END + timedelta(days=2), "EUR", ("10.00", 1), refunded=True),
        order("o9", "c9", END + timedelta(days=3), "USD", ("0.333", 3)),
    ],
)


def test_the_streams_totals():
    review = stream_review(STREAM)
    assert {key: review[key] for key in ("shop", "stream", "ended_at", "buyers", "coupons", "sent", "sent_on_time",
                                         "on_time_rate", "late_events", "redeemed", "revenue")} == {
        "shop": "glow", "stream": "live-1", "ended_at": "2026-03-10T20:00:00Z",
        "buyers": 9,
        "coupons": 8,  # the held-out customer has none
        "sent": 5,
        "sent_on_time": 4,  # c2 went out 30 minutes past its deadline
        "on_time_rate": 0.666667,  # 4 of 6 finished: c4's backfill is apart, c5 never finished
        "late_events": 1,
        "redeemed": 4,  # o8 was refunded after redeeming: it still redeemed...
        "revenue": {"EUR": "30.00", "USD": "45.98"},  # ...but brings no revenue
    }


def test_the_time_from_the_streams_end_to_its_last_message():
    review = stream_review(STREAM)
    assert review["last_message_at"] == "2026-03-11T20:30:00Z"
    assert review["last_message_seconds"] == 24.5 * 3600


def test_a_row_per_market():
    review = stream_review(STREAM)
    assert review["markets"] == [
        {"market": "europe", "buyers": 2, "coupons": 2, "sent": 2, "sent_on_time": 2, "on_time_rate": 1.0,
         "late_events": 0, "redeemed": 2, "revenue": {"EUR": "30.00"}},
        {"market": "north_america", "buyers": 7, "coupons": 6, "sent": 3, "sent_on_time": 2, "on_time_rate": 0.5,
         "late_events": 1, "redeemed": 2, "revenue": {"USD": "45.98"}},
    ]


def test_a_row_per_channel_with_the_undelivered_last():
    review = stream_review(STREAM)
    assert review["channels"] == [
        {"channel": "email", "coupons": 4, "sent": 3, "sent_on_time": 3, "on_time_rate": 0.75, "late_events": 0,
         "redeemed": 3, "revenue": {"EUR": "30.00", "USD": "44.98"}},
        {"channel": "sms", "coupons": 1, "sent": 1, "sent_on_time": 0, "on_time_rate": 0.0, "late_events": 0,
         "redeemed": 0, "revenue": {}},
        {"channel": "whatsapp", "coupons": 1, "sent": 1, "sent_on_time": 1, "on_time_rate": 1.0, "late_events": 0,
         "redeemed": 1, "revenue": {"USD": "1.00"}},
        {"channel": None, "coupons": 2, "sent": 0, "sent_on_time": 0, "on_time_rate": 1.0, "late_events": 1,
         "redeemed": 0, "revenue": {}},
    ]


def test_the_previous_stream_sits_beside_without_its_own_previous():
    earlier = StreamFacts(shop="glow", stream="live-0", ended_at=END - timedelta(days=7),
                          buyers=[Buyer("c1", "north_america")], deliveries=[], orders=[])
    review = stream_review(STREAM, previous=earlier)
    assert review["previous"]["stream"] == "live-0"
    assert (review["previous"]["buyers"], review["previous"]["coupons"]) == (1, 0)
    assert review["previous"]["previous"] is None
    assert review["previous"]["last_message_seconds"] is None
    assert stream_review(STREAM)["previous"] is None


# ------------------------------------------------------------------ experiment groups

EXPERIMENT = "market:north_america@abc"


def test_repurchase_is_any_order_inside_the_coupons_window_for_every_group():
    rows = [delivery(f"k{n}", "suppressed", channel=None, reason="holdout", experiment=EXPERIMENT, variant="control")
            for n in range(1, 5)]
    rows += [delivery(f"v{n}", "sent", sent_at=AFTER, experiment=EXPERIMENT, variant="depth20",
                      redeemed_by="ov1" if n == 1 else None) for n in range(1, 6)]
    orders = [
        order("ok1", "k1", END + timedelta(days=2)),  # control, came back without a coupon: counts
        order("ok2", "k2", END - timedelta(hours=1)),  # the stream's own order: not a repurchase
        order("ok3", "k3", VALID_UNTIL + timedelta(seconds=1)),  # after the window
        order("ov1", "v1", END + timedelta(days=1)),  # redeemed the coupon
        order("ov2", "v2", END + timedelta(days=5)),  # bought again without the code: still a repurchase
        order("ov3", "v3", END + timedelta(days=2), refunded=True),  # refunded: no
        order("ov4", "v4", END),  # at the trigger itself: not after it
    ]
    groups = experiment_groups(rows, orders)
    assert groups == [
        {"experiment": EXPERIMENT, "variant": "control", "customers": 4, "repurchased": 1, "repurchase_rate": 0.25,
         "ci95": None},
        # Newcombe's interval for 2/5 - 1/4; statsmodels 0.15.0 gives (-0.380717232, 0.572077155).
        {"experiment": EXPERIMENT, "variant": "depth20", "customers": 5, "repurchased": 2, "repurchase_rate": 0.4,
         "ci95": [-0.380717, 0.572077]},
    ]


def test_groups_are_per_experiment_and_without_a_control_there_is_no_interval():
    rows = [delivery("a", "sent", sent_at=AFTER, experiment="market:b@2", variant="x"),
            delivery("b", "sent", sent_at=AFTER, experiment="market:a@1", variant="zeta"),
            delivery("c", "suppressed", reason="holdout", experiment="market:a@1", variant="control"),
            delivery("d", "sent", sent_at=AFTER, experiment="market:a@1", variant="alpha"),
            delivery("e", "sent", sent_at=AFTER)]  # no experiment applies: in no group
    groups = experiment_groups(rows, [])
    assert [(g["experiment"], g["variant"]) for g in groups] == [
        ("market:a@1", "control"), ("market:a@1", "alpha"), ("market:a@1", "zeta"), ("market:b@2", "x")]
    assert groups[-1]["ci95"] is None
    assert groups[1]["ci95"] is not None


def test_a_customer_counts_once_per_group():
    rows = [delivery("a", "sent", sent_at=AFTER, experiment=EXPERIMENT, variant="x"),
            delivery("a", "sent", sent_at=AFTER, experiment=EXPERIMENT, variant="x"),
            delivery("b", "suppressed", reason="holdout", experiment=EXPERIMENT, variant="control")]
    groups = experiment_groups(rows, [order("o", "a", END + timedelta(days=1))])
    assert [(g["variant"], g["customers"], g["repurchased"]) for g in groups] == [("control", 1, 0), ("x", 1, 1)]
    # statsmodels 0.15.0: 1/1 - 0/1 → (-0.12210872068194178, 1.0); rounded to six places here.
    assert groups[1]["ci95"] == [-0.122109, 1.0]
