"""Claim, send, record: the sending side of a batch of deliveries.

1. Claim: one UPDATE moves due `scheduled` rows to `sending` with a lease and a
   fresh claim token; a row another worker claimed is simply not returned.
2. Decide (pure, `coupons.delivery_rules.decide_send`) with fresh consent,
   refunds, quiet hours and the frequency cap; render the message. One delivery
   that cannot be decided or rendered ends `failed` (`render_error`) on its own.
3. Per delivery (`_send_one`): check the claim is still ours (the fence), check the
   deadline and quiet hours at that moment, send, record. Every write of a result
   applies only while the row is `sending` under our token, so a worker that
   stalled past its lease can neither send (it finds out before the send) nor
   overwrite the new owner's result. Results are recorded right after each send.

Many sends are in flight at once: each channel's items are sent by up to
`Settings.concurrency_for(channel)` threads, each with a sender lent by
`channels.pool` (its SMTP session or HTTP keep-alive connection is kept). The
threads share the batch's `_Claim`: one database connection, behind a lock, so a
batch holds one connection however many sends it has in flight, and a worker killed
mid-batch leaves at most its in-flight messages sent-but-unrecorded (each only for
the one database round trip after the provider's answer).
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from functools import lru_cache
from typing import TypeVar

from sqlalchemy import Connection, Row, String, bindparam, func, select, update
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.orm import Session

from channels.adapter import ChannelSender, SendResult
from channels.ratelimit import Limiter
from coupons.delivery_rules import SendDecision, after_attempt, decide_send, send_window
from coupons.markets import Market
from coupons.messages import render_message, resolve_language
from coupons.model import Customer as CustomerValue
from coupons.model import Message, MessageContext, Offer
from coupons.unsubscribe import unsubscribe_url
from store.bulk import one_of, unnest
from store.db import engine_for, session_scope
from store.models import (
    FAILED,
    SCHEDULED,
    SENDING,
    SENT,
    Attempt,
    Coupon,
    Customer,
    Delivery,
    Order,
    UTCDateTime,
)
from store.rows import customer_value
from config.settings import Settings

from .expiry import last_transient_reason
from .failures import failure_reason
from .bootstrap import Runtime
from .ports import Clock

log = logging.getLogger(__name__)

_DELIVERIES = Delivery.__table__
_ATTEMPTS = Attempt.__table__


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
    channels: tuple[str, ...]  # usable when claimed, market order: what may follow a failure
    last_reason: str | None = None
    last_transient_reason: str | None = None  # an expiry keeps it (rule 12)


@dataclass(frozen=True)
class BatchReport:
    claimed: int = 0
    sent: int = 0
    retried: int = 0
    ended: int = 0
    rescheduled: int = 0
    lost: int = 0  # rows another worker took over after this one's lease ran out


@dataclass
class ClaimedBatch:
    """What one claim took: its token, when, and what to send."""

    token: str
    claimed_at: datetime
    claimed: list[int]
    outgoing: list[Outgoing] = field(default_factory=list)
    ended: int = 0
    rescheduled: int = 0


def new_claim_token() -> str:
    return uuid.uuid4().hex


def claim(session: Session, ids: list[int], now: datetime, lease: timedelta, token: str) -> list[int]:
    """Take the due rows among `ids` for this worker, under `token` (a Core UPDATE: the
    ORM's bulk-update bookkeeping cost more CPU than the statement)."""
    return list(session.execute(
        _DELIVERIES.update()
        .where(one_of(session, _DELIVERIES.c.id, ids), _DELIVERIES.c.state == SCHEDULED, _DELIVERIES.c.next_attempt_at <= now)
        .values(state=SENDING, lease_expires_at=now + lease, updated_at=now, claim_token=token)
        .returning(_DELIVERIES.c.id)
    ).scalars())


def offer_of(coupon: Coupon | Row) -> Offer:
    """The offer of a coupon (an ORM object or a row with its column names)."""
    return Offer(
        type=coupon.offer_type, sku=coupon.sku, product_name=coupon.product_name, currency=coupon.currency,
        price=None if coupon.price is None else Decimal(coupon.price),
        percent=None if coupon.percent is None else Decimal(coupon.percent),
        regular_price=None if coupon.regular_price is None else Decimal(coupon.regular_price),
    )


# --------------------------------------------------------------------------- fenced writes

_ATTEMPT_COLUMNS = ("at", "channel", "outcome", "reason", "detail")
_ATTEMPT_TYPES = {"at": UTCDateTime(), "channel": String(), "outcome": String(), "reason": String(),
                  "detail": String()}


@lru_cache(maxsize=32)
def _fenced_update(columns: tuple[str, ...]):
    """UPDATE one delivery only while it is `sending` under the writer's claim token."""
    return (_DELIVERIES.update()
            .where(_DELIVERIES.c.id == bindparam("delivery_id"),
                   _DELIVERIES.c.claim_token == bindparam("owner_token"),
                   _DELIVERIES.c.state == SENDING)
            .values({c: bindparam(f"new_{c}") for c in columns}))


_INSERT_ATTEMPT = _ATTEMPTS.insert().values(
    delivery_id=bindparam("delivery_id"), **{c: bindparam(f"attempt_{c}") for c in _ATTEMPT_COLUMNS})


@lru_cache(maxsize=32)
def _lone_write_postgresql(columns: tuple[str, ...], with_attempt: bool):
    """PostgreSQL, one row: the fenced update and, only if it applied, the attempt row,
    in one statement with scalar parameters. Returns the id if applied."""
    applied = _fenced_update(columns).returning(_DELIVERIES.c.id)
    if not with_attempt:
        return applied
    applied_cte = applied.cte("applied")
    values = select(applied_cte.c.id,
                    *(bindparam(f"attempt_{c}", type_=_ATTEMPT_TYPES[c]) for c in _ATTEMPT_COLUMNS))
    return (_ATTEMPTS.insert().from_select(["delivery_id", *_ATTEMPT_COLUMNS], values)
            .add_cte(applied_cte).returning(_ATTEMPTS.c.delivery_id))


def _clean_detail(detail: str) -> str:
    # PostgreSQL text cannot hold NUL; a provider's answer may.
    return detail.replace("\x00", "")[:2000]


Write = tuple[dict, dict | None]
"""One result to write: the delivery's new columns (with its `delivery_id`), and the
attempt row to add if the row is still ours (None: no attempt, e.g. a reschedule)."""


def _write_fenced(connection: Connection | Session, values: dict, attempt: dict | None) -> bool:
    """Apply `values` (and record `attempt`) if the row is still ours; True if it was."""
    return _write_fenced_group(connection, values["claim_token"], [(values, attempt)])[0]


def _write_fenced_group(connection: Connection | Session, token: str, writes: list[Write]) -> list[bool]:
    """Apply each write whose row is still `sending` under `token`, and add its attempt;
    True for each that applied. The fence is per row: a row another worker took over is
    left alone (and gets no attempt) while the others in the group apply. On PostgreSQL
    the writes of one shape (same columns, with or without an attempt) are one statement,
    so a group costs one round trip; SQLite runs them in the caller's transaction."""
    postgresql = (connection.get_bind() if isinstance(connection, Session) else connection).dialect.name == "postgresql"
    applied: set[int] = set()
    for (columns, with_attempt), group in _by_shape(writes).items():
        if postgresql and len(group) > 1:
            driver = connection.connection() if isinstance(connection, Session) else connection
            applied.update(_write_group_postgresql(driver, token, columns, with_attempt, group))
            continue
        for values, attempt in group:
            params = {"delivery_id": values["delivery_id"], "owner_token": token,
                      **{f"new_{c}": values[c] for c in columns}, **_attempt_params(attempt)}
            if postgresql:
                # Scalar parameters: for one row, cheaper to send and to plan than arrays.
                if connection.execute(_lone_write_postgresql(columns, with_attempt), params).first() is not None:
                    applied.add(values["delivery_id"])
            elif connection.execute(_fenced_update(columns), params).rowcount == 1:
                applied.add(values["delivery_id"])
                if attempt is not None:
                    connection.execute(_INSERT_ATTEMPT, params)
    return [values["delivery_id"] in applied for values, _ in writes]


def _by_shape(writes: list[Write]) -> dict[tuple[tuple[str, ...], bool], list[Write]]:
    """The writes by their columns and whether they add an attempt: one statement each."""
    shapes: dict[tuple[tuple[str, ...], bool], list[Write]] = defaultdict(list)
    for values, attempt in writes:
        columns = tuple(sorted(c for c in values if c not in ("delivery_id", "claim_token")))
        shapes[(columns, attempt is not None)].append((values, attempt))
    return shapes


def _attempt_params(attempt: dict | None) -> dict:
    if attempt is None:
        return {}
    return {**{f"attempt_{c}": attempt[c] for c in _ATTEMPT_COLUMNS}, "attempt_detail": _clean_detail(attempt["detail"])}


def _write_group_postgresql(connection: Connection, token: str, columns: tuple[str, ...], with_attempt: bool,
                            group: list[Write]) -> list[int]:
    """One statement for several rows: the fenced UPDATE joined to the rows (one binary
    array per column, store.bulk) and, in a CTE, the attempts of only the rows it
    updated; returns their ids. Rows go in id order, so that two statements lock rows
    they share in the same order."""
    types = {"delivery_id": _DELIVERIES.c.id, **{c: _DELIVERIES.c[c] for c in columns}}
    if with_attempt:
        types.update({f"attempt_{c}": _ATTEMPTS.c[c] for c in _ATTEMPT_COLUMNS})
    rows = [{**values, **_attempt_params(attempt)} for values, attempt in sorted(group, key=lambda w: w[0]["delivery_id"])]
    table_of_rows, params = unnest(types, rows, connection.dialect)
    params["owner_token"] = token
    return list(connection.exec_driver_sql(_group_statement(columns, with_attempt, table_of_rows), params).scalars())


@lru_cache(maxsize=32)
def _group_statement(columns: tuple[str, ...], with_attempt: bool, table_of_rows: str) -> str:
    """The text of `_write_group_postgresql`'s statement: the same for every group of a shape."""
    update = (f"UPDATE deliveries SET {', '.join(f'{chr(34)}{c}{chr(34)} = v.{c}' for c in columns)} "
              f"FROM {table_of_rows} AS v(delivery_id, {', '.join(columns)}"
              f"{''.join(f', attempt_{c}' for c in _ATTEMPT_COLUMNS) if with_attempt else ''}) "
              f"WHERE deliveries.id = v.delivery_id AND deliveries.claim_token = %(owner_token)s "
              f"AND deliveries.state = '{SENDING}' RETURNING v.delivery_id")
    if not with_attempt:
        return update
    return (f"WITH applied AS ({update}{''.join(f', v.attempt_{c}' for c in _ATTEMPT_COLUMNS)}) "
            f"INSERT INTO attempts (delivery_id, {', '.join(f'{chr(34)}{c}{chr(34)}' for c in _ATTEMPT_COLUMNS)}) "
            f"SELECT * FROM applied RETURNING delivery_id")


T = TypeVar("T")

RENEW_FRACTION = 3
"""The claim is renewed and verified every lease/3: a worker that stalled longer than
that checks it still owns a row before sending it (a DB round trip per lease/3 per
batch, not per message). The 2/3 lease left covers clock skew up to that much
between the worker and the relay that releases leases."""
RECORD_SAFETY_FRACTION = 10
"""A write that meets a database outage is retried until the lease is this fraction
from running out; the fence keeps a later write harmless anyway."""
MIN_RECORD_PATIENCE_SECONDS = 1.0
MAX_RECORD_WAIT_SECONDS = 2.0


@dataclass(eq=False)
class _Ticket:
    """One thread's results waiting for the batch's connection (group commit)."""

    writes: list[Write]
    signal: threading.Event = field(default_factory=threading.Event)
    lead: bool = False  # this thread writes the next group (it was signalled to, or found no writer)
    applied: list[bool] = field(default_factory=list)
    error: BaseException | None = None


class _Claim:
    """One batch's claim: its token, the rows it still owns, and the one connection
    that writes their results. Thread-safe: the batch's sending threads share it,
    and one lock serialises its reads and writes (a write is one round trip), so a
    database outage being waited out by one thread also holds every other thread
    before its next send: nothing new goes out while results cannot be recorded.

    Results are group-committed: a thread whose result finds a write running queues
    it, and the next writer takes every result queued by then into one statement. No
    result waits for more to arrive: the connection writes whatever is queued the moment
    it is free, so a crash loses no more than before, in fewer round trips.

    On PostgreSQL the connection runs in autocommit with synchronous_commit off and
    generic plans, and a result (or a group of results) is one statement: a killed
    worker cannot lose a result PostgreSQL received.
    A database outage while writing is waited out (reconnect, back off) for as long as
    the lease holds: the provider has accepted the message, and giving up would mean
    sending it again after the lease."""

    def __init__(self, runtime: Runtime, batch: ClaimedBatch, clock: Clock,
                 sleep: Callable[[float], None] = time.sleep):
        self.runtime = runtime
        self.token = batch.token
        self.clock = clock
        self.sleep = sleep
        self.owned = {item.delivery_id for item in batch.outgoing}
        self.lease = timedelta(seconds=runtime.settings.lease_seconds)
        self.verified_at = batch.claimed_at
        self.engine = engine_for(runtime.database_url)
        self.connection: Connection | None = None
        self._lock = threading.RLock()
        self._queue_lock = threading.Lock()
        self._queued: list[_Ticket] = []
        self._writing = False  # a thread is writing a group (it hands the lead on when done)

    # -- the fence

    def owns(self, delivery_id: int) -> bool:
        """True while `delivery_id` is still this claim's; renews and verifies the
        claim when lease/3 has passed since it was last verified."""
        with self._lock:
            self.renew_if_due()
            return delivery_id in self.owned

    def renew_if_due(self) -> None:
        """Renew the lease of every row still owned (in flight or waiting for a
        sending slot) when lease/3 has passed since the last renewal."""
        with self._lock:
            now = self.clock()
            if self.owned and now - self.verified_at >= self.lease / RENEW_FRACTION:
                self._renew(now)

    @property
    def renew_every_seconds(self) -> float:
        return self.lease.total_seconds() / RENEW_FRACTION

    def done(self, delivery_id: int) -> None:
        with self._lock:
            self.owned.discard(delivery_id)

    def _renew(self, now: datetime) -> None:
        statement = (update(Delivery)
                     .where(Delivery.id.in_(sorted(self.owned)), Delivery.claim_token == self.token,
                            Delivery.state == SENDING)
                     .values(lease_expires_at=now + self.lease)
                     .returning(Delivery.id))
        kept = set(self._execute(lambda connection: connection.execute(statement).scalars().all()))
        lost = self.owned - kept
        if lost:
            log.warning("claim %s lost %d deliveries to another worker (lease ran out): %s",
                        self.token[:8], len(lost), sorted(lost)[:20])
        self.owned = kept
        self.verified_at = now

    # -- writes

    def record(self, item: Outgoing, result: SendResult, started_at: datetime, answered_at: datetime) -> bool:
        """Write one attempt's outcome if the row is still ours; True if it was."""
        values = _outcome_values(item, result, answered_at, self.runtime)
        attempt = dict(at=started_at, channel=item.channel, reason=result.reason, detail=result.detail,
                       outcome="sent" if result.ok else ("transient" if result.transient else "permanent"))
        applied = self._write(values, attempt)
        if not applied:
            log.warning("delivery %d: result %r after the lease was lost, not applied", item.delivery_id,
                        attempt["outcome"])
        return applied

    def finish(self, delivery_id: int, at: datetime, *, state: str, reason: str | None,
               next_attempt_at: datetime | None = None) -> bool:
        """End the row, or give it back to the relay for `next_attempt_at`, without a send."""
        return self.finish_all([delivery_id], at, state=state, reason=reason, next_attempt_at=next_attempt_at)[0]

    def finish_all(self, delivery_ids: list[int], at: datetime, *, state: str, reason: str | None,
                   next_attempt_at: datetime | None = None) -> list[bool]:
        """`finish` for several rows, written together; True for each that was still ours."""
        values = dict(state=state, reason=reason, updated_at=at, lease_expires_at=None, enqueued_at=None)
        if next_attempt_at is not None:
            values["next_attempt_at"] = next_attempt_at
        return self._write_all([({**values, "delivery_id": delivery_id}, None) for delivery_id in delivery_ids])

    def _write(self, values: dict, attempt: dict | None) -> bool:
        return self._write_all([(values, attempt)])[0]

    def _write_all(self, writes: list[Write]) -> list[bool]:
        """Queue the writes; if no group is being written, write the queue now, else wait
        until the writer has written them or hands this thread the lead. Raises what the
        write of their group raised (a database outage outlasting the lease's patience)."""
        if not writes:
            return []
        ticket = _Ticket(writes)
        with self._queue_lock:
            self._queued.append(ticket)
            ticket.lead = not self._writing
            self._writing = True
        if not ticket.lead:
            ticket.signal.wait()
        if ticket.lead:
            self._write_group()
        if ticket.error is not None:
            raise ticket.error
        return ticket.applied

    def _write_group(self) -> None:
        """Write every queued result in one go, tell their threads, and hand the lead to
        the first result queued meanwhile (its thread writes the next group at once)."""
        group: list[_Ticket] = []
        try:
            with self._lock:  # the connection is free: take all that is queued by now
                with self._queue_lock:
                    group, self._queued = self._queued, []
                writes = [write for ticket in group for write in ticket.writes]
                applied: set[int] = set()
                # One retried round trip per shape (rarely more than one), so a retry
                # after an outage never re-runs a statement that had already applied.
                for shape in _by_shape(writes).values():
                    done = self._execute(lambda connection, shape=shape: _write_fenced_group(connection, self.token, shape))
                    applied.update(values["delivery_id"] for (values, _), ok in zip(shape, done, strict=True) if ok)
                self.owned.difference_update(values["delivery_id"] for values, _ in writes)
            for ticket in group:
                ticket.applied = [values["delivery_id"] in applied for values, _ in ticket.writes]
        except BaseException as error:  # noqa: BLE001 - raised in each waiting thread instead
            for ticket in group:
                ticket.error = error
        finally:
            with self._queue_lock:
                following = self._queued[0] if self._queued else None
                if following is not None:
                    following.lead = True
                self._writing = following is not None
            for ticket in group:
                ticket.signal.set()
            if following is not None:
                following.signal.set()

    def _patience(self) -> float:
        """Seconds a write may keep retrying: while the lease still holds, less a margin."""
        left = self.verified_at + self.lease - self.clock() - self.lease / RECORD_SAFETY_FRACTION
        return max(left.total_seconds(), MIN_RECORD_PATIENCE_SECONDS)

    def _execute(self, work: Callable[[Connection], T]) -> T:
        give_up_at = time.monotonic() + self._patience()
        wait = 0.05
        while True:
            try:
                connection = self._open()
                if self.engine.dialect.name == "postgresql":
                    return work(connection)
                with connection.begin():
                    return work(connection)
            except (OperationalError, InterfaceError) as error:
                self.close(broken=True)
                if time.monotonic() + wait > give_up_at:
                    raise
                log.warning("database unavailable for claim %s (%s); retrying in %.2fs", self.token[:8],
                            type(error.orig).__name__ if error.orig is not None else type(error).__name__, wait)
                self.sleep(wait)
                wait = min(wait * 2, MAX_RECORD_WAIT_SECONDS)

    def _open(self) -> Connection:
        if self.connection is None:
            connection = self.engine.connect()
            try:
                if self.engine.dialect.name == "postgresql":
                    connection = connection.execution_options(isolation_level="AUTOCOMMIT")
                    connection.exec_driver_sql("SET synchronous_commit TO OFF")
                    # Its statements are few and fixed (fenced writes by id, the renewal by
                    # ids): their generic plans are the custom ones, without planning each
                    # run (a third of PostgreSQL's CPU per result write).
                    connection.exec_driver_sql("SET plan_cache_mode TO force_generic_plan")
            except BaseException:
                connection.invalidate()
                connection.close()
                raise
            self.connection = connection
        return self.connection

    def close(self, broken: bool = False) -> None:
        with self._lock:
            self._close(broken)

    def _close(self, broken: bool) -> None:
        if self.connection is None:
            return
        connection, self.connection = self.connection, None
        try:
            if broken:
                connection.invalidate()
            elif self.engine.dialect.name == "postgresql":
                connection.exec_driver_sql("RESET synchronous_commit")
                connection.exec_driver_sql("RESET plan_cache_mode")
        finally:
            connection.close()


# --------------------------------------------------------------------------- decide and render


_COUPONS = Coupon.__table__
_CUSTOMERS = Customer.__table__

_PREPARE_COLUMNS = (
    # the delivery: what the decision and the send need
    _DELIVERIES.c.id.label("delivery_id"), _DELIVERIES.c.channel, _DELIVERIES.c.reason,
    _DELIVERIES.c.failed_channels, _DELIVERIES.c.deadline_at, _DELIVERIES.c.attempts,
    _DELIVERIES.c.channel_attempts, last_transient_reason(_DELIVERIES).label("last_transient_reason"),
    # the coupon: its offer (the names `offer_of` reads), code, expiry and campaign
    _COUPONS.c.id.label("coupon_id"), _COUPONS.c.code, _COUPONS.c.expires_at, _COUPONS.c.campaign,
    _COUPONS.c.offer_type, _COUPONS.c.sku, _COUPONS.c.product_name, _COUPONS.c.currency, _COUPONS.c.price,
    _COUPONS.c.percent, _COUPONS.c.regular_price,
    # the customer: the names `customer_value` reads, and the opt-outs
    _CUSTOMERS.c.id, _CUSTOMERS.c.country, _CUSTOMERS.c.name, _CUSTOMERS.c.locale, _CUSTOMERS.c.timezone,
    _CUSTOMERS.c.email, _CUSTOMERS.c.phone, _CUSTOMERS.c.whatsapp, _CUSTOMERS.c.line_id,
    _CUSTOMERS.c.telegram_id, _CUSTOMERS.c.consent, _CUSTOMERS.c.opted_out,
)


def _prepare(session: Session, runtime: Runtime, batch: ClaimedBatch) -> None:
    """Decide and render each claimed delivery, each on its own: one that raises ends
    `failed` (`render_error`, with an attempt row saying why) and the rest go on.

    Rows are read as plain columns, not ORM objects: nothing here is written back
    through the session, and building 200 entities a batch was a sixth of the CPU."""
    now = batch.claimed_at
    rows = session.execute(
        select(*_PREPARE_COLUMNS)
        .select_from(_DELIVERIES.join(_COUPONS, _COUPONS.c.id == _DELIVERIES.c.coupon_id)
                     .join(_CUSTOMERS, _CUSTOMERS.c.id == _DELIVERIES.c.customer_id))
        .where(one_of(session, _DELIVERIES.c.id, batch.claimed))
    ).all()
    orders = Order.__table__.c
    live_orders: dict[int, int] = dict(session.execute(
        select(orders.coupon_id, func.count())
        .where(one_of(session, orders.coupon_id, [row.coupon_id for row in rows]), orders.refunded_at.is_(None))
        .group_by(orders.coupon_id)
    ).all())
    deliveries = _DELIVERIES.c
    last_sent = dict(session.execute(
        select(deliveries.customer_id, func.max(deliveries.sent_at))
        .where(one_of(session, deliveries.customer_id, {row.id for row in rows}), deliveries.state == SENT)
        .group_by(deliveries.customer_id)
    ).all())
    updates: list[dict] = []
    for row in rows:
        decision: SendDecision | None = None
        try:
            customer = customer_value(row)
            market = runtime.markets.for_country(customer.country)
            decision = decide_send(
                now=now, deadline_at=row.deadline_at, customer=customer, market=market,
                configured=runtime.configured_channels, opted_out=row.opted_out or (),
                failed_channels=row.failed_channels or [], last_reason=row.reason,
                current_channel=row.channel, channel_attempts=row.channel_attempts,
                max_attempts=runtime.settings.max_attempts_per_channel,
                last_transient_reason=row.last_transient_reason,
                # a campaign coupon has no order behind it: no refund can cancel it
                all_orders_refunded=row.campaign is None and live_orders.get(row.coupon_id, 0) == 0,
                last_sent_to_customer_at=last_sent.get(customer.id),
            )
            item = _render(row, customer, market, decision, runtime.settings) if decision.action == "send" else None
        except Exception as error:  # noqa: BLE001 - one bad row must not hold the batch
            # The error's text may quote the customer's data: masked (failure_reason), the traceback at DEBUG.
            why = failure_reason(error)
            log.error("delivery %d cannot be prepared: %s", row.delivery_id, why)
            log.debug("delivery %d cannot be prepared", row.delivery_id, exc_info=True)
            _write_fenced(session, dict(delivery_id=row.delivery_id, claim_token=batch.token, state=FAILED,
                                        reason="render_error", updated_at=now, lease_expires_at=None,
                                        enqueued_at=None),
                          dict(at=now, channel=(decision and decision.channel) or row.channel or "",
                               outcome="permanent", reason="render_error", detail=why))
            batch.ended += 1
            continue
        if decision.action == "end":
            updates.append(_decision_row(row.delivery_id, now, state=decision.state or FAILED, reason=decision.reason))
            batch.ended += 1
        elif decision.action == "reschedule":
            updates.append(_decision_row(row.delivery_id, now, state=SCHEDULED, reason=row.reason,
                                         next_attempt_at=decision.due_at))
            batch.rescheduled += 1
        else:
            assert item is not None
            last_sent[customer.id] = now  # a second delivery to them in this batch hits the cap
            batch.outgoing.append(item)
    by_keys: dict[tuple, list[dict]] = defaultdict(list)
    for update_row in updates:
        by_keys[tuple(sorted(update_row))].append({**update_row, "claim_token": batch.token})
    for columns, group in by_keys.items():
        statement = _fenced_update(tuple(c for c in columns if c != "delivery_id"))
        session.execute(statement, [{"delivery_id": r["delivery_id"], "owner_token": r["claim_token"],
                                     **{f"new_{c}": r[c] for c in r if c not in ("delivery_id", "claim_token")}}
                                    for r in group])


def _render(row: Row, customer: CustomerValue, market: Market, decision: SendDecision,
            settings: Settings) -> Outgoing:
    """The message for the decided channel, and what sending and recording it need
    (`row`: one of `_prepare`'s rows)."""
    channel = decision.channel
    assert channel is not None
    timezone = customer.timezone or market.timezone_for(customer.country)
    # The country's own region ("ar-SA", "es-MX") so formats fit even without a customer locale.
    language, locale = resolve_language(customer.locale, f"{market.language_for(customer.country)}-{customer.country}")
    message = render_message(MessageContext(
        language=language, locale=locale, customer_name=customer.name, offer=offer_of(row),
        code=row.code, expires_at=row.expires_at, timezone=timezone, framing=market.framing,
        unsubscribe_url=unsubscribe_url(settings.public_url, settings.webhook_secret, customer.id, channel),
    ), channel)
    return Outgoing(
        delivery_id=row.delivery_id, customer_id=customer.id, channel=channel, address=customer.address(channel) or "",
        message=message, deadline_at=row.deadline_at,
        channel_attempts=decision.channel_attempts,
        failed_channels=list(row.failed_channels or []), attempts=row.attempts,
        timezone=timezone, market_name=market.name, channels=decision.channels, last_reason=row.reason,
        last_transient_reason=row.last_transient_reason,
    )


def _decision_row(delivery_id: int, now: datetime, *, state: str, reason: str | None = None,
                  next_attempt_at: datetime | None = None) -> dict:
    return dict(delivery_id=delivery_id, state=state, reason=reason, updated_at=now, lease_expires_at=None,
                enqueued_at=None, **({"next_attempt_at": next_attempt_at} if next_attempt_at else {}))


def _outcome_values(item: Outgoing, result: SendResult, now: datetime, runtime: Runtime) -> dict:
    """The delivery's new columns after one attempt. `due_at` is left alone: it is the
    planned due time that latency is measured from; a retry sets `next_attempt_at`."""
    settings = runtime.settings
    outcome = after_attempt(
        now=now, deadline_at=item.deadline_at, channel=item.channel, ok=result.ok, transient=result.transient,
        reason=result.reason, retry_after=result.retry_after, channel_attempts=item.channel_attempts + 1,
        max_attempts=settings.max_attempts_per_channel, channels=item.channels, failed_channels=item.failed_channels,
        retry_base_seconds=settings.retry_base_seconds, timezone=item.timezone,
        market=runtime.markets.by_name[item.market_name],
    )
    return dict(
        delivery_id=item.delivery_id, state=outcome.state, reason=outcome.reason, updated_at=now,
        lease_expires_at=None, enqueued_at=None, next_attempt_at=outcome.due_at or now, channel=item.channel,
        attempts=item.attempts + 1, channel_attempts=outcome.channel_attempts,
        failed_channels=outcome.failed_channels, sent_at=now if result.ok else None,
    )


# --------------------------------------------------------------------------- rate limits


MAX_RATE_WAIT_SECONDS = 1.0
"""Longest a worker waits in place for a rate-limit token before rescheduling."""


def _wait_for_token(limiter: Limiter | None) -> float | None:
    """None once a token is taken; the wait in seconds if it is too long to hold the worker."""
    if limiter is None:
        return None
    while (wait := limiter.acquire()) > 0:
        if wait > MAX_RATE_WAIT_SECONDS:
            return wait
        time.sleep(wait)
    return None


# --------------------------------------------------------------------------- one delivery


SENT_NOW, RETRY_LATER, ENDED, RESCHEDULED, LOST = "sent", "retry", "ended", "rescheduled", "lost"


def _window(runtime: Runtime, item: Outgoing, now: datetime) -> SendDecision:
    return send_window(now=now, deadline_at=item.deadline_at, timezone=item.timezone,
                       market=runtime.markets.by_name[item.market_name],
                       last_transient_reason=item.last_transient_reason)


def _send_one(runtime: Runtime, claim: _Claim, sender: ChannelSender, item: Outgoing, clock: Clock) -> str:
    """Fence, window, send, record: one delivery, one attempt. Called from several
    threads at once for different items (each with its own sender; `_Claim` is
    thread-safe)."""
    if not claim.owns(item.delivery_id):
        return LOST
    now = clock()
    window = _window(runtime, item, now)
    if window.action == "end":
        claim.finish(item.delivery_id, now, state=window.state or FAILED, reason=window.reason)
        return ENDED
    if window.action == "reschedule":
        claim.finish(item.delivery_id, now, state=SCHEDULED, reason=item.last_reason, next_attempt_at=window.due_at)
        return RESCHEDULED

    def may_attempt_again() -> bool:
        return claim.owns(item.delivery_id) and _window(runtime, item, clock()).action == "send"

    result = sender.send(item.address, item.message, may_attempt=may_attempt_again)
    if not claim.record(item, result, started_at=now, answered_at=clock()):
        return LOST
    return SENT_NOW if result.ok else RETRY_LATER


# --------------------------------------------------------------------------- the batch


def claim_batch(runtime: Runtime, ids: list[int], clock: Clock) -> ClaimedBatch:
    """Claim the due rows among `ids` under a new token; decide and render each."""
    now = clock()
    batch = ClaimedBatch(token=new_claim_token(), claimed_at=now, claimed=[])
    with session_scope(runtime.database_url) as session:
        batch.claimed = claim(session, ids, now, timedelta(seconds=runtime.settings.lease_seconds), batch.token)
    if batch.claimed:
        with session_scope(runtime.database_url) as session:
            _prepare(session, runtime, batch)
    return batch


class _ChannelQueue:
    """One channel's items for the batch, taken one at a time by its sending threads.
    When the shared rate limit is spent for longer than a worker should wait, the
    queue stops: what no thread has taken yet goes back to the relay."""

    def __init__(self, channel: str, items: list[Outgoing]) -> None:
        self.channel = channel
        self._items = list(reversed(items))
        self._lock = threading.Lock()
        self.hand_back_after: float | None = None  # seconds until tokens are there again

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    def take(self) -> Outgoing | None:
        with self._lock:
            if self.hand_back_after is not None or not self._items:
                return None
            return self._items.pop()

    def stop(self, item: Outgoing, wait: float) -> None:
        with self._lock:
            self._items.append(item)
            self.hand_back_after = max(wait, self.hand_back_after or 0.0)

    def rest(self) -> list[Outgoing]:
        with self._lock:
            rest, self._items = list(reversed(self._items)), []
            return rest


class _LeaseKeeper:
    """Renews the claim every lease/3 while the batch is being sent, so rows still
    waiting for a sending slot keep their lease even when every slot is busy with a
    slow provider. A sender checks the claim itself before each send as well (a
    stalled process's keeper stalled too)."""

    def __init__(self, claim: _Claim) -> None:
        self._claim = claim
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"lease-{claim.token[:8]}", daemon=True)

    def __enter__(self) -> _LeaseKeeper:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self._claim.renew_every_seconds):
            try:
                self._claim.renew_if_due()
            except Exception:  # noqa: BLE001 - the senders' own check still fences
                log.warning("claim %s: renewing the lease failed", self._claim.token[:8], exc_info=True)


