"""Decide and render a claimed batch, and what an attempt's outcome writes.

Right after the claim, each delivery is decided again with fresh consent, refunds,
quiet hours and the frequency cap (pure, `coupons.delivery_rules.decide_send`), and
what is to be sent is rendered into an `Outgoing`: everything the send loop and the
result write need, so nothing is read from the database between sends. One delivery
that cannot be decided or rendered ends `failed` (`render_error`) on its own. After
each attempt, `outcome_values` turns the provider's answer into the row's new columns
(`coupons.delivery_rules.after_attempt`).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field, replace
from functools import partial
from datetime import datetime
from decimal import Decimal
from typing import cast

from sqlalchemy import Row, func, select
from sqlalchemy.orm import Session

from channels.adapter import SendResult, email_sender_domain
from channels.smtp import delivery_message_id
from coupons.delivery_rules import SKIP_DETAIL, SendDecision, Skip, SmsRule, after_attempt, decide_send, sms_rule_for
from coupons.markets import Market
from coupons.messages import render_message, resolve_language
from coupons.model import Customer as CustomerValue
from coupons.model import Message, MessageContext, Offer, OfferType
from coupons.timing import customer_zone
from coupons.unsubscribe import unsubscribe_url
from coupons.whatsapp import passed_over, template_message
from store.bulk import one_of
from store.db import table_of
from store.models import FAILED, SCHEDULED, SENT, Attempt, Coupon, Customer, Delivery, EmailSuppression, Order
from store.rows import customer_value

from ..expiry import last_transient_reason
from ..failures import failure_reason
from ..bootstrap import Runtime
from .fenced import fenced_update, write_fenced

log = logging.getLogger(__name__)


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
    sms_rule: SmsRule | None = None  # the customer's SMS hours (rule 17): before each SMS attempt, and an SMS retry


@dataclass
class ClaimedBatch:
    """What one claim took: its token, when, and what to send."""

    token: str
    claimed_at: datetime
    claimed: list[int]
    outgoing: list[Outgoing] = field(default_factory=list)
    ended: int = 0
    rescheduled: int = 0


def offer_of(coupon: Coupon | Row) -> Offer:
    """The offer of a coupon (an ORM object or a row with its column names)."""
    return Offer(
        type=cast(OfferType, coupon.offer_type), sku=coupon.sku, product_name=coupon.product_name, currency=coupon.currency,
        price=None if coupon.price is None else Decimal(coupon.price),
        percent=None if coupon.percent is None else Decimal(coupon.percent),
        regular_price=None if coupon.regular_price is None else Decimal(coupon.regular_price),
    )


_DELIVERIES = table_of(Delivery)
_COUPONS = table_of(Coupon)
_CUSTOMERS = table_of(Customer)

_PREPARE_COLUMNS = (
    # the delivery: what the decision and the send need
    _DELIVERIES.c.id.label("delivery_id"), _DELIVERIES.c.channel, _DELIVERIES.c.reason,
    _DELIVERIES.c.failed_channels, _DELIVERIES.c.deadline_at, _DELIVERIES.c.attempts,
    _DELIVERIES.c.channel_attempts, last_transient_reason(_DELIVERIES).label("last_transient_reason"),
    # the coupon: its offer (the names `offer_of` reads), code, expiry and campaign
    _COUPONS.c.id.label("coupon_id"), _COUPONS.c.code, _COUPONS.c.expires_at, _COUPONS.c.campaign, _COUPONS.c.shop,
    _COUPONS.c.offer_type, _COUPONS.c.sku, _COUPONS.c.product_name, _COUPONS.c.currency, _COUPONS.c.price,
    _COUPONS.c.percent, _COUPONS.c.regular_price, _COUPONS.c.framing, _COUPONS.c.template,
    # the customer: the names `customer_value` reads, and the opt-outs
    _CUSTOMERS.c.id, _CUSTOMERS.c.country, _CUSTOMERS.c.name, _CUSTOMERS.c.locale, _CUSTOMERS.c.timezone,
    _CUSTOMERS.c.email, _CUSTOMERS.c.phone, _CUSTOMERS.c.whatsapp, _CUSTOMERS.c.line_id,
    _CUSTOMERS.c.telegram_id, _CUSTOMERS.c.region, _CUSTOMERS.c.consent, _CUSTOMERS.c.opted_out,
)


def prepare(session: Session, runtime: Runtime, batch: ClaimedBatch) -> None:
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
    suppressed_emails = suppressed_addresses(session, {row.email.lower() for row in rows if row.email})
    recorded = _RecordedSkips(session, batch.claimed)
    updates: list[dict] = []
    for row in rows:
        decision: SendDecision | None = None
        try:
            customer = customer_value(row)
            market = runtime.markets.for_country(customer.country)
            failed_channels = list(row.failed_channels or [])

            decide = partial(
                decide_send,
                now=now, deadline_at=row.deadline_at, customer=customer, market=market,
                configured=runtime.configured_channels, opted_out=row.opted_out or (),
                current_channel=row.channel, channel_attempts=row.channel_attempts,
                max_attempts=runtime.settings.max_attempts_per_channel,
                last_transient_reason=row.last_transient_reason,
                # a campaign coupon has no order behind it: no refund can cancel it
                all_orders_refunded=row.campaign is None and live_orders.get(row.coupon_id, 0) == 0,
                last_sent_to_customer_at=last_sent.get(customer.id),
                suppressed=("email",) if customer.email and customer.email.lower() in suppressed_emails else (),
            )
            decision = decide(failed_channels=failed_channels, last_reason=row.reason)
            _record_passed_over(session, batch, row.delivery_id, decision, recorded)
            while (decision.action == "send" and decision.channel is not None
                   and (skip := _passed_over(runtime, decision.channel, customer))):
                # Not even attempted (SPEC rule 16): recorded, and the next channel decided now.
                failed_channels.append(decision.channel)
                _record_skip(session, batch, row.delivery_id, decision.channel, skip, failed_channels)
                decision = decide(failed_channels=failed_channels, last_reason=skip[0])
                _record_passed_over(session, batch, row.delivery_id, decision, recorded)
            item = (_render(row, customer, market, decision, runtime, failed_channels)
                    if decision.action == "send" else None)
        except Exception as error:  # noqa: BLE001 - one bad row must not hold the batch
            # The error's text may quote the customer's data: masked (failure_reason), the traceback at DEBUG.
            why = failure_reason(error)
            log.error("delivery %d cannot be prepared: %s", row.delivery_id, why)
            log.debug("delivery %d cannot be prepared", row.delivery_id, exc_info=True)
            write_fenced(session, dict(delivery_id=row.delivery_id, claim_token=batch.token, state=FAILED,
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
        statement = fenced_update(tuple(c for c in columns if c != "delivery_id"))
        session.execute(statement, [{"delivery_id": r["delivery_id"], "owner_token": r["claim_token"],
                                     **{f"new_{c}": r[c] for c in r if c not in ("delivery_id", "claim_token")}}
                                    for r in group])


def _passed_over(runtime: Runtime, channel: str | None, customer: CustomerValue) -> tuple[str, str] | None:
    """(reason, detail) when `channel` is not to be attempted for this customer at all."""
    if channel != "whatsapp":
        return None
    return passed_over(customer.whatsapp, needs_template=runtime.whatsapp_cloud_api,
                       has_templates=runtime.settings.whatsapp_templates is not None)


def _record_skip(session: Session, batch: ClaimedBatch, delivery_id: int, channel: str, skip: tuple[str, str],
                 failed_channels: list[str] | None = None) -> None:
    """The skipped channel in the delivery's attempt rows (outcome `skipped`, not counted
    as an attempt); with `failed_channels`, also among its failed channels, so a later
    claim does not skip it again."""
    reason, detail = skip
    delivery = dict(delivery_id=delivery_id, claim_token=batch.token, updated_at=batch.claimed_at)
    if failed_channels is not None:
        delivery["failed_channels"] = list(failed_channels)
    write_fenced(session, delivery,
                 dict(at=batch.claimed_at, channel=channel, outcome="skipped", reason=reason, detail=detail))


class _RecordedSkips:
    """The (delivery, channel) pass-overs already in the batch's attempt rows: read once,
    and only when a decision passes a channel over (rules 17, 18), which is rare."""

    def __init__(self, session: Session, claimed: list[int]) -> None:
        self._session, self._claimed = session, claimed
        self._recorded: set[tuple[int, str]] | None = None

    def new(self, delivery_id: int, skipped: tuple[Skip, ...]) -> list[Skip]:
        """Those of `skipped` not recorded yet for `delivery_id`, now counted as recorded."""
        if self._recorded is None:
            attempts = table_of(Attempt).c
            self._recorded = {(delivery_id, channel) for delivery_id, channel in self._session.execute(
                select(attempts.delivery_id, attempts.channel)
                .where(one_of(self._session, attempts.delivery_id, self._claimed), attempts.outcome == "skipped"))}
        fresh = [skip for skip in skipped if (delivery_id, skip[0]) not in self._recorded]
        self._recorded.update((delivery_id, channel) for channel, _ in fresh)
        return fresh


def _record_passed_over(session: Session, batch: ClaimedBatch, delivery_id: int, decision: SendDecision,
                        recorded: _RecordedSkips) -> None:
    """Each channel a send decision passed over (a suppressed email, SMS hours that open
    after the deadline) gets one attempt row, outcome `skipped`, as WhatsApp's pass-overs
    do: the planner wrote those it already saw, and a later claim sees the same ones again.
    Unlike WhatsApp's, the channel stays out of the failed ones: it is passed over by a
    rule checked afresh at each claim, and ending states keep their reasons (a delivery
    ended for a suppressed address lists it as well)."""
    if not decision.skipped:
        return
    for channel, reason in recorded.new(delivery_id, decision.skipped):
        _record_skip(session, batch, delivery_id, channel, (reason, SKIP_DETAIL[reason]))


def _render(row: Row, customer: CustomerValue, market: Market, decision: SendDecision,
            runtime: Runtime, failed_channels: list[str]) -> Outgoing:
    """The message for the decided channel, and what sending and recording it need
    (`row`: one of `prepare`'s rows). WhatsApp through the Cloud API carries the approved
    template for the customer's language (SPEC rule 16); an email carries the one
    Message-ID all its attempts share (rule 19)."""
    settings = runtime.settings
    channel = decision.channel
    assert channel is not None
    timezone = customer_zone(customer, market)
    # The country's own region ("ar-SA", "es-MX") so formats fit even without a customer locale.
    language, locale = resolve_language(customer.locale, f"{market.language_for(customer.country)}-{customer.country}")
    context = MessageContext(
        language=language, locale=locale, customer_name=customer.name, offer=offer_of(row),
        code=row.code, expires_at=row.expires_at, timezone=timezone,
        framing=row.framing or market.framing,  # a variant's framing, if any (SPEC section 9)
        shop_name=settings.shops.signature(row.shop),  # the coupon's shop signs it (SPEC section 7)
        unsubscribe_url=unsubscribe_url(settings.public_url, settings.webhook_secret, customer.id, channel),
    )
    message = render_message(context, channel)
    if channel == "whatsapp" and runtime.whatsapp_cloud_api and settings.whatsapp_templates is not None:
        template = settings.whatsapp_templates.for_language(language)
        if row.template:  # an experiment's variant names its own approved template (SPEC section 9)
            template = replace(template, name=row.template)
        message = replace(message, whatsapp_template=template_message(template, context))
    elif channel == "email":
        domain = email_sender_domain(settings.channel_templates["email"])
        if domain:
            message = replace(message, headers=(
                *message.headers, ("Message-ID", delivery_message_id(row.delivery_id, row.code, domain))))
    return Outgoing(
        delivery_id=row.delivery_id, customer_id=customer.id, channel=channel, address=customer.address(channel) or "",
        message=message, deadline_at=row.deadline_at,
        channel_attempts=decision.channel_attempts,
        failed_channels=list(failed_channels), attempts=row.attempts,
        timezone=timezone, market_name=market.name, channels=decision.channels, last_reason=row.reason,
        last_transient_reason=row.last_transient_reason,
        sms_rule=sms_rule_for(customer, market),
    )


def suppressed_addresses(session: Session, emails: set[str]) -> set[str]:
    """Which of `emails` (lowercased: suppression ignores case) are suppressed on email (rule 18)."""
    if not emails:
        return set()
    return set(session.scalars(select(EmailSuppression.email).where(one_of(session, EmailSuppression.email,
                                                                           sorted(emails)))))


def _decision_row(delivery_id: int, now: datetime, *, state: str, reason: str | None = None,
                  next_attempt_at: datetime | None = None) -> dict:
    return dict(delivery_id=delivery_id, state=state, reason=reason, updated_at=now, lease_expires_at=None,
                enqueued_at=None, **({"next_attempt_at": next_attempt_at} if next_attempt_at else {}))


def outcome_values(item: Outgoing, result: SendResult, now: datetime, runtime: Runtime) -> dict:
    """The delivery's new columns after one attempt. `due_at` is left alone: it is the
    planned due time that latency is measured from; a retry sets `next_attempt_at`."""
    settings = runtime.settings
    outcome = after_attempt(
        now=now, deadline_at=item.deadline_at, channel=item.channel, ok=result.ok, transient=result.transient,
        reason=result.reason, retry_after=result.retry_after, channel_attempts=item.channel_attempts + 1,
        max_attempts=settings.max_attempts_per_channel, channels=item.channels, failed_channels=item.failed_channels,
        retry_base_seconds=settings.retry_base_seconds, timezone=item.timezone,
        market=runtime.markets.by_name[item.market_name], windows=item.sms_rule,
    )
    return dict(
        delivery_id=item.delivery_id, state=outcome.state, reason=outcome.reason, updated_at=now,
        lease_expires_at=None, enqueued_at=None, next_attempt_at=outcome.due_at or now, channel=item.channel,
        attempts=item.attempts + 1, channel_attempts=outcome.channel_attempts,
        failed_channels=outcome.failed_channels, sent_at=now if result.ok else None,
    )
