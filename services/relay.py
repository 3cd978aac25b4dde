"""The relay: moves due rows from the database to the broker.

The broker is only a doorbell. A row is stamped `enqueued_at` when its id goes
on the queue; if the message is lost (Redis flushed, worker killed), the stamp
ages past the lease and, once the send queue is empty, the relay rings again. Claims are single statements
(`FOR UPDATE SKIP LOCKED` on PostgreSQL; SQLite serialises writers), so two
relays, or two beat processes, never enqueue the same row twice in one lease.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import any_, func, or_, select, update
from sqlalchemy.orm import Session

from coupons.states import DeliveryState
from store.db import rows_changed, session_scope
from store.models import Delivery, InboxEvent

from .bootstrap import Runtime
from .ports import APPLY_EVENTS, SEND_DELIVERIES

SEND_BATCH = 200
"""Deliveries per send task: one SMTP connection and one commit serve them all."""
EVENT_BATCH = 500
"""Stored events per intake task when the relay enqueues them again."""
RELAY_LIMIT = 5000
"""Rows claimed per relay statement; the relay loops until nothing is due."""
EVENT_CLAIM_CHUNK = 1000
"""Inbox rows stamped per statement. With 5,000 ids PostgreSQL joined them back to a
1,000,000-row events table by a sequential scan (EXPLAIN: 250 ms); with 1,000 it looks
each up by primary key (13 ms), and the unapplied scan is an index range either way."""


def release_expired_leases(session: Session, now: datetime) -> int:
    """Deliveries whose worker died (or stalled) mid-send go back to `scheduled`. The
    claim token stays: only the next claim replaces it, and a stalled owner's late
    writes are refused because the row is no longer `sending` (see services.sender)."""
    return rows_changed(session.execute(
        update(Delivery).where(Delivery.state == DeliveryState.SENDING, Delivery.lease_expires_at < now)
        .values(state=DeliveryState.SCHEDULED, lease_expires_at=None, enqueued_at=None, updated_at=now)
    ))


def _stamp_and_return(session: Session, model, ready, order_by, now: datetime, requeue_after: timedelta,
                      limit: int) -> list:
    """Claim up to `limit` rows that are `ready` and not waiting in the broker (or whose
    message is presumed lost), stamping `enqueued_at` in the same statement."""
    return _stamp(session, model, ready & or_(model.enqueued_at.is_(None), model.enqueued_at < now - requeue_after),
                  order_by, now, limit)


def _stamp(session: Session, model, where, order_by, now: datetime, limit: int) -> list:
    pick = select(model.id).where(where).order_by(order_by).limit(limit).with_for_update(skip_locked=True)
    if session.get_bind().dialect.name == "postgresql":
        # `id = ANY(ARRAY(pick))`: the pick runs once and the update finds its rows by
        # primary key. With `id IN (pick)` PostgreSQL hash-joins against a scan of the
        # whole table (measured: 180 ms at 1,000,000 rows, see bench/relay_claim.py).
        picked = model.id == any_(func.array(pick.scalar_subquery()))
    else:
        picked = model.id.in_(pick.scalar_subquery())
    return list(session.execute(
        update(model).where(picked).values(enqueued_at=now).returning(model.id)
    ).scalars())


def claim_due_deliveries(session: Session, now: datetime, requeue_after: timedelta,
                         limit: int = RELAY_LIMIT, *, broker_holds_none: bool = True) -> list[int]:
    """Due deliveries not already waiting in the broker, stamped `enqueued_at`.

    A row stamped longer than `requeue_after` ago whose row is still `scheduled` had
    its message lost, unless the message is still queued behind a long backlog. So
    those rows are enqueued again only when `broker_holds_none` (the send queue is
    empty): everything enqueued before now has then left the broker. A backlog that
    takes longer than the lease to drain is thus never copied while it drains.

    Both picks are ranges of `ix_deliveries_relay_pick` (state, enqueued_at,
    next_attempt_at): the cost follows the rows picked, not the table's size."""
    scheduled = Delivery.state == DeliveryState.SCHEDULED
    due = Delivery.next_attempt_at <= now
    ids = _stamp(session, Delivery, scheduled & Delivery.enqueued_at.is_(None) & due,
                 Delivery.next_attempt_at, now, limit)
    if broker_holds_none and len(ids) < limit:
        ids += _stamp(session, Delivery, scheduled & (Delivery.enqueued_at < now - requeue_after) & due,
                      Delivery.enqueued_at, now, limit - len(ids))
    return ids


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


def relay_once(runtime: Runtime) -> int:
    """One relay pass: give back expired leases, ring intake for unapplied events and the
    senders for due deliveries. Returns how many deliveries it rang for."""
    clock, doorbell = runtime.clock, runtime.doorbell
    requeue_after = timedelta(seconds=runtime.settings.lease_seconds)
    with session_scope(runtime.database_url) as session:
        release_expired_leases(session, clock())
        # Like sends: stored events whose message is older than the lease are presumed lost
        # only when the intake queue is empty. A million-line `encore emit` on a busy machine
        # can take longer than the lease to apply, and its backlog must not be copied into the
        # broker again. The queue is asked only when there is something to claim (rarely).
        with session.begin_nested() as claim:
            event_ids = claim_unapplied_events(session, clock(), requeue_after)
            if event_ids and doorbell.waiting(APPLY_EVENTS) not in (0, None):
                claim.rollback()
                event_ids = []
    for chunk in batches(event_ids, EVENT_BATCH):
        doorbell.ring(APPLY_EVENTS, chunk)
    # Asked before the first ring of this pass: what this pass enqueues is not lost.
    broker_holds_none = doorbell.waiting(SEND_DELIVERIES) in (0, None)
    enqueued = 0
    while True:
        with session_scope(runtime.database_url) as session:
            due = claim_due_deliveries(session, clock(), requeue_after, broker_holds_none=broker_holds_none)
        for chunk in batches(due, SEND_BATCH):
            doorbell.ring(SEND_DELIVERIES, chunk)
        enqueued += len(due)
        if not due:
            return enqueued