def _drain(runtime: Runtime, claim: _Claim, queue: _ChannelQueue, clock: Clock,
           counts: dict[str, int], counts_lock: threading.Lock) -> None:
    """One sending slot: borrow a sender, send the queue's items until it is empty."""
    limiter = runtime.rate_limiter(queue.channel)
    pool = runtime.sender_pool(queue.channel)
    with pool.lend() as sender:
        while (item := queue.take()) is not None:
            wait = _wait_for_token(limiter)
            if wait is not None:
                queue.stop(item, wait)
                return
            outcome = _send_one(runtime, claim, sender, item, clock)
            with counts_lock:
                counts[outcome] += 1


def send_claimed(runtime: Runtime, batch: ClaimedBatch, clock: Clock) -> BatchReport:
    """Send what `claim_batch` took, up to the channel's concurrency at once, each
    result recorded as its answer arrives."""
    by_channel: dict[str, list[Outgoing]] = defaultdict(list)
    for item in batch.outgoing:
        by_channel[item.channel].append(item)
    queues = [_ChannelQueue(channel, items) for channel, items in by_channel.items()]
    counts: dict[str, int] = defaultdict(int)
    counts_lock = threading.Lock()
    claim = _Claim(runtime, batch, clock)
    errors: list[BaseException] = []

    def slot(queue: _ChannelQueue) -> None:
        try:
            _drain(runtime, claim, queue, clock, counts, counts_lock)
        except BaseException as error:  # noqa: BLE001 - re-raised in the task's thread below
            errors.append(error)

    try:
        with _LeaseKeeper(claim):
            threads = [threading.Thread(target=slot, args=(queue,), name=f"send-{queue.channel}-{n}", daemon=True)
                       for queue in queues
                       for n in range(min(runtime.settings.concurrency_for(queue.channel), len(queue)))]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
        if errors:
            raise errors[0]
        for queue in queues:
            if queue.hand_back_after is None:
                continue
            # The provider's rate is spent for longer than a worker should hold:
            # hand the rest back to the relay for when tokens are there again.
            at = clock() + timedelta(seconds=queue.hand_back_after)
            counts[RESCHEDULED] += sum(claim.finish_all([rest.delivery_id for rest in queue.rest()], clock(),
                                                        state=SCHEDULED, reason="rate_limited", next_attempt_at=at))
    finally:
        claim.close()
    return BatchReport(claimed=len(batch.claimed), sent=counts[SENT_NOW], retried=counts[RETRY_LATER],
                       ended=batch.ended + counts[ENDED], rescheduled=batch.rescheduled + counts[RESCHEDULED],
                       lost=counts[LOST])


def send_deliveries(runtime: Runtime, ids: list[int], clock: Clock) -> BatchReport:
    """Claim, send and record one batch; safe to run twice with the same ids."""
    batch = claim_batch(runtime, ids, clock)
    if not batch.claimed:
        return BatchReport()
    return send_claimed(runtime, batch, clock)
