"""The migrations build exactly the schema the models describe, on SQLite and PostgreSQL:
a column added to a model but forgotten in a migration (or the other way round) would
only show in production, where the database is upgraded rather than created."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from store.db import engine_for
from store.models import Base


def test_an_upgraded_database_matches_the_models(database_url):
    # Given a database created by the migrations alone
    engine = engine_for(database_url)
    # When it is compared with the models
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        differences = compare_metadata(context, Base.metadata)
    # Then there is nothing a new migration would have to add, drop or change
    assert differences == []


SHOP_TABLES = ("events", "dead_letters", "customers", "streams", "orders", "pending_refunds", "coupons",
               "deliveries", "order_items")


def _database_before_shops(database_url: str, now) -> dict[str, int]:
    """A database at the last revision before shops (0003_campaigns), holding what an
    install in use holds: an applied order with its customer, item, coupon, a sent delivery
    and its attempt; an ended stream; an early refund; a dead letter; a campaign run.
    Returns the rows per table."""
    import json
    from datetime import timedelta

    from alembic import command
    from alembic.config import Config
    from sqlalchemy import MetaData, func, insert, select

    from store.db import MIGRATIONS_DIR, make_engine

    engine = make_engine(database_url)
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "0003_campaigns")
    tables = MetaData()
    tables.reflect(engine)
    hour_ago, old = now - timedelta(hours=1), now - timedelta(days=40)
    payload = {"id": "e1", "type": "order.paid", "occurred_at": hour_ago.isoformat(), "data": {
        "order_id": "o1", "currency": "USD", "customer": {"id": "c1", "country": "US", "consent": ["email"],
                                                           "email": "c1@example.com"},
        "items": [{"sku": "shampoo", "name": "Shampoo", "unit_price": "20.00", "quantity": 1}]}}
    rows = {
        "events": [dict(id="e1", type="order.paid", occurred_at=hour_ago, received_at=hour_ago,
                        payload=json.dumps(payload), processed_at=hour_ago)],
        "customers": [dict(id="c1", country="US", email="c1@example.com", consent=["email"], opted_out=[],
                           updated_at=hour_ago)],
        "streams": [dict(id="live-1", ended_at=old)],
        "orders": [dict(id="o1", event_id="e1", customer_id="c1", currency="USD", occurred_at=hour_ago,
                        items=payload["data"]["items"])],
        "order_items": [dict(order_id="o1", customer_id="c1", line_key="shampoo", sku="shampoo", name="Shampoo",
                             unit_price="20.00", quantity=1, currency="USD", occurred_at=hour_ago)],
        "pending_refunds": [dict(order_id="o9", event_id="e9", received_at=hour_ago)],
        "coupons": [dict(code="K7QXM-3PAHZ-2WRTY", trigger_key="order:o1", customer_id="c1",
                         market="north_america", offer_type="percent_off", sku="shampoo", product_name="Shampoo",
                         currency="USD", percent="10", created_at=hour_ago, expires_at=now + timedelta(days=6))],
        "deliveries": [dict(customer_id="c1", state="sent", channel="email", failed_channels=[],
                            trigger_at=hour_ago, due_at=hour_ago, deadline_at=hour_ago + timedelta(days=1),
                            sent_at=hour_ago, attempts=1, channel_attempts=1, updated_at=hour_ago)],
        "attempts": [dict(at=hour_ago, channel="email", outcome="sent", reason="", detail="")],
        "dead_letters": [dict(source="emit:-:2", raw="{", reason="not valid JSON", received_at=hour_ago)],
        "campaign_runs": [dict(campaign="lapsed", scheduled_at=old, state="done", started_at=old)],
    }
    with engine.begin() as connection:
        for table in tables.sorted_tables:  # parents first: their generated ids go into the children
            if table.name in rows:
                ids = connection.execute(insert(table).returning(*table.primary_key.columns), rows[table.name]).all()
                if table.name == "coupons":
                    rows["deliveries"][0]["coupon_id"] = ids[0][0]
                    rows["orders"][0]["coupon_id"] = ids[0][0]
                elif table.name == "deliveries":
                    rows["attempts"][0]["delivery_id"] = ids[0][0]
        counts = {name: connection.scalar(select(func.count()).select_from(tables.tables[name])) for name in rows}
    engine.dispose()
    return counts


def test_a_database_from_before_shops_is_upgraded_with_every_row_in_the_default_shop(make_services, database_url,
                                                                                    clock):
    from sqlalchemy import MetaData, func, select

    from tests.support import order_paid

    # Given a database with the schema and data of the commit before shops
    before = _database_before_shops(database_url, clock())
    # When Encore starts on it (the schema is upgraded on first use)
    services = make_services()
    engine = engine_for(database_url)
    tables = MetaData()
    tables.reflect(engine)
    # Then nothing is lost, and every row belongs to the default shop under its old key
    with engine.connect() as connection:
        for name, count in before.items():
            assert connection.scalar(select(func.count()).select_from(tables.tables[name])) == count, name
        for name in SHOP_TABLES:
            assert set(connection.scalars(select(tables.tables[name].c.shop))) == {"default"}, name
        assert connection.scalar(select(tables.tables["customers"].c.id)) == "c1"
    # And the app reads it as before: the delivery, the status, the customer's cap and coupon
    [row] = services.deliveries()
    assert (row["shop"], row["customer_id"], row["code"], row["state"]) == ("default", "c1", "K7QXM-3PAHZ-2WRTY", "sent")
    assert services.status()["events"] == {"accepted": 1, "rejected": 1}
    later = order_paid("e2", order_id="o2", occurred_at=clock())
    later["data"]["discount_codes"] = ["k7qxm3pahz2wrty"]
    assert services.emit(later) == []
    rows = {row["code"]: row for row in services.deliveries("c1")}
    assert rows["K7QXM-3PAHZ-2WRTY"]["redeemed_at"] is not None  # the old coupon, redeemed by its customer
    [new] = [row for code, row in rows.items() if code != "K7QXM-3PAHZ-2WRTY"]
    assert (new["state"], new["reason"]) == ("suppressed", "frequency_cap")  # the old send still counts
    # An early refund stored before shops still finds its order
    refunded = services.emit(order_paid("e9", order_id="o9", customer_id="c9", occurred_at=clock()))
    assert refunded == [] and [row["customer_id"] for row in services.deliveries("c9")] == []
