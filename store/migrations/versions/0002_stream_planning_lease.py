"""streams.planning_until: one planner per stream at a time

Revision ID: 0002
Revises: 0001
"""
from alembic import op
import sqlalchemy as sa
import store.models

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("streams") as batch:
        batch.add_column(sa.Column("planning_until", store.models.UTCDateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("streams") as batch:
        batch.drop_column("planning_until")
