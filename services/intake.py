"""The inbox: store events durably (unique id), then apply them one by one.

Storing and applying are separate steps so that an event is never lost between
the shop and the queue: `encore emit` commits the inbox rows first, and the
relay re-enqueues any row that was stored but never applied.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy import select, text, update
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from coupons import consent
from coupons.events import Event, load_json, validate_event
from coupons.model import CHANNELS
from store.models import (
    CANCELLED,
    SCHEDULED,
    SENDING,
    SENT,
    Coupon,
    Customer,
    Delivery,
    InboxEvent,
    Order,
    PendingRefund,
    Stream,
)

from .planner import PlanRequest, dialect_insert, stream_requests
from .planner import plan_isolated as _plan_isolated  # moved to the planner: one isolation for intake and streams
from .failures import failure_reason, store_dead_letter
from .redemption import redeem
from .runtime import Runtime

log = logging.getLogger(__name__)


def store_events(session: Session, events: list[Event], now: datetime) -> list[str]:
    """Insert new events into the inbox; returns the ids that were new (repeats are ignored)."""
    if not events:
        return []
    rows = [dict(id=e.id, type=e.type, occurred_at=e.occurred_at, received_at=now, payload=payload_of(e),
                 enqueued_at=now)
            for e in {e.id: e for e in events}.values()]
    inserted = session.execute(
        dialect_insert(session)(InboxEvent).values(rows).on_conflict_do_nothing(index_elements=["id"])
        .returning(InboxEvent.id)
    ).scalars().all()
    return list(inserted)


def payload_of(event: Event) -> str:
    """The text stored in the inbox: as received when known (parse_event checked that it
    is storable), else re-encoded with escapes (ASCII, so any database takes it)."""
    if event.text is not None:
        return event.text.strip()
    return json.dumps(event.raw, separators=(",", ":"))


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
                event = validate_event(load_json(row.payload), row.received_at)
                plan_requests += _apply(session, event, now, applied)
        except OperationalError:
            raise  # the database, not the event: the whole batch is retried, nothing is dead-lettered
        except Exception as exc:  # a bug or bad data must not block the other events
            reason = failure_reason(exc)
            log.error("applying event %s failed: %s", row.id, reason)  # ids only: no payload in logs
            log.debug("applying event %s failed", row.id, exc_info=True)
            store_dead_letter(session, "apply", row.payload, reason, now)
        row.processed_at = now
    session.flush()
    applied.scheduled += _plan_isolated(session, runtime, plan_requests, now)
    return applied


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
        _order_refunded(session, event, now)
    elif event.type == "customer.opted_out":
        _opted_out(session, event)
    elif event.type == "coupon.redeemed":
        result = redeem(session, data.code, data.order_id, now)
        log.info("coupon.redeemed %s: %s", event.id, result.status)
    return []


def _order_paid(session: Session, event: Event, now: datetime) -> list[PlanRequest]:
    data = event.data
    c = data.customer
    profile = dict(name=c.name, country=c.country, locale=c.locale, timezone=c.timezone, email=c.email,
                   phone=c.phone, whatsapp=c.whatsapp, line_id=c.line_id, telegram_id=c.telegram_id)
    customer = _locked_customer(session, c.id)
    if customer is None:
        state = consent.after_order({}, c.consent, event.occurred_at)
        if not _insert_customer(session, c.id, state, event.occurred_at, **profile):
            customer = _locked_customer(session, c.id)  # another worker inserted it first
    if customer is not None:
        if not customer.country or event.occurred_at >= customer.updated_at:
            # The profile comes from the newest order (an opt-out placeholder has none yet).
            for name, value in profile.items():
                setattr(customer, name, value)
            customer.updated_at = event.occurred_at
        _set_consent(customer, consent.after_order(consent_state(customer), c.consent, event.occurred_at))
    _lock_order_id(session, data.order_id)
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
    early_refund = session.get(PendingRefund, data.order_id)
    if early_refund is not None:
        # Its refund came first: store the order as refunded, so nothing is promised for it.
        session.execute(update(Order).where(Order.id == data.order_id).values(refunded_at=early_refund.received_at))
        session.delete(early_refund)
        if data.stream_id is None:
            return []
    session.flush()
    if early_refund is None:
        _redeem_discount_codes(session, data.discount_codes or [], data.order_id, now)
    if data.stream_id is None:
        return [PlanRequest(f"order:{data.order_id}", c.id, event.occurred_at, (data.order_id,))]
    ended_at = session.scalar(select(Stream.ended_at).where(Stream.id == data.stream_id))
    if ended_at is None:
        return []  # waits for stream.ended, or the 6 h sweep
    return stream_requests(session, data.stream_id, ended_at, [c.id], now)


def _order_refunded(session: Session, event: Event, now: datetime) -> None:
    order_id = event.data.order_id
    _lock_order_id(session, order_id)
    order = session.scalars(select(Order).where(Order.id == order_id)
                            .execution_options(populate_existing=True)).one_or_none()
    if order is None:
        # The refund overtook its order: keep it until the order arrives.
        session.execute(dialect_insert(session)(PendingRefund).values(
            order_id=order_id, event_id=event.id, received_at=now).on_conflict_do_nothing(index_elements=["order_id"]))
        return
    if order.refunded_at is not None:
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
    customer = _locked_customer(session, data.customer_id)
    if customer is None:
        # Remember the opt-out for a customer we have not seen yet (country "" = no profile yet).
        state = consent.after_opt_out({}, channels, event.occurred_at)
        if _insert_customer(session, data.customer_id, state, event.occurred_at, country=""):
            return
        customer = _locked_customer(session, data.customer_id)
    _set_consent(customer, consent.after_opt_out(consent_state(customer), channels, event.occurred_at))


def _locked_customer(session: Session, customer_id: str) -> Customer | None:
    """The customer row, locked until commit (PostgreSQL; SQLite holds the write lock),
    so two workers merging into one customer take turns instead of overwriting."""
    return session.scalars(
        select(Customer).where(Customer.id == customer_id).with_for_update()
        .execution_options(populate_existing=True)
    ).one_or_none()


def _insert_customer(session: Session, customer_id: str, state: consent.ConsentState, updated_at: datetime,
                     **profile) -> bool:
    """Insert a new customer; False when another transaction inserted it first (an
    upsert, not read-then-insert: two first orders applied at once both land)."""
    inserted = session.execute(
        dialect_insert(session)(Customer).values(
            id=customer_id, updated_at=updated_at, consent_changes=_dump_consent(state),
            consent=consent.consented(state), opted_out=consent.opted_out(state), **profile,
        ).on_conflict_do_nothing(index_elements=["id"]).returning(Customer.id)
    ).scalar()
    return inserted is not None


def _lock_order_id(session: Session, order_id: str) -> None:
    """Serialise an order.paid and an order.refunded of one order (PostgreSQL), so a refund
    that arrives while its order is being applied is neither lost nor left pending."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(7150, hashtext(:order_id))"), {"order_id": order_id})


