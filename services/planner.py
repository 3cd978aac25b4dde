"""Turn triggers into coupons and deliveries, in bulk.

A trigger is (trigger key, customer): `order:<order_id>` for a plain order,
`stream:<stream_id>` for everything one customer bought in a stream. The unique
key on coupons makes planning idempotent: a rerun inserts nothing new.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from sqlalchemy import bindparam, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from coupons.codes import new_code
from coupons.delivery_rules import plan_delivery
from coupons.model import Customer as CustomerValue
from coupons.model import Item, Offer
from coupons.offers import choose_offer
from coupons.timing import FREQUENCY_CAP, STREAM_WAIT, stream_fallback_at
from store.models import SCHEDULED, SENDING, SENT, Coupon, Customer, Delivery, Order, Stream

from .runtime import Runtime

PLAN_CHUNK = 1000
"""Customers planned per transaction: big enough for bulk inserts to pay, small
enough that sending starts while a 100,000-buyer stream is still being planned."""


@dataclass(frozen=True)
class PlanRequest:
    trigger_key: str
    customer_id: str
    trigger_at: datetime
    order_ids: tuple[str, ...]
    # A campaign's coupon: its offer is chosen by the campaign, and no order stands behind it.
    offer: Offer | None = None
    campaign: str | None = None


def customer_value(row: Customer) -> CustomerValue:
    return CustomerValue(
        id=row.id, country=row.country, name=row.name, locale=row.locale, timezone=row.timezone,
        email=row.email, phone=row.phone, whatsapp=row.whatsapp, line_id=row.line_id,
        telegram_id=row.telegram_id, consent=frozenset(row.consent or ()),
    )


def items_of(orders: Iterable[Order]) -> list[Item]:
    return [
        Item(sku=i["sku"], name=i["name"], unit_price=Decimal(i["unit_price"]), quantity=int(i["quantity"]),
             refill_sku=i.get("refill_sku"))
        for order in orders
        for i in order.items
    ]


def dialect_insert(session: Session):
    """INSERT with ON CONFLICT for whichever database we are on."""
    return postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert


def _recent_triggers(session: Session, customer_ids: list[str], earliest: datetime,
                     latest: datetime) -> dict[str, list[datetime]]:
    rows = session.execute(
        select(Delivery.customer_id, Delivery.trigger_at).where(
            Delivery.customer_id.in_(customer_ids),
            Delivery.state.in_((SCHEDULED, SENDING, SENT)),
            Delivery.trigger_at > earliest - FREQUENCY_CAP,
            Delivery.trigger_at < latest + FREQUENCY_CAP,
        )
    )
    found: dict[str, list[datetime]] = defaultdict(list)
    for customer_id, trigger_at in rows:
        found[customer_id].append(trigger_at)
    return found


def plan_coupons(session: Session, runtime: Runtime, requests: list[PlanRequest], now: datetime) -> int:
    """Create the coupon and delivery for each request; returns how many are scheduled."""
    if not requests:
        return 0
    customer_ids = sorted({r.customer_id for r in requests})
    customers = {c.id: c for c in session.scalars(select(Customer).where(Customer.id.in_(customer_ids)))}
    order_ids = sorted({o for r in requests for o in r.order_ids})
    orders = {o.id: o for o in session.scalars(select(Order).where(Order.id.in_(order_ids)))}
    recent = _recent_triggers(session, customer_ids, min(r.trigger_at for r in requests),
                              max(r.trigger_at for r in requests))
    coupon_rows, delivery_plans = [], {}
    for request in sorted(requests, key=lambda r: r.trigger_at):
        customer = customer_value(customers[request.customer_id])
        market = runtime.markets.for_country(customer.country)
        live_orders = [orders[o] for o in request.order_ids if o in orders and orders[o].refunded_at is None]
        if not live_orders and request.offer is None:
            continue  # everything refunded before planning: nothing to promise
        offer = request.offer or choose_offer(items_of(live_orders), live_orders[0].currency, market,
                                              runtime.settings.refill_ratio)
        capped = any(abs(request.trigger_at - t) < FREQUENCY_CAP for t in recent[customer.id])
        plan = plan_delivery(
            trigger_at=request.trigger_at, now=now, customer=customer, market=market,
            configured=runtime.configured_channels,
            opted_out=customers[request.customer_id].opted_out or (), capped=capped,
        )
        if plan.state == SCHEDULED:
            recent[customer.id].append(request.trigger_at)
        key = (request.trigger_key, request.customer_id)
        delivery_plans[key] = (request, plan)
        coupon_rows.append(dict(
            code=new_code(), trigger_key=request.trigger_key, customer_id=request.customer_id,
            market=market.name, offer_type=offer.type, sku=offer.sku, product_name=offer.product_name,
            currency=offer.currency, price=None if offer.price is None else str(offer.price),
            percent=None if offer.percent is None else str(offer.percent),
            regular_price=None if offer.regular_price is None else str(offer.regular_price),
            created_at=now, expires_at=request.trigger_at + timedelta(days=market.valid_days),
            campaign=request.campaign,
        ))
    if not coupon_rows:
        return 0
    # executemany form: one cached statement, batched by SQLAlchemy's insertmanyvalues.
    inserted = session.execute(
        dialect_insert(session)(Coupon).on_conflict_do_nothing(
            index_elements=["trigger_key", "customer_id"]
        ).returning(Coupon.id, Coupon.trigger_key, Coupon.customer_id),
        coupon_rows,
    ).all()
    delivery_rows = []
    for coupon_id, trigger_key, customer_id in inserted:
        request, plan = delivery_plans[(trigger_key, customer_id)]
        delivery_rows.append(dict(
            coupon_id=coupon_id, customer_id=customer_id, state=plan.state, reason=plan.reason,
            trigger_at=request.trigger_at, due_at=plan.due_at, deadline_at=plan.deadline_at,
            attempts=0, channel_attempts=0, failed_channels=[], updated_at=now,
        ))
    if delivery_rows:
        session.execute(Delivery.__table__.insert(), delivery_rows)
    _attach_orders(session, requests)
    return sum(1 for row in delivery_rows if row["state"] == SCHEDULED)


def _attach_orders(session: Session, requests: list[PlanRequest]) -> None:
    """Link each order to its coupon, so refunds can find what they void (one query,
    one batched UPDATE, however many orders)."""
    found = session.execute(
        select(Coupon.trigger_key, Coupon.customer_id, Coupon.id).where(
            Coupon.trigger_key.in_({r.trigger_key for r in requests}),
            Coupon.customer_id.in_({r.customer_id for r in requests}))
    ).all()
    coupon_ids = {(key, customer): coupon_id for key, customer, coupon_id in found}
    links = [
        {"order": order_id, "coupon": coupon_ids[(r.trigger_key, r.customer_id)]}
        for r in requests if (r.trigger_key, r.customer_id) in coupon_ids
        for order_id in r.order_ids
    ]
    if links:
        orders = Order.__table__
        session.execute(
            orders.update().where(orders.c.id == bindparam("order"), orders.c.coupon_id.is_(None))
            .values(coupon_id=bindparam("coupon")),
            links,
        )


def stream_requests(session: Session, stream_id: str, ended_at: datetime | None, customer_ids: list[str],
                    now: datetime) -> list[PlanRequest]:
    """One request per customer of the stream whose orders have no coupon yet and are due to trigger."""
    rows = session.execute(
        select(Order.customer_id, Order.id, Order.occurred_at).where(
            Order.stream_id == stream_id, Order.customer_id.in_(customer_ids))
    ).all()
    per_customer: dict[str, list[tuple[str, datetime]]] = defaultdict(list)
    for customer_id, order_id, occurred_at in rows:
        per_customer[customer_id].append((order_id, occurred_at))
    requests = []
    for customer_id, orders in per_customer.items():
        first = min(at for _, at in orders)
        last = max(at for _, at in orders)
        if ended_at is not None:
            trigger_at = max(ended_at, last)
        elif stream_fallback_at(first) <= now:
            trigger_at = stream_fallback_at(first)
        else:
            continue
        requests.append(PlanRequest(f"stream:{stream_id}", customer_id, trigger_at, tuple(o for o, _ in orders)))
    return requests


def next_unplanned_customers(session: Session, stream_id: str, after: str, chunk: int = PLAN_CHUNK) -> list[str]:
    """The next customer ids (keyset order, after `after`) with an unplanned order in the stream."""
    return list(session.scalars(
        select(Order.customer_id).where(Order.stream_id == stream_id, Order.coupon_id.is_(None),
                                        Order.customer_id > after)
        .group_by(Order.customer_id).order_by(Order.customer_id).limit(chunk)
    ))


PLANNING_LEASE = timedelta(minutes=5)
"""Far above one chunk's time; renewed per chunk; lets the sweep take over from a dead planner."""


