"""Scheduled campaigns: order_items, campaign_runs, coupons.campaign, order indexes

Revision ID: 0003_campaigns
Revises: 0003_sender
"""
import json

import sqlalchemy as sa
from alembic import op

import store.models

revision = "0003_campaigns"
down_revision = "0003_sender"
branch_labels = None
depends_on = None

BACKFILL_BATCH = 5000


def upgrade() -> None:
    op.create_table(
        "order_items",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("order_id", sa.String(length=256), nullable=False),
        sa.Column("customer_id", sa.String(length=256), nullable=False),
        sa.Column("line_key", sa.Text(), nullable=False),
        sa.Column("sku", sa.Text(), nullable=False),
        sa.Column("refill_sku", sa.Text(), nullable=True),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("unit_price", sa.String(length=40), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("occurred_at", store.models.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_order_items_customer_line", "order_items", ["customer_id", "line_key", "occurred_at"])
    op.create_table(
        "campaign_runs",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("campaign", sa.String(length=100), nullable=False),
        sa.Column("scheduled_at", store.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("started_at", store.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("finished_at", store.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column("lease_until", store.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column("after_customer", sa.String(length=256), server_default="", nullable=False),
        sa.Column("planned", sa.Integer(), server_default="0", nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("campaign", "scheduled_at", name="uq_campaign_run"),
    )
    with op.batch_alter_table("coupons") as batch:
        batch.add_column(sa.Column("campaign", sa.String(length=100), nullable=True))
    op.create_index("ix_coupons_campaign_customer", "coupons", ["campaign", "customer_id", "created_at"])
    op.create_index("ix_orders_customer_occurred", "orders", ["customer_id", "occurred_at"])
    op.create_index("ix_orders_occurred", "orders", ["occurred_at"])
    _backfill_order_items()


def _backfill_order_items() -> None:
    """Items of the orders stored before this revision (keyset batches: flat memory)."""
    bind = op.get_bind()
    orders = sa.table("orders", sa.column("id", sa.String), sa.column("customer_id", sa.String),
                      sa.column("currency", sa.String), sa.column("items", sa.JSON),
                      sa.column("occurred_at", store.models.UTCDateTime()))
    items = sa.table("order_items", *(sa.column(c) for c in (
        "order_id", "customer_id", "line_key", "sku", "refill_sku", "name", "unit_price", "quantity",
        "currency")), sa.column("occurred_at", store.models.UTCDateTime()))
    after = ""
    while True:
        batch = bind.execute(sa.select(orders).where(orders.c.id > after).order_by(orders.c.id)
                             .limit(BACKFILL_BATCH)).all()
        if not batch:
            return
        rows = []
        for order in batch:
            raw_items = order.items if isinstance(order.items, list) else json.loads(order.items)
            for item in raw_items:
                rows.append(dict(
                    order_id=order.id, customer_id=order.customer_id,
                    line_key=item.get("refill_sku") or item["sku"], sku=item["sku"],
                    refill_sku=item.get("refill_sku"), name=item["name"], unit_price=str(item["unit_price"]),
                    quantity=int(item["quantity"]), currency=order.currency, occurred_at=order.occurred_at,
                ))
        if rows:
            bind.execute(items.insert(), rows)
        after = batch[-1].id


def downgrade() -> None:
    op.drop_index("ix_orders_occurred", table_name="orders")
    op.drop_index("ix_orders_customer_occurred", table_name="orders")
    op.drop_index("ix_coupons_campaign_customer", table_name="coupons")
    with op.batch_alter_table("coupons") as batch:
        batch.drop_column("campaign")
    op.drop_table("campaign_runs")
    op.drop_index("ix_order_items_customer_line", table_name="order_items")
    op.drop_table("order_items")
