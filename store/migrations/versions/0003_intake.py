"""intake hardening: per-channel consent changes, early refunds, unapplied-events index

Revision ID: 0003_intake
Revises: 0002
"""
from alembic import op
import sqlalchemy as sa
import store.models

revision = "0003_intake"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("customers") as batch:
        batch.add_column(sa.Column("consent_changes", sa.JSON(), nullable=True))
    op.create_table(
        "pending_refunds",
        sa.Column("order_id", sa.String(length=256), nullable=False),
        sa.Column("event_id", sa.String(length=128), nullable=False),
        sa.Column("received_at", store.models.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("order_id"),
    )
    op.create_index("ix_events_unapplied", "events", ["received_at"], unique=False,
                    postgresql_where=sa.text("processed_at IS NULL"), sqlite_where=sa.text("processed_at IS NULL"))


def downgrade() -> None:
    op.drop_index("ix_events_unapplied", table_name="events")
    op.drop_table("pending_refunds")
    with op.batch_alter_table("customers") as batch:
        batch.drop_column("consent_changes")
