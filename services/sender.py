"""Claim, send, record: the sending side of a batch of deliveries.

1. Claim: one UPDATE moves due `scheduled` rows to `sending` with a lease; a row
   another worker claimed is simply not returned, so no delivery goes out twice.
2. Decide (pure, `coupons.delivery_rules.decide_send`) with fresh consent,
   refunds, quiet hours and the frequency cap; render the message.
3. Send per channel over one reused connection; record every attempt and the
   new state right after each send, so a worker killed mid-batch leaves at most
   one sent-but-unrecorded message behind (see README, duplicates).
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from functools import lru_cache

import redis
from sqlalchemy import bindparam, func, select, update
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session
from tenacity import retry, retry_if_exception_type, stop_after_attempt, wait_exponential

from channels.adapter import SendResult, open_sender
from channels.ratelimit import Limiter, make_rate_limiter
from coupons.delivery_rules import after_attempt, decide_send
from coupons.messages import render_message, resolve_language
from coupons.model import Message, MessageContext, Offer
from coupons.unsubscribe import unsubscribe_url
from store.db import engine_for, session_scope
from store.models import (
    SCHEDULED,
    SENDING,
    SENT,
    Attempt,
    Coupon,
    Customer,
    Delivery,
    Order,
)

from .planner import customer_value
from .runtime import Clock, Runtime, utcnow

@dataclass
class Outgoing:
    delivery_id: int
    customer_id: str
    channel: str
    address: str
    message: Message
    deadline_at: datetime
    channel_attempts: int
    failed_channels: list[str]
    attempts: int
    timezone: str
    market_name: str
    due_at: datetime | None = None  # kept on success: latency runs from due to sent


@dataclass(frozen=True)
class BatchReport:
    claimed: int = 0
    sent: int = 0
    retried: int = 0
    ended: int = 0
    rescheduled: int = 0


def claim(session: Session, ids: list[int], now: datetime, lease: timedelta) -> list[int]:
    return list(session.execute(
        update(Delivery)
        .where(Delivery.id.in_(ids), Delivery.state == SCHEDULED, Delivery.due_at <= now)
        .values(state=SENDING, lease_expires_at=now + lease, updated_at=now)
        .returning(Delivery.id)
    ).scalars())


def offer_of(coupon: Coupon) -> Offer:
    return Offer(
        type=coupon.offer_type, sku=coupon.sku, product_name=coupon.product_name, currency=coupon.currency,
        price=None if coupon.price is None else Decimal(coupon.price),
        percent=None if coupon.percent is None else Decimal(coupon.percent),
        regular_price=None if coupon.regular_price is None else Decimal(coupon.regular_price),
    )


def _prepare(session: Session, runtime: Runtime, ids: list[int], now: datetime) -> tuple[list[Outgoing], list[dict], int]:
    """Decide each claimed delivery; returns what to send, rows to update now, and reschedules."""
    rows = session.execute(
        select(Delivery, Coupon, Customer)
        .join(Coupon, Coupon.id == Delivery.coupon_id)
        .join(Customer, Customer.id == Delivery.customer_id)
        .where(Delivery.id.in_(ids))
    ).all()
    coupon_ids = [coupon.id for _, coupon, _ in rows]
    live_orders = dict(session.execute(
        select(Order.coupon_id, func.count()).where(Order.coupon_id.in_(coupon_ids), Order.refunded_at.is_(None))
        .group_by(Order.coupon_id)
    ).all())
    last_sent = dict(session.execute(
        select(Delivery.customer_id, func.max(Delivery.sent_at))
        .where(Delivery.customer_id.in_({d.customer_id for d, _, _ in rows}), Delivery.state == SENT)
        .group_by(Delivery.customer_id)
    ).all())
    outgoing: list[Outgoing] = []
    updates: list[dict] = []
    rescheduled = 0
    for delivery, coupon, customer_row in rows:
        customer = customer_value(customer_row)
        market = runtime.markets.for_country(customer.country)
        last_reason = delivery.reason
        decision = decide_send(
            now=now, deadline_at=delivery.deadline_at, customer=customer, market=market,
            configured=runtime.configured_channels, opted_out=customer_row.opted_out or (),
            failed_channels=delivery.failed_channels or [], last_reason=last_reason,
            all_orders_refunded=live_orders.get(coupon.id, 0) == 0,
            last_sent_to_customer_at=last_sent.get(customer.id),
        )
        if decision.action == "end":
            updates.append(_row(delivery.id, now, state=decision.state, reason=decision.reason))
            continue
        if decision.action == "reschedule":
            updates.append(_row(delivery.id, now, state=SCHEDULED, due_at=decision.due_at))
            rescheduled += 1
            continue
        channel = decision.channel
        channel_attempts = delivery.channel_attempts if channel == delivery.channel else 0
        timezone = customer.timezone or market.timezone_for(customer.country)
        # The country's own region ("ar-SA", "es-MX") so formats fit even without a customer locale.
        language, locale = resolve_language(customer.locale, f"{market.language_for(customer.country)}-{customer.country}")
        message = render_message(MessageContext(
            language=language, locale=locale, customer_name=customer.name, offer=offer_of(coupon),
            code=coupon.code, expires_at=coupon.expires_at, timezone=timezone, framing=market.framing,
            unsubscribe_url=unsubscribe_url(runtime.settings.public_url, runtime.settings.webhook_secret,
                                            customer.id, channel),
        ), channel)
        last_sent[customer.id] = now  # a second delivery to them in this batch hits the cap
        outgoing.append(Outgoing(
            delivery_id=delivery.id, customer_id=customer.id, channel=channel, address=customer.address(channel),
            message=message, deadline_at=delivery.deadline_at, channel_attempts=channel_attempts,
            failed_channels=list(delivery.failed_channels or []), attempts=delivery.attempts,
            timezone=timezone, market_name=market.name, due_at=delivery.due_at,
        ))
    return outgoing, updates, rescheduled


def _row(delivery_id: int, now: datetime, *, state: str, reason: str | None = None,
         due_at: datetime | None = None) -> dict:
    """An update row for ORM bulk UPDATE by primary key (every row must have the same keys)."""
    return dict(id=delivery_id, state=state, reason=reason, updated_at=now, lease_expires_at=None,
                enqueued_at=None, **({"due_at": due_at} if due_at else {}))


def _bulk_update(session: Session, rows: list[dict]) -> None:
    by_keys: dict[tuple, list[dict]] = defaultdict(list)
    for row in rows:
        by_keys[tuple(sorted(row))].append(row)
    for group in by_keys.values():
        session.execute(update(Delivery), group)


def _outcome_row(item: Outgoing, result: SendResult, now: datetime, runtime: Runtime) -> dict:
    settings = runtime.settings
    channel_attempts = item.channel_attempts + 1
    outcome = after_attempt(
        now=now, deadline_at=item.deadline_at, channel=item.channel, ok=result.ok, transient=result.transient,
        reason=result.reason, retry_after=result.retry_after, channel_attempts=channel_attempts,
        max_attempts=settings.max_attempts_per_channel, failed_channels=item.failed_channels,
        retry_base_seconds=settings.retry_base_seconds, timezone=item.timezone,
        market=runtime.markets.by_name[item.market_name],
    )
    return dict(
        id=item.delivery_id, state=outcome.state, reason=outcome.reason, updated_at=now, lease_expires_at=None,
        enqueued_at=None, due_at=outcome.due_at or (item.due_at if result.ok and item.due_at else now),
        channel=item.channel, attempts=item.attempts + 1,
        channel_attempts=outcome.channel_attempts, failed_channels=outcome.failed_channels,
        sent_at=now if result.ok else None,
    )


_DELIVERIES = Delivery.__table__
_OUTCOME_COLUMNS = ("state", "reason", "updated_at", "lease_expires_at", "enqueued_at", "due_at", "channel",
                    "attempts", "channel_attempts", "failed_channels", "sent_at")
_ATTEMPT_COLUMNS = ("at", "channel", "outcome", "reason", "detail")
_INSERT_ATTEMPT = Attempt.__table__.insert().values(
    delivery_id=bindparam("delivery_id"), **{c: bindparam(f"attempt_{c}") for c in _ATTEMPT_COLUMNS})
_UPDATE_DELIVERY = _DELIVERIES.update().where(_DELIVERIES.c.id == bindparam("delivery_id")).values(
    {c: bindparam(f"new_{c}") for c in _OUTCOME_COLUMNS})
_RECORD_IN_ONE_STATEMENT = _UPDATE_DELIVERY.add_cte(_INSERT_ATTEMPT.cte("attempt"))
"""PostgreSQL: the attempt row and the delivery's new state in one statement, so a
result costs one round trip in autocommit."""


def _record_params(item: Outgoing, result: SendResult, at: datetime, runtime: Runtime) -> dict:
    outcome = _outcome_row(item, result, at, runtime)
    attempt = dict(at=at, channel=item.channel, reason=result.reason, detail=result.detail[:2000],
                   outcome="sent" if result.ok else ("transient" if result.transient else "permanent"))
    return {"delivery_id": item.delivery_id, **{f"new_{c}": outcome[c] for c in _OUTCOME_COLUMNS},
            **{f"attempt_{c}": attempt[c] for c in _ATTEMPT_COLUMNS}}


class _Recorder:
    """Commits what the provider answered, right after it answered: a worker killed
    mid-batch leaves at most the one message in flight sent-but-unrecorded.

    One connection per batch. On PostgreSQL it runs in autocommit with
    synchronous_commit off, and each result is a single statement: a killed worker
    cannot lose a result PostgreSQL received, only a crash of the server could.
    A dropped connection is reopened and the write retried: losing it would mean
    sending again."""

    def __init__(self, runtime: Runtime):
        self.runtime = runtime
        self.engine = engine_for(runtime.database_url)
        self.connection = None

    def _open(self):
        if self.connection is None:
            connection = self.engine.connect()
            if self.engine.dialect.name == "postgresql":
                connection = connection.execution_options(isolation_level="AUTOCOMMIT")
                connection.exec_driver_sql("SET synchronous_commit TO OFF")
            self.connection = connection
        return self.connection

    @retry(retry=retry_if_exception_type(OperationalError), stop=stop_after_attempt(4),
           wait=wait_exponential(multiplier=0.1, max=1.0), reraise=True)
    def record(self, item: Outgoing, result: SendResult, at: datetime) -> None:
        row = _record_params(item, result, at, self.runtime)
        try:
            connection = self._open()
            if self.engine.dialect.name == "postgresql":
                connection.execute(_RECORD_IN_ONE_STATEMENT, row)
            else:
                with connection.begin():
                    connection.execute(_INSERT_ATTEMPT, row)
                    connection.execute(_UPDATE_DELIVERY, row)
        except OperationalError:
            self.close(broken=True)
            raise

    def close(self, broken: bool = False) -> None:
        if self.connection is None:
            return
        if broken:
            self.connection.invalidate()
        elif self.engine.dialect.name == "postgresql":
            self.connection.exec_driver_sql("RESET synchronous_commit")
        self.connection.close()
        self.connection = None


class _LeaseKeeper:
    """Extends the lease on the batch's unsent deliveries while the worker is alive,
    so a slow batch is never handed to a second worker; a dead worker stops renewing
    and its rows return to the relay one lease later."""

    def __init__(self, runtime: Runtime, delivery_ids: list[int], clock: Clock):
        self.runtime = runtime
        self.remaining = set(delivery_ids)
        self.clock = clock
        self.seconds = runtime.settings.lease_seconds
        self.renewed_at = clock()

    def done(self, delivery_id: int) -> None:
        self.remaining.discard(delivery_id)

    def renew_if_due(self) -> None:
        now = self.clock()
        if not self.remaining or (now - self.renewed_at).total_seconds() < self.seconds / 3:
            return
        with session_scope(self.runtime.database_url) as session:
            session.execute(update(Delivery).where(Delivery.id.in_(self.remaining), Delivery.state == SENDING)
                            .values(lease_expires_at=now + timedelta(seconds=self.seconds)))
        self.renewed_at = now


MAX_RATE_WAIT_SECONDS = 1.0
"""Longest a worker waits in place for a rate-limit token before rescheduling."""


@lru_cache(maxsize=16)
def _limiter_for(channel: str, rate: float, redis_url: str | None) -> Limiter:
    client = redis.Redis.from_url(redis_url) if redis_url else None
    return make_rate_limiter(channel, rate, max(1, math.ceil(rate)), client)


def rate_limiter(runtime: Runtime, channel: str) -> Limiter | None:
    """The channel's shared token bucket (Redis when the broker is Redis), or None if unlimited."""
    rate = runtime.settings.rate_limits.get(channel)
    return _limiter_for(channel, rate, runtime.settings.redis_url) if rate else None


