"""deliveries.next_attempt_at (due_at stays the planned due time), claim_token (fenced
leases), and the relay's pick index.

Revision ID: 0003_sender
Revises: 0003_planner
"""
import sqlalchemy as sa
from alembic import op

import store.models

revision = "0003_sender"
down_revision = "0003_planner"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("deliveries") as batch:
        batch.add_column(sa.Column("next_attempt_at", store.models.UTCDateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("claim_token", sa.String(length=32), nullable=True))
    # Until now due_at held the next attempt's time: carry it over.
    op.execute("UPDATE deliveries SET next_attempt_at = due_at")
    with op.batch_alter_table("deliveries") as batch:
        batch.create_index("ix_deliveries_relay_pick", ["state", "enqueued_at", "next_attempt_at"], unique=False)


def downgrade() -> None:
    op.execute("UPDATE deliveries SET due_at = next_attempt_at WHERE state = 'scheduled' AND next_attempt_at IS NOT NULL")
    with op.batch_alter_table("deliveries") as batch:
        batch.drop_index("ix_deliveries_relay_pick")
        batch.drop_column("claim_token")
        batch.drop_column("next_attempt_at")
