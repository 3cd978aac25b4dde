"""Read-only aggregates for /metrics and the dashboard, computed by the database.

Every figure is a GROUP BY (or a single aggregate row): with a million deliveries
the database scans once and returns a handful of rows; Python only maps countries
to markets and draws. Both SQLite and PostgreSQL are served.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal

from sqlalchemy import Float, and_, case, cast, func, literal, select
from sqlalchemy.orm import Session

from coupons.markets import Markets
from coupons.review import discount_given, money_totals
from coupons.shops import DEFAULT_SHOP, raw_id
from services.reports import COUNTS_TOWARD_ON_TIME, SENT_ON_TIME
from store.models import (
    CANCELLED,
    EXPIRED,
    FAILED,
    SCHEDULED,
    SENDING,
    SENT,
    SUPPRESSED,
    Coupon,
    Customer,
    DeadLetter,
    Delivery,
    InboxEvent,
    Order,
    Stream,
)

LATENCY_BUCKETS = (1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0, 4 * 3600.0, 12 * 3600.0, 24 * 3600.0)
"""Seconds from due to sent: a healthy Encore sends within seconds; 24 h is the deadline."""


def seconds_between(session: Session, start, end):
    """`end - start` in seconds, as SQL (double precision: PostgreSQL's EXTRACT gives
    numeric, several times slower to compare over a million rows)."""
    if session.get_bind().dialect.name == "postgresql":
        return cast(func.extract("epoch", end - start), Float)
    return (func.julianday(end) - func.julianday(start)) * 86400.0


def _latency(session: Session):
    """Seconds from due to sent, never negative (evaluated once per row: no CASE)."""
    raw = seconds_between(session, Delivery.due_at, Delivery.sent_at)
    if session.get_bind().dialect.name == "postgresql":
        return func.greatest(raw, 0.0)
    return func.max(raw, 0.0)  # SQLite's two-argument max() is the scalar one


_next_attempt = func.coalesce(Delivery.next_attempt_at, Delivery.due_at)
"""When a scheduled delivery is next due: its retry's time, else its planned due time."""


def _rate(numerator: int, denominator: int) -> float:
    return numerator / denominator if denominator else 0.0


# ------------------------------------------------------------------------------ metrics


@dataclass
class MetricsSnapshot:
    events: dict[tuple[str, str], int] = field(default_factory=dict)  # (type, outcome) -> count
    deliveries: dict[tuple[str, str], int] = field(default_factory=dict)  # (state, channel) -> count
    latency_buckets: list[tuple[float, int]] = field(default_factory=list)  # cumulative
    latency_count: int = 0
    latency_sum: float = 0.0
    on_time_rate: float = 1.0
    due_backlog: int = 0
    oldest_due_age_seconds: float = 0.0


def _of_shop(table, shop: str | None) -> tuple:
    """The condition keeping `shop`'s rows of `table` (SPEC section 7); none for every shop."""
    return () if shop is None else (table.shop == shop,)


