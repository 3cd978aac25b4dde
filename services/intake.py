"""The inbox: store events durably (unique id), then apply them one by one.

Storing and applying are separate steps so that an event is never lost between
the shop and the queue: `encore emit` commits the inbox rows first, and the
relay re-enqueues any row that was stored but never applied.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from coupons.events import Event, validate_event
from coupons.model import CHANNELS
from store.models import CANCELLED, SCHEDULED, SENDING, SENT, Coupon, Customer, DeadLetter, Delivery, InboxEvent, Order, Stream

from .planner import PlanRequest, dialect_insert, plan_coupons, stream_requests
from .redemption import redeem
from .runtime import Runtime

log = logging.getLogger(__name__)


def store_events(session: Session, events: list[Event], now: datetime) -> list[str]:
    """Insert new events into the inbox; returns the ids that were new (repeats are ignored)."""
    if not events:
        return []
    rows = [dict(id=e.id, type=e.type, occurred_at=e.occurred_at, received_at=now,
                 payload=json.dumps(e.raw, separators=(",", ":"), ensure_ascii=False), enqueued_at=now)
            for e in {e.id: e for e in events}.values()]
    inserted = session.execute(
        dialect_insert(session)(InboxEvent).values(rows).on_conflict_do_nothing(index_elements=["id"])
        .returning(InboxEvent.id)
    ).scalars().all()
    return list(inserted)


def store_dead_letter(session: Session, source: str, raw: str, reason: str, now: datetime) -> int:
    letter = DeadLetter(source=source, raw=raw, reason=reason, received_at=now)
    session.add(letter)
    session.flush()
    return letter.id


@dataclass
class Applied:
    """What applying a batch asks of the caller after commit."""

    streams_to_plan: set[str] = field(default_factory=set)
    scheduled: int = 0


def apply_events(session: Session, runtime: Runtime, event_ids: list[str], now: datetime) -> Applied:
    """Apply stored, unapplied events in occurrence order; each in a savepoint so one
    failure is dead-lettered without undoing the others."""
    applied = Applied()
    inbox = session.scalars(
        select(InboxEvent).where(InboxEvent.id.in_(event_ids), InboxEvent.processed_at.is_(None))
        .order_by(InboxEvent.occurred_at).with_for_update(skip_locked=True)
    ).all()
    plan_requests: list[PlanRequest] = []
    for row in inbox:
        try:
            with session.begin_nested():
                event = validate_event(json.loads(row.payload))
                plan_requests += _apply(session, event, now, applied)
        except OperationalError:
            raise  # the database, not the event: the whole batch is retried, nothing is dead-lettered
        except Exception as exc:  # a bug or bad data must not block the other events
            log.exception("applying event %s failed", row.id)
            store_dead_letter(session, "apply", row.payload, f"{type(exc).__name__}: {exc}", now)
        row.processed_at = now
    session.flush()
    applied.scheduled += _plan_isolated(session, runtime, plan_requests, now)
    return applied


def _plan_isolated(session: Session, runtime: Runtime, requests: list[PlanRequest], now: datetime) -> int:
    """Plan the batch in bulk; if that fails, plan each trigger alone so one bad
    trigger is dead-lettered instead of taking the batch down with it."""
    try:
        with session.begin_nested():
            return plan_coupons(session, runtime, requests, now)
    except OperationalError:
        raise
    except Exception:
        log.exception("bulk planning failed; planning %d triggers one by one", len(requests))
    scheduled = 0
    for request in requests:
        try:
            with session.begin_nested():
                scheduled += plan_coupons(session, runtime, [request], now)
        except OperationalError:
            raise
        except Exception as exc:
            log.exception("planning %s for %s failed", request.trigger_key, request.customer_id)
            store_dead_letter(session, "plan", f"{request.trigger_key} customer={request.customer_id}",
                              f"{type(exc).__name__}: {exc}", now)
    return scheduled


def _apply(session: Session, event: Event, now: datetime, applied: Applied) -> list[PlanRequest]:
    data = event.data
    if event.type == "order.paid":
        return _order_paid(session, event, now)
    if event.type == "stream.ended":
        session.execute(dialect_insert(session)(Stream).values(id=data.stream_id)
                        .on_conflict_do_nothing(index_elements=["id"]))
        session.execute(update(Stream).where(Stream.id == data.stream_id, Stream.ended_at.is_(None))
                        .values(ended_at=event.occurred_at))
        applied.streams_to_plan.add(data.stream_id)
    elif event.type == "order.refunded":
        _order_refunded(session, data.order_id, now)
    elif event.type == "customer.opted_out":
        _opted_out(session, event)
    elif event.type == "coupon.redeemed":
        result = redeem(session, data.code, data.order_id, now)
        log.info("coupon.redeemed %s: %s", event.id, result.status)
    return []


def _order_paid(session: Session, event: Event, now: datetime) -> list[PlanRequest]:
    data = event.data
    c = data.customer
    customer = session.get(Customer, c.id)
    fields = dict(name=c.name, country=c.country, locale=c.locale, timezone=c.timezone, email=c.email,
                  phone=c.phone, whatsapp=c.whatsapp, line_id=c.line_id, telegram_id=c.telegram_id)
    if customer is None:
        session.add(Customer(id=c.id, consent=list(c.consent), opted_out=[], updated_at=event.occurred_at, **fields))
    elif event.occurred_at >= customer.updated_at or not customer.country:
        is_newer = event.occurred_at >= customer.updated_at
        for name, value in fields.items():
            setattr(customer, name, value)
        customer.consent = list(c.consent)
        if is_newer:
            # Consent given at a later checkout outweighs an earlier opt-out.
            customer.opted_out = [ch for ch in customer.opted_out or [] if ch not in c.consent]
            customer.updated_at = event.occurred_at
    inserted = session.execute(
        dialect_insert(session)(Order).values(
            id=data.order_id, event_id=event.id, customer_id=c.id, stream_id=data.stream_id,
            currency=data.currency, occurred_at=event.occurred_at,
            items=[{"sku": i.sku, "name": i.name, "unit_price": str(i.unit_price), "quantity": i.quantity,
                    "refill_sku": i.refill_sku} for i in data.items],
        ).on_conflict_do_nothing(index_elements=["id"]).returning(Order.id)
    ).scalar()
    if inserted is None:
        return []  # the same order under another event id
    session.flush()
    _redeem_discount_codes(session, data.discount_codes or [], data.order_id, now)
    if data.stream_id is None:
        return [PlanRequest(f"order:{data.order_id}", c.id, event.occurred_at, (data.order_id,))]
    ended_at = session.scalar(select(Stream.ended_at).where(Stream.id == data.stream_id))
    if ended_at is None:
        return []  # waits for stream.ended, or the 6 h sweep
    return stream_requests(session, data.stream_id, ended_at, [c.id], now)


def _order_refunded(session: Session, order_id: str, now: datetime) -> None:
    order = session.get(Order, order_id)
    if order is None or order.refunded_at is not None:
        return
    order.refunded_at = now
    session.flush()
    if order.coupon_id is None:
        return
    live = session.scalar(select(Order.id).where(Order.coupon_id == order.coupon_id, Order.refunded_at.is_(None)).limit(1))
    if live is not None:
        return
    session.execute(update(Delivery).where(Delivery.coupon_id == order.coupon_id, Delivery.state == SCHEDULED)
                    .values(state=CANCELLED, reason="refunded", updated_at=now))
    sent_or_sending = session.scalar(select(Delivery.id).where(
        Delivery.coupon_id == order.coupon_id, Delivery.state.in_((SENT, SENDING))))
    if sent_or_sending is not None:
        session.execute(update(Coupon).where(Coupon.id == order.coupon_id, Coupon.void_at.is_(None)).values(void_at=now))


def _opted_out(session: Session, event: Event) -> None:
    data = event.data
    channels = data.channels if data.channels is not None else list(CHANNELS)
    customer = session.get(Customer, data.customer_id)
    if customer is None:
        # Remember the opt-out for a customer we have not seen yet.
        session.add(Customer(id=data.customer_id, country="", consent=[], opted_out=channels,
                             updated_at=event.occurred_at))
        return
    customer.opted_out = sorted(set(customer.opted_out or []) | set(channels))


def _redeem_discount_codes(session: Session, codes: list[str], order_id: str, now: datetime) -> None:
    """Rule 13 for shops that only report orders: an Encore code used at checkout
    redeems its coupon. Codes Encore never issued (the shop's own) are ignored."""
    for code in dict.fromkeys(codes):
        result = redeem(session, code, order_id, now)
        if result.status != "unknown":
            log.info("order %s used coupon %s: %s", order_id, result.code, result.status)
