"""Rules 17 and 18: the customer's state (`customers.region`, for US SMS hours and a US
customer's zone), an index on `customers.phone` (an SMS reply acts on every customer
holding its number), and the addresses suppressed on email by a complaint or a
permanent bounce.

Revision ID: 0007_region_feedback
Revises: 0004_shops
"""
import sqlalchemy as sa
from alembic import op

import store.models

revision = "0007_region_feedback"
down_revision = "0004_shops"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("customers") as batch:
        batch.add_column(sa.Column("region", sa.String(length=8), nullable=True))
    op.create_index("ix_customers_phone", "customers", ["phone"])
    utc = store.models.UTCDateTime(timezone=True)
    op.create_table(
        "email_suppressions",
        sa.Column("email", sa.String(length=320), primary_key=True),
        sa.Column("reason", sa.String(length=16), nullable=False),
        sa.Column("occurred_at", utc, nullable=False),
        sa.Column("received_at", utc, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("email_suppressions")
    op.drop_index("ix_customers_phone", table_name="customers")
    with op.batch_alter_table("customers") as batch:
        batch.drop_column("region")