def metrics_snapshot(session: Session, now: datetime, shop: str | None = None) -> MetricsSnapshot:
    """The figures of /metrics, of every shop or of `shop`'s rows only."""
    snap = MetricsSnapshot()
    processed = case((InboxEvent.processed_at.is_(None), literal("pending")), else_=literal("applied"))
    for event_type, outcome, count in session.execute(
            select(InboxEvent.type, processed, func.count()).where(*_of_shop(InboxEvent, shop))
            .group_by(InboxEvent.type, processed)):
        snap.events[(event_type, outcome)] = count
    rejected = session.scalar(select(func.count()).select_from(DeadLetter).where(
        DeadLetter.source != "apply", *_of_shop(DeadLetter, shop))) or 0
    failed_to_apply = session.scalar(select(func.count()).select_from(DeadLetter)
                                     .where(DeadLetter.source == "apply", *_of_shop(DeadLetter, shop))) or 0
    # A rejected event has no trustworthy type: it failed validation.
    snap.events[("unknown", "rejected")] = rejected
    snap.events[("unknown", "failed_to_apply")] = failed_to_apply

    channel = func.coalesce(Delivery.channel, literal("none"))
    for state, channel_name, count in session.execute(
            select(Delivery.state, channel, func.count()).where(*_of_shop(Delivery, shop))
            .group_by(Delivery.state, channel)):
        snap.deliveries[(state, channel_name)] = count

    # One pass: each sent delivery falls in its first bucket; cumulative counts are summed here.
    latency = select(_latency(session).label("seconds")).where(Delivery.state == SENT,
                                                               *_of_shop(Delivery, shop)).subquery()
    bucket = case(*[(latency.c.seconds <= bound, index) for index, bound in enumerate(LATENCY_BUCKETS)],
                  else_=len(LATENCY_BUCKETS))
    per_bucket = [0] * (len(LATENCY_BUCKETS) + 1)
    for index, count, total in session.execute(
            select(bucket, func.count(), func.sum(latency.c.seconds)).group_by(bucket)):
        per_bucket[int(index)] = count
        snap.latency_sum += float(total or 0.0)
    snap.latency_count = sum(per_bucket)
    running = 0
    for bound, count in zip(LATENCY_BUCKETS, per_bucket, strict=False):  # the last is +Inf
        running += count
        snap.latency_buckets.append((bound, running))

    finished, on_time = session.execute(
        select(func.count(), _count_if(SENT_ON_TIME)).where(COUNTS_TOWARD_ON_TIME, *_of_shop(Delivery, shop))).one()
    snap.on_time_rate = _rate(int(on_time), int(finished)) if finished else 1.0

    backlog, oldest = session.execute(
        select(func.count(), func.min(_next_attempt)).where(Delivery.state == SCHEDULED, _next_attempt <= now,
                                                            *_of_shop(Delivery, shop))
    ).one()
    snap.due_backlog = int(backlog)
    if oldest is not None:
        snap.oldest_due_age_seconds = max(0.0, (now - oldest).total_seconds())
    return snap


# ---------------------------------------------------------------------------- dashboard


@dataclass
class Funnel:
    label: str
    buyers: int = 0
    coupons: int = 0
    sent_on_time: int = 0
    redeemed: int = 0
    finished: int = 0  # sent or expired, backfills aside: what "on time" is a share of
    late_events: int = 0  # expired on arrival (a backfill), shown apart
    shop: str | None = None  # a stream's shop and end, for its review page
    ended_at: datetime | None = None
    stream: str | None = None


@dataclass
class Rate:
    label: str
    redeemed: int
    sent: int

    @property
    def rate(self) -> float:
        return _rate(self.redeemed, self.sent)


@dataclass
class Dashboard:
    totals: Funnel
    by_market: list[Funnel]
    by_stream: list[Funnel]
    by_offer: list[Rate]
    by_market_rate: list[Rate]
    over_time: list[tuple[datetime, dict[str, int]]]  # bucket start -> sent per channel
    bucket: str  # "hour" | "day"
    problems: list[tuple[str, str, int]]  # (state, reason, count)
    waiting: int = 0  # scheduled or being sent right now
    revenue: dict[str, str] = field(default_factory=dict)  # currency -> the redeeming orders' total
    discount: dict[str, str] = field(default_factory=dict)  # currency -> what the redeemed coupons gave away


STREAMS_SHOWN = 8
BUCKETS_SHOWN = 48


def _between(column, since: datetime | None, until: datetime | None):
    """`since <= column < until`, either end open."""
    conditions = [column >= since] if since is not None else []
    if until is not None:
        conditions.append(column < until)
    return and_(literal(True), *conditions)


