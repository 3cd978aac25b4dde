"""Shops (SPEC section 7): every row belongs to a shop, and coupons of a shop with a
platform carry their code's sync to that shop.

Rows stored before shops existed are the `default` shop's (a server default), with
their keys unchanged: the default shop's keys are the ids themselves. Key columns grow
to hold another shop's scoped keys (`coupons.shops.shop_key`); on PostgreSQL a longer
varchar is a catalogue change, not a rewrite.

Revision ID: 0004_shops
Revises: 0003_campaigns
"""
import sqlalchemy as sa
from alembic import op

import store.models

revision = "0004_shops"
down_revision = "0003_campaigns"
branch_labels = None
depends_on = None

SHOP_TABLES = ("events", "dead_letters", "customers", "streams", "orders", "pending_refunds", "coupons",
               "deliveries", "order_items")
WIDER = {  # table -> [(column, old length, new length, nullable)]
    "events": [("id", 128, 200, False)],
    "customers": [("id", 256, 330, False)],
    "streams": [("id", 256, 330, False)],
    "orders": [("id", 256, 330, False), ("event_id", 128, 200, False), ("customer_id", 256, 330, False),
               ("stream_id", 256, 330, True)],
    "pending_refunds": [("order_id", 256, 330, False), ("event_id", 128, 200, False)],
    "coupons": [("trigger_key", 300, 400, False), ("customer_id", 256, 330, False),
                ("redeemed_order_id", 256, 330, True)],
    "deliveries": [("customer_id", 256, 330, False)],
    "order_items": [("order_id", 256, 330, False), ("customer_id", 256, 330, False)],
    "campaign_runs": [("after_customer", 256, 330, False)],
}


def upgrade() -> None:
    for table in SHOP_TABLES:
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("shop", sa.String(length=64), server_default="default", nullable=False))
    for table, columns in WIDER.items():
        with op.batch_alter_table(table) as batch:
            for column, old, new, nullable in columns:
                batch.alter_column(column, existing_type=sa.String(length=old), type_=sa.String(length=new),
                                   existing_nullable=nullable)
    utc = store.models.UTCDateTime(timezone=True)
    with op.batch_alter_table("coupons") as batch:
        batch.add_column(sa.Column("code_synced_at", utc, nullable=True))
        batch.add_column(sa.Column("sync_due_at", utc, nullable=True))
        batch.add_column(sa.Column("sync_claim_token", sa.String(length=32), nullable=True))
        batch.add_column(sa.Column("sync_attempts", sa.Integer(), server_default="0", nullable=False))
        batch.add_column(sa.Column("sync_reason", sa.Text(), nullable=True))
        batch.add_column(sa.Column("code_removal_due_at", utc, nullable=True))
        batch.add_column(sa.Column("code_removed_at", utc, nullable=True))
    op.create_index("ix_coupons_sync_due", "coupons", ["sync_due_at"],
                    postgresql_where=sa.text("sync_due_at IS NOT NULL"), sqlite_where=sa.text("sync_due_at IS NOT NULL"))
    op.create_index("ix_coupons_removal_due", "coupons", ["code_removal_due_at"],
                    postgresql_where=sa.text("code_removal_due_at IS NOT NULL"),
                    sqlite_where=sa.text("code_removal_due_at IS NOT NULL"))


def downgrade() -> None:
    op.drop_index("ix_coupons_removal_due", table_name="coupons")
    op.drop_index("ix_coupons_sync_due", table_name="coupons")
    with op.batch_alter_table("coupons") as batch:
        for column in ("code_removed_at", "code_removal_due_at", "sync_reason", "sync_attempts", "sync_claim_token",
                       "sync_due_at", "code_synced_at"):
            batch.drop_column(column)
    for table, columns in WIDER.items():
        with op.batch_alter_table(table) as batch:
            for column, old, new, nullable in columns:
                batch.alter_column(column, existing_type=sa.String(length=new), type_=sa.String(length=old),
                                   existing_nullable=nullable)
    for table in SHOP_TABLES:
        with op.batch_alter_table(table) as batch:
            batch.drop_column("shop")
