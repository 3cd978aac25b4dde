"""`encore status` and `encore deliveries` on large tables: set-based and streamed, so a
shop with a million deliveries gets an answer without the command holding them all."""

from __future__ import annotations

import io
import json
import tracemalloc
from datetime import timedelta

from tests.support import order_paid


def _add_deliveries(services, rows: list[dict]) -> None:
    """Insert coupons and deliveries straight into the tables (fast, for big reports)."""
    from store.models import Coupon, Delivery

    now = services.clock()
    with services.session() as session:
        session.execute(Coupon.__table__.insert(), [dict(
            id=n + 1, code=f"CODE{n:08d}", trigger_key=f"order:o{n}", customer_id=f"c{n}", market="north_america",
            offer_type="refill", sku="refill", product_name="Refill", currency="USD", price="14.00",
            regular_price="20.00", created_at=now, expires_at=now + timedelta(days=7)) for n in range(len(rows))])
        session.execute(Delivery.__table__.insert(), [dict(
            coupon_id=n + 1, customer_id=f"c{n}", trigger_at=now, deadline_at=now + timedelta(hours=24),
            attempts=1, channel_attempts=0, failed_channels=[], updated_at=now, **{"channel": None, "reason": None, **row})
            for n, row in enumerate(rows)])


def _sent(services, latency_seconds: float, late: bool = False) -> dict:
    due = services.clock()
    sent = due + timedelta(hours=25) if late else due + timedelta(seconds=latency_seconds)
    return dict(state="sent", due_at=due, sent_at=sent, channel="email")


def test_latency_and_on_time_rate_are_computed_by_the_database(services):
    # Given 100 sends 1..100 s after they were due, 4 of them after their deadline, and 20 expired
    rows = [_sent(services, n) for n in range(1, 97)] + [_sent(services, 0, late=True) for _ in range(4)]
    rows += [dict(state="expired", due_at=services.clock(), sent_at=None, reason="deadline")] * 20
    rows += [dict(state="scheduled", due_at=services.clock(), sent_at=None)] * 3
    _add_deliveries(services, rows)
    # When
    report = services.status()
    # Then the nearest-rank percentiles, from the due time to the send
    assert report["latency_seconds"]["p50"] == 50.0
    assert report["latency_seconds"]["p95"] == 95.0
    assert report["latency_seconds"]["p99"] == 25 * 3600.0
    # and the share of finished deliveries (sent or expired) sent before their deadline
    assert report["on_time_rate"] == round(96 / 120, 6)
    assert report["deliveries"]["sent"] == 100 and report["deliveries"]["expired"] == 20
    assert report["deliveries"]["scheduled"] == 3
    assert set(report) == {"events", "deliveries", "on_time_rate", "latency_seconds"}


def test_status_of_an_empty_database_matches_the_spec_shape(services):
    assert services.status() == {
        "events": {"accepted": 0, "rejected": 0},
        "deliveries": {"scheduled": 0, "sending": 0, "sent": 0, "failed": 0, "expired": 0, "suppressed": 0,
                       "cancelled": 0},
        "on_time_rate": 1.0,
        "latency_seconds": {"p50": 0.0, "p95": 0.0, "p99": 0.0},
    }


def test_events_that_failed_when_applied_count_as_rejected(services):
    from store.models import DeadLetter

    # Given two stored events, one bad line refused at the edge
    rejected = services.emit(order_paid("e1", customer_id="c1", occurred_at=services.clock()),
                             order_paid("e2", customer_id="c2", occurred_at=services.clock()), "{not json")
    assert len(rejected) == 1
    # and one of the stored events failed when applied (as apply_events records it)
    with services.session() as session:
        session.add(DeadLetter(source="apply", raw="{}", reason="boom", received_at=services.clock()))
    # Then status counts the refused line and the failed event as rejected, and only one as accepted
    assert services.status()["events"] == {"accepted": 1, "rejected": 2}
    # And a planning failure is a trigger, not an event: it changes neither count
    with services.session() as session:
        session.add(DeadLetter(source="plan", raw='{"trigger_key": "order:x", "customer_id": "c9"}',
                               reason="boom", received_at=services.clock()))
    assert services.status()["events"] == {"accepted": 1, "rejected": 2}


def test_status_memory_stays_flat_however_many_deliveries(services):
    from services.reports import status

    services.status()  # warm up: compiled statements and connections are not what we measure
    # Given 20,000 sent deliveries
    _add_deliveries(services, [_sent(services, n % 600) for n in range(20_000)])
    # When status runs
    with services.session() as session:
        tracemalloc.start()
        report = status(session)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    # Then no row was loaded into Python: the peak is far below what 20,000 rows take (~10 MB)
    assert report["deliveries"]["sent"] == 20_000
    assert peak < 1_000_000


def test_deliveries_are_streamed_not_loaded_at_once(services):
    from services.reports import iter_deliveries
    from workers.cli import write_json_array

    _add_deliveries(services, [_sent(services, 1) for _ in range(20_000)])
    # When every delivery is written as a JSON array
    out = io.StringIO()
    with services.session() as session:
        rows = iter_deliveries(session)
        tracemalloc.start()
        first = next(rows)
        _, peak_for_first = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        write_json_array(rows, io.StringIO())
    # Then the first row came without loading the 20,000 (each row is ~1 KB as Python objects)
    assert first["customer_id"] == "c0"
    assert peak_for_first < 5_000_000
    # And the output is one valid JSON array
    with services.session() as session:
        write_json_array(iter_deliveries(session), out)
    parsed = json.loads(out.getvalue())
    assert len(parsed) == 20_000 and parsed[-1]["customer_id"] == "c19999"


def test_deliveries_json_has_the_spec_fields(services):
    from services.reports import iter_deliveries
    from workers.cli import write_json_array

    services.emit(order_paid("e1", customer_id="c1", occurred_at=services.clock(), timezone="UTC"))
    out = io.StringIO()
    with services.session() as session:
        write_json_array(iter_deliveries(session, "nobody"), out)
    assert json.loads(out.getvalue()) == []
    out = io.StringIO()
    with services.session() as session:
        write_json_array(iter_deliveries(session, "c1"), out)
    [row] = json.loads(out.getvalue())
    assert {"customer_id", "code", "offer", "channel", "state", "reason", "trigger_at", "due_at", "deadline_at",
            "sent_at", "attempts", "redeemed_at", "trigger", "campaign"} <= set(row)
    assert row["trigger"] == "order" and row["campaign"] is None
    assert row["offer"] == {"type": "refill", "sku": "shampoo-refill", "currency": "USD", "price": "14.00"}