def dashboard(session: Session, markets: Markets, now: datetime, since: datetime | None = None,
              until: datetime | None = None, shop: str | None = None) -> Dashboard:
    """The dashboard's figures for coupons triggered (and buyers who ordered) in [since, until),
    of every shop or of `shop`'s rows only."""
    # Buyers per market: customers with an order in the range, by country; markets from the file.
    by_market: dict[str, Funnel] = {}
    for country, buyers in session.execute(
            select(Customer.country, func.count(func.distinct(Order.customer_id)))
            .join(Order, Order.customer_id == Customer.id)
            .where(Customer.country != "", _between(Order.occurred_at, since, until), *_of_shop(Customer, shop))
            .group_by(Customer.country)):
        name = markets.for_country(country).name
        by_market.setdefault(name, Funnel(name)).buyers += buyers

    # One scan of coupons ⋈ deliveries gives the market funnels and both redemption rates.
    # The control group of an experiment gets no coupon (no message, no code): not counted.
    sent = Delivery.state == SENT
    is_redeemed = Coupon.redeemed_at.is_not(None)
    late_event = and_(Delivery.state == EXPIRED, Delivery.reason == "late_event")
    issued = and_(_between(Delivery.trigger_at, since, until), ~_held_out(), *_of_shop(Delivery, shop))
    offer_rates: dict[str, Rate] = {}
    market_rates: dict[str, Rate] = {}
    for market, offer, coupons, on_time, finished, late, sent_count, sent_redeemed, redeemed_count in session.execute(
            select(Coupon.market, Coupon.offer_type, func.count(), _count_if(SENT_ON_TIME),
                   _count_if(COUNTS_TOWARD_ON_TIME), _count_if(late_event), _count_if(sent),
                   _count_if(and_(sent, is_redeemed)), _count_if(is_redeemed))
            .select_from(Coupon).join(Delivery, Delivery.coupon_id == Coupon.id).where(issued)
            .group_by(Coupon.market, Coupon.offer_type)):
        funnel = by_market.setdefault(market, Funnel(market))
        funnel.coupons += coupons
        funnel.sent_on_time += int(on_time)
        funnel.finished += int(finished)
        funnel.late_events += int(late)
        funnel.redeemed += int(redeemed_count)
        if sent_count:
            for rates, key in ((offer_rates, offer), (market_rates, market)):
                rate = rates.setdefault(key, Rate(key, 0, 0))
                rate.redeemed += int(sent_redeemed)
                rate.sent += int(sent_count)

    streams = _latest_streams(session, since, until, shop)
    over_time, bucket = _sent_over_time(session, now, shop)
    problems = [(state, reason or "unknown", count) for state, reason, count in session.execute(
        select(Delivery.state, Delivery.reason, func.count())
        .where(Delivery.state.in_((FAILED, SUPPRESSED, EXPIRED, CANCELLED)), _between(Delivery.trigger_at, since, until),
               *_of_shop(Delivery, shop))
        .group_by(Delivery.state, Delivery.reason).order_by(func.count().desc()))]
    waiting = session.scalar(select(func.count()).select_from(Delivery)
                             .where(Delivery.state.in_((SCHEDULED, SENDING)), *_of_shop(Delivery, shop))) or 0
    totals = Funnel("all markets")
    for funnel in by_market.values():
        for key in ("buyers", "coupons", "sent_on_time", "redeemed", "finished", "late_events"):
            setattr(totals, key, getattr(totals, key) + getattr(funnel, key))
    revenue, discount = _money(session, since, until, shop)
    return Dashboard(totals=totals, by_market=sorted(by_market.values(), key=lambda f: (-f.buyers, f.label)),
                     by_stream=streams,
                     by_offer=[offer_rates[k] for k in sorted(offer_rates)],
                     by_market_rate=[market_rates[k] for k in sorted(market_rates)],
                     over_time=over_time, bucket=bucket, problems=problems, waiting=waiting,
                     revenue=revenue, discount=discount)


def _held_out():
    return func.coalesce(Delivery.variant, literal("")) == "control"


def _latest_streams(session: Session, since: datetime | None, until: datetime | None,
                    shop: str | None = None) -> list[Funnel]:
    """The latest ended streams in the range, newest first, each with its funnel."""
    streams = {key: Funnel(key, shop=shop, ended_at=ended_at) for shop, key, ended_at in session.execute(
        select(Stream.shop, Stream.id, Stream.ended_at)
        .where(Stream.ended_at.is_not(None), _between(Stream.ended_at, since, until), *_of_shop(Stream, shop))
        .order_by(Stream.ended_at.desc(), Stream.id).limit(STREAMS_SHOWN))}
    if not streams:
        return []
    for key, buyers in session.execute(
            select(Order.stream_id, func.count(func.distinct(Order.customer_id)))
            .where(Order.stream_id.in_(list(streams))).group_by(Order.stream_id)):
        streams[str(key)].buyers = buyers
    for key, coupons, on_time, finished, redeemed_count in session.execute(
            select(Coupon.trigger_key, func.count(), _count_if(SENT_ON_TIME), _count_if(COUNTS_TOWARD_ON_TIME),
                   _count_if(Coupon.redeemed_at.is_not(None)))
            .select_from(Coupon).join(Delivery, Delivery.coupon_id == Coupon.id)
            .where(Coupon.trigger_key.in_([f"stream:{s}" for s in streams]), ~_held_out())
            .group_by(Coupon.trigger_key)):
        funnel = streams[key.removeprefix("stream:")]
        funnel.coupons, funnel.sent_on_time, funnel.finished, funnel.redeemed = \
            coupons, int(on_time), int(finished), int(redeemed_count)
    for funnel in streams.values():
        funnel.stream = _shown_id(funnel.shop or DEFAULT_SHOP, funnel.label)
        # A shop other than the default is named in front (the same id may be in two shops).
        shown = funnel.stream if funnel.shop in (None, DEFAULT_SHOP) else f"{funnel.shop} · {funnel.stream}"
        funnel.label = f"{shown} · {funnel.ended_at:%b %d}" if funnel.ended_at else shown
    return list(streams.values())


