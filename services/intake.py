"""The inbox: store events durably (unique id), then apply them in occurrence order.

Storing and applying are separate steps so that an event is never lost between
the shop and the queue: `encore emit` commits the inbox rows first, and the
relay re-enqueues any row that was stored but never applied.
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import TypeVar
from datetime import UTC, datetime

from sqlalchemy import bindparam, delete, select, text, update
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from coupons import consent
from coupons.events import CouponRedeemed, CustomerOptedOut, Event, OrderPaid, OrderRefunded, StreamEnded, load_json, validate_event
from coupons.model import CHANNELS
from coupons.shop_scope import stored_keys
from coupons.shops import shop_key
from coupons.states import DeliveryState, Reason
from store.bulk import dialect_insert, insert_new
from store.db import table_of
from store.models import Coupon, Customer, Delivery, InboxEvent, Order, OrderItem, PendingRefund, Stream
from store.rows import order_item_rows

from .bootstrap import Runtime
from .failures import failure_reason, store_dead_letter
from .planner import PlanRequest, plan_isolated, stream_requests
from .ports import PLAN_STREAM, RELAY
from .redemption import redeem

log = logging.getLogger(__name__)

Data = TypeVar("Data", OrderPaid, StreamEnded, OrderRefunded, CustomerOptedOut, CouponRedeemed)


def data_of(event: Event, kind: type[Data]) -> Data:
    """The event's data as the type its `type` promises (validation made them agree)."""
    if not isinstance(event.data, kind):
        raise TypeError(f"{event.type} event {event.id} carries {type(event.data).__name__}, not {kind.__name__}")
    return event.data


def store_events(session: Session, events: list[Event], now: datetime) -> list[str]:
    """Insert new events into the inbox; returns the stored keys that were new (repeats are
    ignored). An event's key is its id scoped to its shop (`coupons.shops.shop_key`)."""
    if not events:
        return []
    rows = [dict(id=key, shop=e.shop, type=e.type, occurred_at=e.occurred_at, received_at=now,
                 payload=payload_of(e), enqueued_at=now)
            for key, e in {shop_key(e.shop, e.id): e for e in events}.items()]
    # One short statement per batch (store.bulk): a multi-VALUES statement was compiled
    # again for every batch, a third of emit's time.
    return insert_new(session, InboxEvent, rows, ["id"], "id")


def payload_of(event: Event) -> str:
    """The text stored in the inbox: as received when known (parse_event checked that it
    is storable), else re-encoded with escapes (ASCII, so any database takes it)."""
    if event.text is not None:
        return event.text.strip()
    return json.dumps(event.raw, separators=(",", ":"))


@dataclass
class Applied:
    """What applying a batch rang for, after its commit: the streams to plan, and the
    deliveries now scheduled (the relay)."""

    streams_to_plan: set[str] = field(default_factory=set)
    scheduled: int = 0


