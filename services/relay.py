"""The relay: moves due rows from the database to the broker.

The broker is only a doorbell. A row is stamped `enqueued_at` when its id goes
on the queue; if the message is lost (Redis flushed, worker killed), the stamp
ages past the lease and the relay rings again. Claims are single statements
(`FOR UPDATE SKIP LOCKED` on PostgreSQL; SQLite serialises writers), so two
relays, or two beat processes, never enqueue the same row twice in one lease.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from store.models import SCHEDULED, SENDING, Delivery, InboxEvent

SEND_BATCH = 200
"""Deliveries per send task: one SMTP connection and one commit serve them all."""
RELAY_LIMIT = 5000
"""Rows claimed per relay statement; the relay loops until nothing is due."""
EVENT_CLAIM_CHUNK = 1000
"""Inbox rows stamped per statement. With 5,000 ids PostgreSQL joined them back to a
1,000,000-row events table by a sequential scan (EXPLAIN: 250 ms); with 1,000 it looks
each up by primary key (13 ms), and the unapplied scan is an index range either way."""


def release_expired_leases(session: Session, now: datetime) -> int:
    """Deliveries whose worker died mid-send go back to `scheduled`."""
    return session.execute(
        update(Delivery).where(Delivery.state == SENDING, Delivery.lease_expires_at < now)
        .values(state=SCHEDULED, lease_expires_at=None, enqueued_at=None, updated_at=now)
    ).rowcount


def _stamp_and_return(session: Session, model, ready, order_by, now: datetime, requeue_after: timedelta,
                      limit: int) -> list:
    """Claim up to `limit` rows that are `ready` and not waiting in the broker (or whose
    message is presumed lost), stamping `enqueued_at` in the same statement."""
    pick = (
        select(model.id)
        .where(ready, or_(model.enqueued_at.is_(None), model.enqueued_at < now - requeue_after))
        .order_by(order_by)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    return list(session.execute(
        update(model).where(model.id.in_(pick.scalar_subquery())).values(enqueued_at=now).returning(model.id)
    ).scalars())


def claim_due_deliveries(session: Session, now: datetime, requeue_after: timedelta,
                         limit: int = RELAY_LIMIT) -> list[int]:
    """Due deliveries not already waiting in the broker."""
    ready = (Delivery.state == SCHEDULED) & (Delivery.due_at <= now)
    return _stamp_and_return(session, Delivery, ready, Delivery.due_at, now, requeue_after, limit)


def claim_unapplied_events(session: Session, now: datetime, requeue_after: timedelta,
                           limit: int = RELAY_LIMIT) -> list[str]:
    """Inbox rows stored but not applied, whose queue message is presumed lost. Oldest
    received first: the partial index `ix_events_unapplied` serves both the filter and the
    order, so no statement sorts the backlog (apply_events orders each batch by
    occurred_at itself). Claimed in chunks: see `EVENT_CLAIM_CHUNK`."""
    claimed: list[str] = []
    while len(claimed) < limit:
        chunk = _stamp_and_return(session, InboxEvent, InboxEvent.processed_at.is_(None), InboxEvent.received_at,
                                  now, requeue_after, min(EVENT_CLAIM_CHUNK, limit - len(claimed)))
        claimed += chunk
        if len(chunk) < EVENT_CLAIM_CHUNK:
            break
    return claimed


def batches(ids: list, size: int) -> list[list]:
    return [ids[i : i + size] for i in range(0, len(ids), size)]
