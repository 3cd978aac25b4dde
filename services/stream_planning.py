"""A stream's planning run: one planner at a time per stream (a lease in the stream's
row), its buyers planned in committed chunks so that sending overlaps planning, and
the sweep that starts the streams whose wait is over."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from coupons.shops import shop_of_key
from coupons.timing import STREAM_WAIT
from store.bulk import dialect_insert
from store.db import rows_changed, session_scope
from store.models import Order, Stream

from .bootstrap import Runtime
from .planner import PLAN_CHUNK, plan_isolated, record_plan_failure, stream_requests
from .ports import PLAN_STREAM, RELAY


def next_unplanned_customers(session: Session, stream_id: str, after: str, chunk: int = PLAN_CHUNK) -> list[str]:
    """The next customer ids (keyset order, after `after`) with an unplanned order in the stream."""
    return list(session.scalars(
        select(Order.customer_id).where(Order.stream_id == stream_id, Order.coupon_id.is_(None),
                                        Order.plan_failed_at.is_(None), Order.customer_id > after)
        .group_by(Order.customer_id).order_by(Order.customer_id).limit(chunk)
    ))


PLANNING_LEASE = timedelta(minutes=5)
"""Far above one chunk's time; renewed per chunk; lets the sweep take over from a dead planner."""


def claim_stream_planning(session: Session, stream_id: str, now: datetime) -> bool:
    """Own the stream's planning for one lease; False while another planner owns it,
    so a sweep and a stream.ended never plan the same stream side by side."""
    session.execute(dialect_insert(session)(Stream).values(id=stream_id, shop=shop_of_key(stream_id))
                    .on_conflict_do_nothing(index_elements=["id"]))
    claimed = rows_changed(session.execute(
        update(Stream).where(Stream.id == stream_id,
                             (Stream.planning_until.is_(None)) | (Stream.planning_until < now))
        .values(planning_until=now + PLANNING_LEASE)
    ))
    return claimed == 1


def renew_stream_planning(session: Session, stream_id: str, now: datetime, done: bool = False) -> None:
    session.execute(update(Stream).where(Stream.id == stream_id)
                    .values(planning_until=None if done else now + PLANNING_LEASE))


def plan_stream(runtime: Runtime, stream_id: str) -> int:
    """Plan a stream's unplanned buyers, one committed chunk at a time; returns how many
    customers were planned (0 when another planner holds the stream).

    Each chunk that scheduled deliveries rings the relay after its commit, so sending
    overlaps planning, and memory stays flat however many buyers the stream had."""
    with session_scope(runtime.database_url) as session:
        if not claim_stream_planning(session, stream_id, runtime.clock()):
            return 0  # another planner has it
    planned, after = 0, ""
    try:
        while True:
            with session_scope(runtime.database_url) as session:
                customer_ids = next_unplanned_customers(session, stream_id, after)
                renew_stream_planning(session, stream_id, runtime.clock(), done=not customer_ids)
                if not customer_ids:
                    return planned
                plan_stream_chunk(session, runtime, stream_id, customer_ids, runtime.clock())
            planned += len(customer_ids)
            after = customer_ids[-1]
    except Exception:
        with session_scope(runtime.database_url) as session:
            renew_stream_planning(session, stream_id, runtime.clock(), done=True)  # let the retry claim it
        raise


def plan_stream_chunk(session: Session, runtime: Runtime, stream_id: str, customer_ids: list[str],
                      now: datetime) -> int:
    """Plan one chunk of a stream's customers, each in isolation: a customer whose
    planning raises is dead-lettered and the others are planned. The relay is rung after
    the commit when the chunk scheduled deliveries."""
    ended_at = session.scalar(select(Stream.ended_at).where(Stream.id == stream_id))
    trigger_key = f"stream:{stream_id}"

    def failed(customer_id: str, order_ids: list[str], exc: Exception) -> None:
        record_plan_failure(session, trigger_key, customer_id, order_ids, exc, now)

    requests = stream_requests(session, stream_id, ended_at, customer_ids, now, on_error=failed)
    scheduled = plan_isolated(session, runtime, requests, now)
    if scheduled:
        runtime.doorbell.ring_after_commit(session, RELAY)
    return scheduled


def streams_waiting(session: Session, now: datetime) -> list[str]:
    """Streams with unplanned orders that can trigger now: ended, or older than the 6 h wait."""
    return list(session.scalars(
        select(Order.stream_id).outerjoin(Stream, Stream.id == Order.stream_id).where(
            Order.stream_id.is_not(None), Order.coupon_id.is_(None), Order.refunded_at.is_(None),
            Order.plan_failed_at.is_(None),
            (Stream.ended_at.is_not(None)) | (Order.occurred_at <= now - STREAM_WAIT),
        ).group_by(Order.stream_id)
    ))


def sweep_streams(runtime: Runtime) -> int:
    """Ring the planner for every stream that waited long enough (beat, every minute)."""
    with session_scope(runtime.database_url) as session:
        waiting = streams_waiting(session, runtime.clock())
    for stream_id in waiting:
        runtime.doorbell.ring(PLAN_STREAM, stream_id)
    return len(waiting)