def apply_events(session: Session, runtime: Runtime, event_ids: list[str], now: datetime) -> Applied:
    """Apply stored, unapplied events in occurrence order, one bad event never undoing the others.

    Consecutive `order.paid` events (the bulk of any shop's traffic) are applied together:
    one upsert of their customers, one insert of their orders, one look-up of early
    refunds, with the same result as applying them one by one in that order (consent
    and profile merges are folded in the same order). If that raises, they are applied
    again one by one, each in a savepoint, so a bad one is dead-lettered alone (the
    pattern of `planner.plan_isolated`). Every other event is applied alone, in its place.

    After the caller commits, the planner is rung for each stream that ended and the
    relay for the deliveries scheduled (`runtime.doorbell`)."""
    applied = Applied()
    inbox = session.execute(
        select(InboxEvent.id, InboxEvent.payload, InboxEvent.received_at, InboxEvent.shop)
        .where(InboxEvent.id.in_(event_ids), InboxEvent.processed_at.is_(None))
        .order_by(InboxEvent.occurred_at).with_for_update(skip_locked=True)
    ).all()
    plan_requests: list[PlanRequest] = []
    orders: list[tuple[str, str, Event]] = []  # a run of consecutive valid order.paid events

    def apply_alone(event_id: str, payload: str, apply: Callable[[], list[PlanRequest]], shop: str) -> None:
        try:
            with session.begin_nested():
                plan_requests.extend(apply())
        except OperationalError:
            raise  # the database, not the event: the whole batch is retried, nothing is dead-lettered
        except Exception as exc:  # a bug or bad data must not block the other events
            reason = failure_reason(exc)
            log.error("applying event %s failed: %s", event_id, reason)  # ids only: no payload in logs
            log.debug("applying event %s failed", event_id, exc_info=True)
            store_dead_letter(session, "apply", payload, reason, now, shop)

    def apply_orders() -> None:
        if len(orders) > 1:
            try:
                with session.begin_nested():
                    plan_requests.extend(_orders_paid(session, [event for _, _, event in orders], now))
                orders.clear()
                return
            except OperationalError:
                raise
            except Exception as exc:
                log.warning("applying %d orders together failed (%s); applying them one by one", len(orders),
                            failure_reason(exc))
        for event_id, payload, event in orders:
            apply_alone(event_id, payload, partial(_order_paid, session, event, now), event.shop)
        orders.clear()

    for event_id, payload, received_at, shop in inbox:
        try:  # ids as stored: scoped to the event's shop
            event = stored_keys(validate_event(load_json(payload), received_at, shops=runtime.settings.shops))
        except Exception as exc:  # rules or shops changed since it was stored, or a row written by hand
            apply_alone(event_id, payload, partial(_raise, exc), shop)
            continue
        if event.type == "order.paid":
            orders.append((event_id, payload, event))
            continue
        apply_orders()
        apply_alone(event_id, payload, partial(_apply, session, event, now, applied), event.shop)
    apply_orders()
    if inbox:
        session.execute(update(InboxEvent).where(InboxEvent.id.in_([row.id for row in inbox]))
                        .values(processed_at=now).execution_options(synchronize_session=False))
    session.flush()
    applied.scheduled += plan_isolated(session, runtime, plan_requests, now)
    for stream_id in sorted(applied.streams_to_plan):
        runtime.doorbell.ring_after_commit(session, PLAN_STREAM, stream_id)
    if applied.scheduled:
        runtime.doorbell.ring_after_commit(session, RELAY)
    return applied


def _raise(exc: Exception) -> list[PlanRequest]:
    raise exc


def _apply(session: Session, event: Event, now: datetime, applied: Applied) -> list[PlanRequest]:
    if event.type == "order.paid":
        return _order_paid(session, event, now)
    if event.type == "stream.ended":
        stream_id = data_of(event, StreamEnded).stream_id
        session.execute(dialect_insert(session)(Stream).values(id=stream_id, shop=event.shop)
                        .on_conflict_do_nothing(index_elements=["id"]))
        session.execute(update(Stream).where(Stream.id == stream_id, Stream.ended_at.is_(None))
                        .values(ended_at=event.occurred_at))
        applied.streams_to_plan.add(stream_id)
    elif event.type == "order.refunded":
        _order_refunded(session, event, now)
    elif event.type == "customer.opted_out":
        _opted_out(session, event)
    elif event.type == "coupon.redeemed":  # in its shop; for its customer when the event names one
        redeemed = data_of(event, CouponRedeemed)
        result = redeem(session, redeemed.code, redeemed.order_id, now, shop=event.shop,
                        customer_id=redeemed.customer_id)
        log.info("coupon.redeemed %s: %s", event.id, result.status)
    return []


def _order_paid(session: Session, event: Event, now: datetime) -> list[PlanRequest]:
    return _orders_paid(session, [event], now)


def _orders_paid(session: Session, events: list[Event], now: datetime) -> list[PlanRequest]:
    """Store `order.paid` events in a few set-based statements, with the result of
    applying them one by one in list order; returns what to plan."""
    _merge_order_customers(session, events)
    first_per_order: dict[str, Event] = {}
    for event in events:
        first_per_order.setdefault(data_of(event, OrderPaid).order_id, event)  # the same order under another event id
    _lock_order_ids(session, sorted(first_per_order))
    inserted = set(insert_new(session, Order, [_order_row(event) for event in first_per_order.values()], ["id"], "id"))
    if not inserted:
        return []
    insert_new(session, OrderItem, [  # one row per item, for campaign audiences
        row for order_id, event in first_per_order.items() if order_id in inserted
        for row in _item_rows(order_id, event)], ["id"], "id")
    refunded = _take_early_refunds(session, inserted)
    requests: list[PlanRequest] = []
    stream_customers: dict[str, list[str]] = defaultdict(list)
    for order_id, event in first_per_order.items():
        if order_id not in inserted:
            continue
        data = data_of(event, OrderPaid)
        if order_id not in refunded:
            _redeem_discount_codes(session, event, now)
        if data.stream_id is not None:
            stream_customers[data.stream_id].append(data.customer.id)
        elif order_id not in refunded:  # an order refunded before it is applied promises nothing
            requests.append(PlanRequest(f"order:{order_id}", data.customer.id, event.occurred_at, (order_id,)))
    if stream_customers:
        ended = dict(session.execute(select(Stream.id, Stream.ended_at).where(
            Stream.id.in_(list(stream_customers)), Stream.ended_at.is_not(None))).all())
        for stream_id, customer_ids in stream_customers.items():
            if stream_id in ended:  # else it waits for stream.ended, or the 6 h sweep
                requests += stream_requests(session, stream_id, ended[stream_id], sorted(set(customer_ids)), now)
    return requests


