"""A stream's review (SPEC section 9): `encore review STREAM` and the dashboard's page
`GET /streams/{shop}/{stream}`.

Reads one shop's stream from the store -- its buyers, their deliveries with their
coupons, and the later orders of those buyers -- as the plain rows of `coupons.review`,
whose arithmetic makes the review. The shop's previous stream (the one that ended last
before this one) is read the same way and shown beside it.

Reads are bounded by the stream: its buyers' orders from the first trigger to the last
coupon's expiry, never the shop's whole history.
"""

from __future__ import annotations

import json
from datetime import datetime
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.orm import Session

from coupons.errors import EncoreError
from coupons.markets import Markets
from coupons.review import Buyer, DeliveryRow, OrderLine, OrderRow, StreamFacts, stream_review
from coupons.shops import DEFAULT_SHOP, raw_id, shop_key
from store.bulk import one_of
from store.models import Coupon, Customer, Delivery, Order, Stream


class UnknownStream(EncoreError, LookupError):
    """No order of the shop names this stream."""


def _stream_id_shown(shop: str, key: str) -> str:
    try:
        return raw_id(shop, key)
    except ValueError:
        return key


def _lines(order: Order) -> tuple[OrderLine, ...]:
    """The shop's reported total (Shopify's total_price) when known, else the items."""
    if order.total is not None:
        return (OrderLine(Decimal(order.total), 1),)
    items = order.items if isinstance(order.items, list) else json.loads(order.items)
    return tuple(OrderLine(Decimal(str(item["unit_price"])), int(item["quantity"])) for item in items)


def stream_facts(session: Session, markets: Markets, shop: str, stream_key: str) -> StreamFacts | None:
    """What the review of one stream is computed from; None when no order names it."""
    buyers_rows = session.execute(
        select(Order.customer_id, Customer.country).join(Customer, Customer.id == Order.customer_id)
        .where(Order.stream_id == stream_key).group_by(Order.customer_id, Customer.country)
    ).all()
    if not buyers_rows:
        return None
    ended_at = session.scalar(select(Stream.ended_at).where(Stream.id == stream_key))
    buyers = [Buyer(customer_id, markets.for_country(country).name) for customer_id, country in buyers_rows]
    rows = session.execute(
        select(Delivery.customer_id, Delivery.channel, Delivery.state, Delivery.reason, Delivery.trigger_at,
               Delivery.deadline_at, Delivery.sent_at, Delivery.experiment, Delivery.variant, Coupon.market,
               Coupon.expires_at, Coupon.redeemed_at, Coupon.redeemed_order_id)
        .join(Coupon, Coupon.id == Delivery.coupon_id).where(Coupon.trigger_key == f"stream:{stream_key}")
    ).all()
    deliveries = [DeliveryRow(
        customer_id=row.customer_id, market=row.market, channel=row.channel, state=row.state, reason=row.reason,
        trigger_at=row.trigger_at, deadline_at=row.deadline_at, sent_at=row.sent_at, valid_until=row.expires_at,
        redeemed_order_id=row.redeemed_order_id if row.redeemed_at is not None else None,
        experiment_id=row.experiment, variant=row.variant) for row in rows]
    orders: list[Order] = []
    if deliveries:
        first = min(row.trigger_at for row in deliveries)
        last = max(row.valid_until for row in deliveries)
        customers = sorted({row.customer_id for row in deliveries})
        later = session.scalars(select(Order).where(
            one_of(session, Order.customer_id, customers), Order.occurred_at > first, Order.occurred_at < last))
        redeeming = {row.redeemed_order_id for row in deliveries if row.redeemed_order_id}
        orders = list({order.id: order for order in [*later, *(
            session.scalars(select(Order).where(one_of(session, Order.id, sorted(redeeming)))) if redeeming else ())]
        }.values())
    return StreamFacts(
        shop=shop, stream=_stream_id_shown(shop, stream_key), ended_at=ended_at, buyers=buyers,
        deliveries=deliveries,
        orders=[OrderRow(id=order.id, customer_id=order.customer_id, placed_at=order.occurred_at,
                         currency=order.currency, lines=_lines(order), refunded=order.refunded_at is not None)
                for order in orders])


def previous_stream(session: Session, shop: str, stream_key: str) -> str | None:
    """The shop's stream that ended last before this one (None for its first, or one that
    has not ended: a stream is "previous" by its end)."""
    ended_at = session.scalar(select(Stream.ended_at).where(Stream.id == stream_key))
    if ended_at is None:
        return None
    return session.scalar(select(Stream.id).where(
        Stream.shop == shop, Stream.ended_at.is_not(None), Stream.ended_at < ended_at, Stream.id != stream_key)
        .order_by(Stream.ended_at.desc()).limit(1))


def review(session: Session, markets: Markets, stream: str, shop: str = DEFAULT_SHOP) -> dict:
    """`encore review --json`'s object; raises UnknownStream when the shop has no such stream."""
    key = shop_key(shop, stream)
    facts = stream_facts(session, markets, shop, key)
    if facts is None:
        raise UnknownStream(f"stream: no order of shop {shop!r} names stream {stream!r}")
    previous_key = previous_stream(session, shop, key)
    previous = None if previous_key is None else stream_facts(session, markets, shop, previous_key)
    return stream_review(facts, previous)


def latest_streams(session: Session, shop: str | None = None, since: datetime | None = None,
                   until: datetime | None = None, limit: int = 10) -> list[dict]:
    """The latest ended streams (newest first) with their end, for the dashboard's list."""
    query = select(Stream.shop, Stream.id, Stream.ended_at).where(Stream.ended_at.is_not(None))
    if shop is not None:
        query = query.where(Stream.shop == shop)
    if since is not None:
        query = query.where(Stream.ended_at >= since)
    if until is not None:
        query = query.where(Stream.ended_at < until)
    rows = session.execute(query.order_by(Stream.ended_at.desc()).limit(limit)).all()
    return [{"shop": row.shop, "stream": _stream_id_shown(row.shop, row.id), "ended_at": row.ended_at}
            for row in rows]
