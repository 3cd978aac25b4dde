"""orders.plan_failed_at: a trigger whose planning raised is dead-lettered once, not retried every minute

Revision ID: 0003_planner
Revises: 0002
"""
from alembic import op
import sqlalchemy as sa
import store.models

revision = "0003_planner"
down_revision = "0003_intake"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("orders") as batch:
        batch.add_column(sa.Column("plan_failed_at", store.models.UTCDateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("orders") as batch:
        batch.drop_column("plan_failed_at")