def _order_row(event: Event) -> dict:
    data = data_of(event, OrderPaid)
    return dict(id=data.order_id, shop=event.shop, event_id=event.id, customer_id=data.customer.id,
                stream_id=data.stream_id,
                currency=data.currency, occurred_at=event.occurred_at,
                total=None if data.total_price is None else str(data.total_price),
                items=[{"sku": i.sku, "name": i.name, "unit_price": str(i.unit_price), "quantity": i.quantity,
                        "refill_sku": i.refill_sku} for i in data.items])


def _item_rows(order_id: str, event: Event) -> list[dict]:
    data = data_of(event, OrderPaid)
    return order_item_rows(order_id, data.customer.id, data.currency, event.occurred_at, _order_row(event)["items"],
                           shop=event.shop)


def _profile(event: Event) -> dict:
    c = data_of(event, OrderPaid).customer
    return dict(name=c.name, country=c.country, locale=c.locale, timezone=c.timezone, email=c.email,
                phone=c.phone, whatsapp=c.whatsapp, line_id=c.line_id, telegram_id=c.telegram_id,
                region=c.region)


def _merge_order_customers(session: Session, events: list[Event]) -> None:
    """Create or update the customers of these orders: an upsert of the new ones (each
    folded from all its orders), then the others read `FOR UPDATE` and merged. Ids in
    sorted order, so two workers lock shared customers in the same order."""
    per_customer: dict[str, list[Event]] = defaultdict(list)
    for event in events:
        per_customer[data_of(event, OrderPaid).customer.id].append(event)
    ids = sorted(per_customer)
    new_rows = []
    for customer_id in ids:
        state: consent.ConsentState = {}
        profile: dict = {}
        updated_at = None
        for event in per_customer[customer_id]:
            if updated_at is None or event.occurred_at >= updated_at:  # the profile comes from the newest order
                profile, updated_at = _profile(event), event.occurred_at
            state = consent.after_order(state, data_of(event, OrderPaid).customer.consent, event.occurred_at)
        new_rows.append(dict(id=customer_id, shop=per_customer[customer_id][0].shop, updated_at=updated_at,
                             consent_changes=_dump_consent(state),
                             consent=consent.consented(state), opted_out=consent.opted_out(state), **profile))
    inserted = set(insert_new(session, Customer, new_rows, ["id"], "id"))
    known = [customer_id for customer_id in ids if customer_id not in inserted]
    if not known:
        return
    rows = session.scalars(
        select(Customer).where(Customer.id.in_(known)).order_by(Customer.id).with_for_update()
        .execution_options(populate_existing=True)
    ).all()
    for customer in rows:
        for event in per_customer[customer.id]:
            if not customer.country or event.occurred_at >= customer.updated_at:
                # The profile comes from the newest order (an opt-out placeholder has none yet).
                for name, value in _profile(event).items():
                    setattr(customer, name, value)
                customer.updated_at = event.occurred_at
            set_consent(customer, consent.after_order(consent_state(customer), data_of(event, OrderPaid).customer.consent,
                                                      event.occurred_at))


def _take_early_refunds(session: Session, order_ids: set[str]) -> set[str]:
    """Orders whose refund came first: stored as refunded (so nothing is promised for
    them), their pending refunds consumed. Returns their ids."""
    early = session.execute(select(PendingRefund.order_id, PendingRefund.received_at)
                            .where(PendingRefund.order_id.in_(sorted(order_ids)))).all()
    if not early:
        return set()
    orders = table_of(Order)
    session.execute(orders.update().where(orders.c.id == bindparam("order")).values(refunded_at=bindparam("at")),
                    [{"order": order_id, "at": at} for order_id, at in early])
    session.execute(delete(PendingRefund).where(PendingRefund.order_id.in_([order_id for order_id, _ in early])))
    return {order_id for order_id, _ in early}


