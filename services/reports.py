"""What `encore status` and `encore deliveries` show (SPEC section 4).

Both stay flat in memory however many rows there are: `status` is counts and
three ranks computed by the database, `iter_deliveries` streams rows (a
server-side cursor on PostgreSQL) for the command line to print as they come.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Float, case, cast, func, select
from sqlalchemy.orm import Session

from coupons.experiments import CONTROL
from coupons.review import on_time_rate
from coupons.shops import DEFAULT_SHOP, Shops, raw_id, shop_key
from coupons.states import DeliveryState, Reason
from store.models import Attempt, Coupon, DeadLetter, Delivery, InboxEvent

COUNTS_TOWARD_ON_TIME = Delivery.state.in_((DeliveryState.SENT, DeliveryState.EXPIRED)) & ~(
    (Delivery.state == DeliveryState.EXPIRED) & (Delivery.reason == Reason.LATE_EVENT))
"""`coupons.review.counts_toward_on_time` in SQL: the one definition of "on time" (a
backfill, expired on arrival with reason late_event, is never Encore's to send on time)."""
SENT_ON_TIME = (Delivery.state == DeliveryState.SENT) & (Delivery.sent_at <= Delivery.deadline_at)
"""`coupons.review.sent_on_time` in SQL."""

PERCENTILES = (("p50", 50), ("p95", 95), ("p99", 99))
STREAM_BATCH = 1000
"""Rows fetched per round trip while streaming deliveries."""


def rfc3339(value: datetime | None) -> str | None:
    return None if value is None else value.strftime("%Y-%m-%dT%H:%M:%SZ")


def nearest_rank(count: int, percent: int) -> int:
    """The 1-based nearest rank of `percent` among `count` values, in integers (no float drift)."""
    return max(1, -(-count * percent // 100))


def _latency_seconds(dialect: str):
    """Seconds from the original due time to the send, never below 0, as SQL."""
    seconds: ColumnElement[Any]
    if dialect == "postgresql":
        seconds = cast(func.extract("epoch", Delivery.sent_at - Delivery.due_at), Float)
    else:
        seconds = (func.julianday(Delivery.sent_at) - func.julianday(Delivery.due_at)) * 86400.0
    return case((seconds < 0, 0.0), else_=seconds)


def _latency_percentiles(session: Session, sent: int, shop: str | None = None) -> dict[str, float]:
    if not sent:
        return {name: 0.0 for name, _ in PERCENTILES}
    dialect = session.get_bind().dialect.name
    latency = _latency_seconds(dialect)
    if dialect == "postgresql":
        # percentile_disc is the nearest-rank percentile, computed by the database.
        row = session.execute(select(*(
            func.percentile_disc(percent / 100).within_group(latency.asc()) for _, percent in PERCENTILES
        )).where(Delivery.state == DeliveryState.SENT, *_of_shop(Delivery, shop))).one()
        return {name: round(float(value or 0.0), 3) for (name, _), value in zip(PERCENTILES, row, strict=True)}
    # SQLite has no percentile aggregate: read the one row at each rank, sorting from
    # the nearer end so no offset is more than half the rows.
    found = {}
    for name, percent in PERCENTILES:
        rank = nearest_rank(sent, percent)
        ascending = rank <= sent - rank + 1
        query = (select(latency).where(Delivery.state == DeliveryState.SENT, *_of_shop(Delivery, shop))
                 .order_by(latency.asc() if ascending else latency.desc())
                 .offset(rank - 1 if ascending else sent - rank).limit(1))
        found[name] = round(float(session.scalar(query) or 0.0), 3)
    return found


def _of_shop(table: Any, shop: str | None) -> tuple:
    """The condition that keeps `shop`'s rows of `table`; none for every shop."""
    return () if shop is None else (table.shop == shop,)


def status(session: Session, shop: str | None = None) -> dict:
    """Counts and timings (of one shop's events and deliveries with `shop`). `events.rejected`
    counts events refused by `encore emit` and events that failed when applied ("apply" dead
    letters); an event that failed when applied and was not replayed is not counted as
    accepted. Dead letters of planning ("plan") are triggers, not events, and are not
    counted here. A rejected event counts under the shop it named, when that shop exists."""
    counts = dict(session.execute(select(Delivery.state, func.count()).where(*_of_shop(Delivery, shop))
                                  .group_by(Delivery.state)).all())
    finished, sent_on_time = session.execute(
        select(func.count(), func.coalesce(func.sum(case((SENT_ON_TIME, 1), else_=0)), 0))
        .where(COUNTS_TOWARD_ON_TIME, *_of_shop(Delivery, shop))
    ).one()
    stored = session.scalar(select(func.count()).select_from(InboxEvent).where(*_of_shop(InboxEvent, shop))) or 0
    failed_when_applied = session.scalar(select(func.count()).select_from(DeadLetter).where(
        DeadLetter.source == "apply", DeadLetter.replayed_at.is_(None), *_of_shop(DeadLetter, shop))) or 0
    rejected = session.scalar(select(func.count()).select_from(DeadLetter).where(
        DeadLetter.source != "plan", *_of_shop(DeadLetter, shop))) or 0
    return {
        "events": {"accepted": max(0, stored - failed_when_applied), "rejected": rejected},
        "deliveries": {state: counts.get(state, 0) for state in DeliveryState},
        "on_time_rate": on_time_rate(sent_on_time, finished),
        "latency_seconds": _latency_percentiles(session, counts.get(DeliveryState.SENT, 0), shop),
    }


def late_events(session: Session, shop: str | None = None) -> int:
    """Deliveries that expired on arrival, their event already past its deadline (a
    backfill): shown apart from on time, never counted in it."""
    return session.scalar(select(func.count()).select_from(Delivery).where(
        Delivery.state == DeliveryState.EXPIRED, Delivery.reason == Reason.LATE_EVENT, *_of_shop(Delivery, shop))) or 0


def offer_json(coupon: Any) -> dict:
    offer = {"type": coupon.offer_type, "sku": coupon.sku, "currency": coupon.currency}
    if coupon.offer_type == "refill":
        offer["price"] = coupon.price
    else:
        offer["percent"] = coupon.percent
    return offer


def trigger_of(trigger_key: str) -> tuple[str, str | None]:
    """(`order` | `stream` | `campaign`, the campaign's name or None) from a coupon's
    trigger key (`order:<id>`, `stream:<id>`, `campaign:<name>@<scheduled time>`)."""
    kind, _, rest = trigger_key.partition(":")
    if kind == "campaign":
        return kind, rest.rpartition("@")[0] or rest
    return kind, None


_COLUMNS = (
    Delivery.id, Delivery.customer_id, Delivery.channel, Delivery.state, Delivery.reason, Delivery.trigger_at,
    Delivery.due_at, Delivery.deadline_at, Delivery.sent_at, Delivery.attempts, Coupon.code, Coupon.offer_type,
    Coupon.sku, Coupon.currency, Coupon.price, Coupon.percent, Coupon.redeemed_at, Coupon.expires_at,
    Coupon.void_at, Coupon.trigger_key, Delivery.shop, Coupon.code_synced_at, Delivery.variant,
)


def _customer_keys(customer_id: str, shop: str | None, shops: Shops | None) -> list[str]:
    """The stored keys a customer id shown to the user stands for: in `shop`, else in
    every shop of the install (the same id in two shops is two customers, both shown)."""
    names = [shop] if shop is not None else sorted(shops.by_name) if shops is not None else [DEFAULT_SHOP]
    return [shop_key(name, customer_id) for name in names]


def _delivery_filter(customer_id: str | None, shop: str | None, shops: Shops | None) -> tuple:
    found = _of_shop(Delivery, shop)
    if customer_id is not None:
        found += (Delivery.customer_id.in_(_customer_keys(customer_id, shop, shops)),)
    return found


def iter_deliveries(session: Session, customer_id: str | None = None, *, shop: str | None = None,
                    shops: Shops | None = None) -> Iterator[dict]:
    """One dict per delivery (SPEC section 4 fields, plus `id`, `expires_at`, `void`,
    SPEC section 7's `shop` and `code_synced_at`, and rule 16's `skipped`), streamed in id
    order: rows are fetched `STREAM_BATCH` at a time, never all at once. Ids are shown as
    their shop sent them; `customer_id` is such an id (of `shop`, else of any of `shops`).
    With `shops`, a shop of platform `none` shows `code_synced_at` null whatever its
    column holds."""
    query = select(*_COLUMNS).join(Coupon, Coupon.id == Delivery.coupon_id).order_by(Delivery.id)
    query = query.where(*_delivery_filter(customer_id, shop, shops))
    no_platform = {name for name, found in shops.by_name.items() if found.platform == "none"} if shops else set()
    for row, skipped in _with_skipped(session, session.execute(query.execution_options(yield_per=STREAM_BATCH))):
        trigger, campaign = trigger_of(row.trigger_key)
        yield {
            "id": row.id,
            "shop": row.shop,
            "customer_id": raw_id(row.shop, row.customer_id),
            "code": None if row.variant == CONTROL else row.code,  # a held-out customer has no code
            "offer": offer_json(row),
            "channel": row.channel,
            "state": row.state,
            "reason": row.reason,
            "trigger_at": rfc3339(row.trigger_at),
            "due_at": rfc3339(row.due_at),
            "deadline_at": rfc3339(row.deadline_at),
            "sent_at": rfc3339(row.sent_at),
            "attempts": row.attempts,
            "redeemed_at": rfc3339(row.redeemed_at),
            "trigger": trigger,
            "campaign": campaign,
            "expires_at": rfc3339(row.expires_at),
            "code_synced_at": None if row.shop in no_platform else rfc3339(row.code_synced_at),
            "void": row.void_at is not None,
            "skipped": skipped,
            "variant": row.variant,
        }


def _with_skipped(session: Session, result: Any) -> Iterator[tuple[Any, list[dict]]]:
    """Each row of `result` with its `skipped` (SPEC rule 16): every channel passed over
    (attempt outcome `skipped`, e.g. whatsapp_us_blocked) or given up before the one in
    the delivery's `channel`, in the order first tried, with the reason of its last
    attempt. One query per fetched block of rows."""
    for rows in result.partitions():
        channel_of = {row.id: row.channel for row in rows}
        reasons: dict[int, dict[str, str]] = {}
        for delivery_id, channel, reason in session.execute(
                select(Attempt.delivery_id, Attempt.channel, Attempt.reason)
                .where(Attempt.delivery_id.in_(channel_of), Attempt.outcome != "sent").order_by(Attempt.id)):
            if channel != channel_of[delivery_id]:
                reasons.setdefault(delivery_id, {})[channel] = reason  # the first try's place, the last's reason
        for row in rows:
            yield row, [{"channel": channel, "reason": reason} for channel, reason in reasons.get(row.id, {}).items()]


def deliveries(session: Session, customer_id: str | None = None, *, shop: str | None = None,
               shops: Shops | None = None) -> list[dict]:
    """All of `iter_deliveries` as a list: for tests and small result sets only."""
    return list(iter_deliveries(session, customer_id, shop=shop, shops=shops))


def customer_id_width(session: Session, customer_id: str | None = None, *, shop: str | None = None,
                      shops: Shops | None = None) -> int:
    """The longest customer key among the rows `iter_deliveries` will show (for a text
    table; at least as long as the id shown)."""
    query = select(func.max(func.length(Delivery.customer_id))).where(*_delivery_filter(customer_id, shop, shops))
    return session.scalar(query) or 0
