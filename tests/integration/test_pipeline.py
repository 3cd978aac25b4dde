"""The whole pipeline on real parts: a Celery worker, a real broker and database,
Apprise delivering to a real SMTP server and a real HTTP endpoint.

Each scenario runs on three stacks: PostgreSQL + Redis, PostgreSQL + RabbitMQ,
and the embedded defaults (SQLite + the SQLite broker, no server).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tests.support import order_paid, running_stack, stream_ended, wait_until, zone_where_local_hour_is


@pytest.fixture(params=["postgres+redis", "postgres+rabbitmq", "embedded"])
def stack(request, monkeypatch, tmp_path):
    if request.param == "embedded":
        urls = dict(database_url=f"sqlite:///{tmp_path / 'encore.db'}",
                    broker_url=f"sqla+sqlite:///{tmp_path / 'broker.db'}")
    else:
        broker = request.getfixturevalue("redis_url" if request.param.endswith("redis") else "rabbit_url")
        urls = dict(database_url=request.getfixturevalue("postgres_url"), broker_url=broker)
        if request.param.endswith("rabbitmq"):
            _purge_rabbit(broker)
    with running_stack(monkeypatch, data_dir=tmp_path, **urls) as running:
        yield running


def _purge_rabbit(url: str) -> None:
    from kombu import Connection

    from tasks.doorbell import QUEUES

    with Connection(url) as conn:
        channel = conn.channel()
        for queue in QUEUES:
            try:
                channel.queue_purge(queue)
            except Exception:
                channel = conn.channel()  # the queue does not exist yet



def daytime_zone() -> str:
    return zone_where_local_hour_is(13)


def test_an_order_becomes_a_sent_email_with_the_refill_price(stack):
    # Given a US customer who bought a consumable at USD 20.00, at their local midday
    event = order_paid("evt-1", customer_id="ann", timezone=daytime_zone(), name="Ann")
    # When the order is emitted
    report = stack.emit(event)
    assert (report.accepted, report.rejected) == (1, 0)
    # Then one email arrives, offering the refill at 14.00 with the coupon's code
    assert stack.smtp.wait_for(1, timeout=30)
    [row] = stack.wait_for_states(1, ("sent",))
    mail = stack.smtp.messages[0]
    body = mail.get_body(("plain",)).get_content()
    assert mail["To"] == "ann@example.com"
    assert "$14.00" in body and row["code"] in body and "Ann" in body
    assert row["offer"] == {"type": "refill", "sku": "shampoo-refill", "currency": "USD", "price": "14.00"}
    assert row["channel"] == "email" and row["attempts"] == 1


def test_three_orders_in_one_stream_give_one_coupon_after_the_stream_ends(stack):
    # Given three orders by one customer during a livestream
    zone = daytime_zone()
    items = [
        [{"sku": "mug", "name": "Mug", "unit_price": "12.00", "quantity": 1}],
        [{"sku": "lamp", "name": "Lamp", "unit_price": "40.00", "quantity": 1}],
        [{"sku": "tea", "name": "Tea", "unit_price": "9.00", "quantity": 3}],
    ]
    stack.emit(*[order_paid(f"evt-s{i}", customer_id="bo", stream_id="live-1", items=item, timezone=zone)
                 for i, item in enumerate(items)])
    wait_until(lambda: stack.query(_order_count()) == [(3,)])
    # Then nothing is planned while the stream runs
    assert stack.deliveries() == []
    # When the stream ends
    stack.emit(stream_ended("evt-end", "live-1"))
    # Then exactly one coupon goes out: half price on the second tea (bought 3)
    [row] = stack.wait_for_states(1, ("sent",))
    assert row["offer"]["type"] == "second_half_price" and row["offer"]["sku"] == "tea"
    assert stack.smtp.wait_for(1, timeout=10) and stack.smtp.count == 1


def test_a_customer_in_quiet_hours_is_scheduled_for_their_local_morning(stack):
    # Given a customer for whom it is 23:00 now
    zone = zone_where_local_hour_is(23)
    stack.emit(order_paid("evt-night", customer_id="cy", timezone=zone))
    # Then the delivery waits until 08:00 their time, and nothing is sent now
    [row] = stack.wait_for_states(1, ("scheduled",))
    due = datetime.fromisoformat(row["due_at"].replace("Z", "+00:00"))
    from zoneinfo import ZoneInfo

    local_due = due.astimezone(ZoneInfo(zone))
    assert (local_due.hour, local_due.minute) == (8, 0)
    assert due > datetime.now(UTC)
    assert stack.smtp.count == 0


def test_a_stale_event_expires_at_once(stack):
    # Given an order that happened 25 hours ago
    stack.emit(order_paid("evt-old", customer_id="di", occurred_at=datetime.now(UTC) - timedelta(hours=25)))
    # Then it is recorded and ends expired, without a message
    [row] = stack.wait_for_states(1, ("expired",))
    assert row["sent_at"] is None
    assert stack.smtp.count == 0


def test_a_repeated_event_id_gives_one_coupon(stack):
    event = order_paid("evt-dup", customer_id="ed", timezone=daytime_zone())
    first = stack.emit(event)
    second = stack.emit(event, event)
    assert (first.accepted, second.accepted) == (1, 2)
    stack.wait_for_states(1, ("sent",))
    assert len(stack.deliveries()) == 1
    assert stack.smtp.wait_for(1, timeout=10) and stack.smtp.count == 1
    assert stack.status()["events"]["accepted"] == 1


def test_bad_lines_are_rejected_and_the_rest_go_through(stack):
    zone = daytime_zone()
    bad_price = order_paid("evt-bad", customer_id="fay")
    bad_price["data"]["items"][0]["unit_price"] = "-1"
    report = stack.emit(order_paid("evt-g1", customer_id="gus", timezone=zone), "{not json", bad_price,
                        order_paid("evt-g2", customer_id="hal", timezone=zone))
    assert (report.accepted, report.rejected) == (2, 2)
    assert report.rejected_lines[1] == (3, "data.items[0].unit_price: must be > 0")
    rows = stack.wait_for_states(2, ("sent",))
    assert sorted(r["customer_id"] for r in rows) == ["gus", "hal"]
    assert stack.status()["events"] == {"accepted": 2, "rejected": 2}


def _order_count():
    from sqlalchemy import func, select

    from store.models import Order

    return select(func.count()).select_from(Order)