def _shown_id(shop: str, key: str) -> str:
    """A stored stream key as the shop sent it (coupons.shops.shop_key undone)."""
    try:
        return raw_id(shop, key)
    except ValueError:
        return key


def _money(session: Session, since: datetime | None, until: datetime | None,
           shop: str | None = None) -> tuple[dict[str, str], dict[str, str]]:
    """Per currency: the revenue of the orders that redeemed a coupon in the range (the shop's
    total when it gave one, else the items' unit_price x quantity; refunded orders aside), and
    the discount those coupons gave. Reads only redeemed coupons."""
    revenue: list[tuple[str, Decimal]] = []
    discount: list[tuple[str, Decimal]] = []
    seen_orders: set[str] = set()
    for row in session.execute(
            select(Coupon.offer_type, Coupon.currency, Coupon.regular_price, Coupon.price, Coupon.percent,
                   Order.id, Order.currency.label("order_currency"), Order.total, Order.items, Order.refunded_at)
            .outerjoin(Order, Order.id == Coupon.redeemed_order_id)
            .where(Coupon.redeemed_at.is_not(None), _between(Coupon.redeemed_at, since, until), *_of_shop(Coupon, shop))):
        discount.append((row.currency, discount_given(
            row.offer_type, None if row.regular_price is None else Decimal(row.regular_price),
            None if row.price is None else Decimal(row.price), None if row.percent is None else Decimal(row.percent),
            row.currency)))
        if row.id is None or row.refunded_at is not None or row.id in seen_orders:
            continue
        seen_orders.add(row.id)
        if row.total is not None:
            revenue.append((row.order_currency, Decimal(row.total)))
        else:
            items = row.items if isinstance(row.items, list) else json.loads(row.items)
            revenue.append((row.order_currency, sum((Decimal(str(i["unit_price"])) * int(i["quantity"])
                                                     for i in items), Decimal(0))))
    return money_totals(revenue), money_totals(discount)


def _count_if(condition):
    return func.coalesce(func.sum(case((condition, 1), else_=0)), 0)


def _sent_over_time(session: Session, now: datetime,
                    shop: str | None = None) -> tuple[list[tuple[datetime, dict[str, int]]], str]:
    """Messages sent per hour (or per day when the history is longer than 3 days), by channel."""
    first, last = session.execute(select(func.min(Delivery.sent_at), func.max(Delivery.sent_at))
                                  .where(Delivery.state == SENT, *_of_shop(Delivery, shop))).one()
    if first is None or last is None:
        return [], "hour"
    bucket = "hour" if last - first <= timedelta(days=3) else "day"
    step = timedelta(hours=1) if bucket == "hour" else timedelta(days=1)
    start = last - step * (BUCKETS_SHOWN - 1)
    if session.get_bind().dialect.name == "postgresql":
        slot = func.date_trunc(bucket, func.timezone("UTC", Delivery.sent_at))
    else:
        slot = func.strftime("%Y-%m-%dT%H:00:00" if bucket == "hour" else "%Y-%m-%dT00:00:00", Delivery.sent_at)
    rows = session.execute(
        select(slot, Delivery.channel, func.count()).where(Delivery.state == SENT, Delivery.sent_at >= start,
                                                           *_of_shop(Delivery, shop))
        .group_by(slot, Delivery.channel).order_by(slot)
    ).all()
    series: dict[str, dict[str, int]] = {}
    for when, channel, count in rows:
        key = when.strftime("%Y-%m-%dT%H:00:00") if isinstance(when, datetime) else str(when)[:19]
        series.setdefault(key, {})[channel or "none"] = count
    out = [(datetime.fromisoformat(key).replace(tzinfo=now.tzinfo), counts) for key, counts in series.items()]
    return out, bucket