def _order_refunded(session: Session, event: Event, now: datetime) -> None:
    order_id = data_of(event, OrderRefunded).order_id
    _lock_order_id(session, order_id)
    order = session.scalars(select(Order).where(Order.id == order_id)
                            .execution_options(populate_existing=True)).one_or_none()
    if order is None:
        # The refund overtook its order: keep it until the order arrives.
        session.execute(dialect_insert(session)(PendingRefund).values(
            order_id=order_id, shop=event.shop, event_id=event.id, received_at=now
        ).on_conflict_do_nothing(index_elements=["order_id"]))
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
    session.execute(update(Delivery).where(Delivery.coupon_id == order.coupon_id, Delivery.state == DeliveryState.SCHEDULED)
                    .values(state=DeliveryState.CANCELLED, reason=Reason.REFUNDED, updated_at=now))
    # Rule 15: a code that is (or may be, a sync in flight) in its shop stops working there.
    session.execute(update(Coupon).where(
        Coupon.id == order.coupon_id, Coupon.code_removed_at.is_(None), Coupon.code_removal_due_at.is_(None),
        (Coupon.code_synced_at.is_not(None)) | (Coupon.sync_attempts > 0)).values(code_removal_due_at=now))
    sent_or_sending = session.scalar(select(Delivery.id).where(
        Delivery.coupon_id == order.coupon_id, Delivery.state.in_((DeliveryState.SENT, DeliveryState.SENDING))))
    if sent_or_sending is not None:
        session.execute(update(Coupon).where(Coupon.id == order.coupon_id, Coupon.void_at.is_(None)).values(void_at=now))


def _opted_out(session: Session, event: Event) -> None:
    data = data_of(event, CustomerOptedOut)
    channels = data.channels if data.channels is not None else list(CHANNELS)
    customer = _locked_customer(session, data.customer_id)
    if customer is None:
        # Remember the opt-out for a customer we have not seen yet (country "" = no profile yet).
        state = consent.after_opt_out({}, channels, event.occurred_at)
        if _insert_customer(session, data.customer_id, state, event.occurred_at, country="", shop=event.shop):
            return
        customer = _locked_customer(session, data.customer_id)
        if customer is None:  # the insert lost to another worker's, whose row must now exist
            raise RuntimeError(f"customer {data.customer_id!r} neither inserted nor found")
    set_consent(customer, consent.after_opt_out(consent_state(customer), channels, event.occurred_at))


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
    _lock_order_ids(session, [order_id])


def _lock_order_ids(session: Session, order_ids: list[str]) -> None:
    """Serialise an order.paid and an order.refunded of one order (PostgreSQL), so a refund
    that arrives while its order is being applied is neither lost nor left pending. One
    statement for a batch, taking the locks in one global order (no deadlock between workers)."""
    if session.get_bind().dialect.name == "postgresql" and order_ids:
        session.execute(text(
            "SELECT pg_advisory_xact_lock(7150, h) FROM "
            "(SELECT DISTINCT hashtext(i) AS h FROM unnest(CAST(:ids AS text[])) AS i ORDER BY h) AS locks"
        ), {"ids": order_ids})


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


def set_consent(row: Customer, state: consent.ConsentState) -> None:
    """Store a customer's consent state and the lists derived from it (planner, sender)."""
    row.consent_changes = _dump_consent(state)
    row.consent = consent.consented(state)
    row.opted_out = consent.opted_out(state)


def _redeem_discount_codes(session: Session, event: Event, now: datetime) -> None:
    """Rule 13 for shops that only report orders: an Encore code used at checkout
    redeems its coupon, when the coupon is the order's customer's and of the order's shop
    (a code passed on to someone else, or used in another shop, redeems nothing). Codes
    Encore never issued (the shop's own) are ignored."""
    data = data_of(event, OrderPaid)
    for code in dict.fromkeys(data.discount_codes or []):
        result = redeem(session, code, data.order_id, now, shop=event.shop, customer_id=data.customer.id)
        if result.status != "unknown":
            log.info("order %s used coupon %s: %s", data.order_id, result.code, result.status)
