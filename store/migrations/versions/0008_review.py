"""Experiments and the stream's review (SPEC section 9): each delivery's experiment and
group, the framing and WhatsApp template its coupon was planned with, and each order's
total as the shop reported it (Shopify's `total_price`) for the revenue of redemptions.

Revision ID: 0008_review
Revises: 0004_shops
"""
import sqlalchemy as sa
from alembic import op

revision = "0008_review"
down_revision = "0007_region_feedback"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("deliveries") as batch:
        batch.add_column(sa.Column("experiment", sa.String(length=160), nullable=True))
        batch.add_column(sa.Column("variant", sa.String(length=40), nullable=True))
    with op.batch_alter_table("coupons") as batch:
        batch.add_column(sa.Column("framing", sa.String(length=16), nullable=True))
        batch.add_column(sa.Column("template", sa.String(length=512), nullable=True))
    with op.batch_alter_table("orders") as batch:
        batch.add_column(sa.Column("total", sa.String(length=40), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("orders") as batch:
        batch.drop_column("total")
    with op.batch_alter_table("coupons") as batch:
        batch.drop_column("template")
        batch.drop_column("framing")
    with op.batch_alter_table("deliveries") as batch:
        batch.drop_column("variant")
        batch.drop_column("experiment")