def _wait_for_token(limiter: Limiter | None) -> float | None:
    """None once a token is taken; the wait in seconds if it is too long to hold the worker."""
    if limiter is None:
        return None
    while (wait := limiter.acquire()) > 0:
        if wait > MAX_RATE_WAIT_SECONDS:
            return wait
        time.sleep(wait)
    return None


def _postpone(runtime: Runtime, items: list[Outgoing], due_at: datetime) -> None:
    with session_scope(runtime.database_url) as session:
        _bulk_update(session, [_row(item.delivery_id, due_at, state=SCHEDULED, reason="rate_limited", due_at=due_at)
                               for item in items])


def send_deliveries(runtime: Runtime, ids: list[int], clock: Clock = utcnow) -> BatchReport:
    """Claim, send and record one batch; safe to run twice with the same ids."""
    now = clock()
    with session_scope(runtime.database_url) as session:
        claimed = claim(session, ids, now, timedelta(seconds=runtime.settings.lease_seconds))
    if not claimed:
        return BatchReport()
    with session_scope(runtime.database_url) as session:
        outgoing, updates, rescheduled = _prepare(session, runtime, claimed, now)
        _bulk_update(session, updates)
    ended = len(updates) - rescheduled
    by_channel: dict[str, list[Outgoing]] = defaultdict(list)
    for item in outgoing:
        by_channel[item.channel].append(item)
    sent = retried = 0
    lease = _LeaseKeeper(runtime, [item.delivery_id for item in outgoing], clock)
    recorder = _Recorder(runtime)
    try:
        for channel, items in by_channel.items():
            limiter = rate_limiter(runtime, channel)
            with open_sender(channel, runtime.settings.channel_templates[channel]) as sender:
                for index, item in enumerate(items):
                    wait = _wait_for_token(limiter)
                    if wait is not None:
                        # The provider's rate is spent for longer than a worker should hold:
                        # hand the rest back to the relay for when tokens are there again.
                        _postpone(runtime, items[index:], clock() + timedelta(seconds=wait))
                        rescheduled += len(items) - index
                        break
                    lease.renew_if_due()
                    result = sender.send(item.address, item.message)
                    recorder.record(item, result, clock())
                    lease.done(item.delivery_id)
                    sent += result.ok
                    retried += not result.ok
    finally:
        recorder.close()
    return BatchReport(claimed=len(claimed), sent=sent, retried=retried, ended=ended, rescheduled=rescheduled)