def consent_state(row: Customer) -> dict[str, consent.ChannelConsent]:
    """Per-channel consent of a customer row; rows from before migration 0003 are read
    from their lists as of their `updated_at`."""
    if row.consent_changes:
        return {channel: consent.ChannelConsent(bool(v["granted"]), datetime.fromisoformat(v["at"]), v["by"])
                for channel, v in row.consent_changes.items()}
    opted = set(row.opted_out or ())
    state = {channel: consent.ChannelConsent(False, row.updated_at, consent.OPT_OUT) for channel in opted}
    if row.country:
        for channel in CHANNELS:
            if channel not in opted:
                state[channel] = consent.ChannelConsent(channel in (row.consent or ()), row.updated_at, consent.ORDER)
    return state


def _dump_consent(state: consent.ConsentState) -> dict:
    return {channel: {"granted": c.granted, "at": c.at.astimezone(UTC).isoformat(), "by": c.by}
            for channel, c in state.items()}


def _set_consent(row: Customer, state: consent.ConsentState) -> None:
    row.consent_changes = _dump_consent(state)
    row.consent = consent.consented(state)
    row.opted_out = consent.opted_out(state)


def _redeem_discount_codes(session: Session, codes: list[str], order_id: str, now: datetime) -> None:
    """Rule 13 for shops that only report orders: an Encore code used at checkout
    redeems its coupon. Codes Encore never issued (the shop's own) are ignored."""
    for code in dict.fromkeys(codes):
        result = redeem(session, code, order_id, now)
        if result.status != "unknown":
            log.info("order %s used coupon %s: %s", order_id, result.code, result.status)