def claim_stream_planning(session: Session, stream_id: str, now: datetime) -> bool:
    """Own the stream's planning for one lease; False while another planner owns it,
    so a sweep and a stream.ended never plan the same stream side by side."""
    session.execute(dialect_insert(session)(Stream).values(id=stream_id).on_conflict_do_nothing(index_elements=["id"]))
    claimed = session.execute(
        update(Stream).where(Stream.id == stream_id,
                             (Stream.planning_until.is_(None)) | (Stream.planning_until < now))
        .values(planning_until=now + PLANNING_LEASE)
    ).rowcount
    return claimed == 1


def renew_stream_planning(session: Session, stream_id: str, now: datetime, done: bool = False) -> None:
    session.execute(update(Stream).where(Stream.id == stream_id)
                    .values(planning_until=None if done else now + PLANNING_LEASE))


def plan_stream_chunk(session: Session, runtime: Runtime, stream_id: str, customer_ids: list[str],
                      now: datetime) -> int:
    ended_at = session.scalar(select(Stream.ended_at).where(Stream.id == stream_id))
    return plan_coupons(session, runtime, stream_requests(session, stream_id, ended_at, customer_ids, now), now)


def streams_waiting(session: Session, now: datetime) -> list[str]:
    """Streams with unplanned orders that can trigger now: ended, or older than the 6 h wait."""
    return list(session.scalars(
        select(Order.stream_id).outerjoin(Stream, Stream.id == Order.stream_id).where(
            Order.stream_id.is_not(None), Order.coupon_id.is_(None), Order.refunded_at.is_(None),
            (Stream.ended_at.is_not(None)) | (Order.occurred_at <= now - STREAM_WAIT),
        ).group_by(Order.stream_id)
    ))
