"""What `encore status` and `encore deliveries` show (SPEC section 4)."""

from __future__ import annotations

import math
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from store.models import DELIVERY_STATES, EXPIRED, SENT, Coupon, DeadLetter, Delivery, InboxEvent


def rfc3339(value: datetime | None) -> str | None:
    return None if value is None else value.strftime("%Y-%m-%dT%H:%M:%SZ")


def percentile(sorted_values: list[float], share: float) -> float:
    """Nearest-rank percentile; 0.0 for no data."""
    if not sorted_values:
        return 0.0
    rank = max(1, math.ceil(share * len(sorted_values)))
    return sorted_values[rank - 1]


def status(session: Session) -> dict:
    counts = dict(session.execute(select(Delivery.state, func.count()).group_by(Delivery.state)).all())
    rows = session.execute(
        select(Delivery.state, Delivery.due_at, Delivery.sent_at, Delivery.deadline_at)
        .where(Delivery.state.in_((SENT, EXPIRED)))
    ).all()
    latencies = sorted(max(0.0, (sent_at - due_at).total_seconds()) for state, due_at, sent_at, _ in rows if state == SENT)
    on_time = sum(1 for state, _, sent_at, deadline_at in rows if state == SENT and sent_at <= deadline_at)
    return {
        "events": {
            "accepted": session.scalar(select(func.count()).select_from(InboxEvent)) or 0,
            "rejected": session.scalar(select(func.count()).select_from(DeadLetter).where(DeadLetter.source != "apply")) or 0,
        },
        "deliveries": {state: counts.get(state, 0) for state in DELIVERY_STATES},
        "on_time_rate": round(on_time / len(rows), 6) if rows else 1.0,
        "latency_seconds": {name: round(percentile(latencies, share), 3)
                            for name, share in (("p50", 0.50), ("p95", 0.95), ("p99", 0.99))},
    }


def offer_json(coupon: Coupon) -> dict:
    offer = {"type": coupon.offer_type, "sku": coupon.sku, "currency": coupon.currency}
    if coupon.offer_type == "refill":
        offer["price"] = coupon.price
    else:
        offer["percent"] = coupon.percent
    return offer


def trigger_kind(trigger_key: str) -> str:
    """`order`, `stream` or `campaign`: the prefix of the coupon's trigger key."""
    return trigger_key.split(":", 1)[0]


def deliveries(session: Session, customer_id: str | None = None) -> list[dict]:
    query = select(Delivery, Coupon).join(Coupon, Coupon.id == Delivery.coupon_id).order_by(Delivery.id)
    if customer_id is not None:
        query = query.where(Delivery.customer_id == customer_id)
    return [
        {
            "id": delivery.id,
            "customer_id": delivery.customer_id,
            "code": coupon.code,
            "offer": offer_json(coupon),
            "channel": delivery.channel,
            "state": delivery.state,
            "reason": delivery.reason,
            "trigger_at": rfc3339(delivery.trigger_at),
            "due_at": rfc3339(delivery.due_at),
            "deadline_at": rfc3339(delivery.deadline_at),
            "sent_at": rfc3339(delivery.sent_at),
            "attempts": delivery.attempts,
            "redeemed_at": rfc3339(coupon.redeemed_at),
            "expires_at": rfc3339(coupon.expires_at),
            "void": coupon.void_at is not None,
            "trigger": trigger_kind(coupon.trigger_key),
            "campaign": coupon.campaign,
        }
        for delivery, coupon in session.execute(query)
    ]
