"""Email bounces and complaints (SPEC rule 18), as `POST /webhooks/email/feedback`
brings them (`coupons.feedback`).

A complaint or a permanent bounce suppresses the address on email from then on: a row
in `email_suppressions`, read by the planner and by the sender before every batch
(reason `email_suppressed`: the delivery moves to its next channel, or ends suppressed).
The address is suppressed for the whole install, whichever customer or shop holds it,
in any case of its letters (kept lowercased: mailbox providers treat addresses so).

A transient bounce says a message Encore recorded as sent did not arrive after all: it
counts against that delivery like a transient failure (rule 12). The delivery it
answers is the latest email delivery to the address sent at or before the bounce and
still inside its deadline; it goes back to `scheduled` with the backoff of its next
attempt (or its next channel), and an attempt row says `email_bounce`. A bounce for a
delivery past its deadline, or for no delivery Encore knows, changes nothing.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select, update

from coupons.delivery_rules import after_attempt, usable_channels
from coupons.feedback import EmailFeedback, FeedbackError, parse_feedback
from coupons.states import DeliveryState
from coupons.timing import customer_zone
from store.bulk import dialect_insert
from store.db import session_scope
from store.models import Attempt, Customer, Delivery, EmailSuppression
from store.rows import customer_value

from .bootstrap import Runtime
from .ports import RELAY

log = logging.getLogger(__name__)

CLOCK_SKEW = timedelta(minutes=2)
"""A bounce is matched to a send up to this long after its `occurred_at`: the provider's
clock and Encore's (which stamps `sent_at` after the provider's answer) may differ."""
TRANSIENT_BOUNCE = "email_bounce"
"""The reason of the attempt row a transient bounce adds to the delivery it answers."""


def parse_notices(payload: Any) -> list[EmailFeedback]:
    """One notice or a JSON array of them; FeedbackError names the field (with the
    notice's index in an array) and nothing is stored."""
    if not isinstance(payload, list):
        return [parse_feedback(payload)]
    notices = []
    for index, item in enumerate(payload):
        try:
            notices.append(parse_feedback(item))
        except FeedbackError as error:
            raise FeedbackError(f"[{index}]" + (f".{error.field}" if error.field else ""), error.reason) from None
    return notices


def record_feedback(runtime: Runtime, payload: Any, now: datetime) -> dict[str, int]:
    """Store what the notices say, all in one transaction; returns how many suppressed an
    address and how many transient bounces counted against a delivery."""
    notices = parse_notices(payload)
    suppressed = transient = 0
    with session_scope(runtime.database_url) as session:
        for notice in notices:
            if notice.suppresses:
                suppressed += _suppress(session, notice, now)
            elif _count_transient_bounce(session, runtime, notice, now):
                transient += 1
        if transient:
            runtime.doorbell.ring_after_commit(session, RELAY)
    return {"suppressed": suppressed, "transient": transient}


def _suppress(session, notice: EmailFeedback, now: datetime) -> int:
    """1 when the address is newly suppressed; a later notice keeps the first's time and kind."""
    inserted = session.execute(
        dialect_insert(session)(EmailSuppression).values(
            email=notice.email.lower(), reason=notice.type, occurred_at=notice.occurred_at, received_at=now,
        ).on_conflict_do_nothing(index_elements=["email"]).returning(EmailSuppression.email)
    ).scalar()
    if inserted is not None:
        log.info("email address suppressed after a %s", notice.type)
    return 0 if inserted is None else 1


def _count_transient_bounce(session, runtime: Runtime, notice: EmailFeedback, now: datetime) -> bool:
    found = session.execute(
        select(Delivery, Customer).join(Customer, Customer.id == Delivery.customer_id)
        .where(func.lower(Customer.email) == notice.email.lower(), Delivery.channel == "email", Delivery.state == DeliveryState.SENT,
               Delivery.sent_at <= notice.occurred_at + CLOCK_SKEW, Delivery.deadline_at > now)
        .order_by(Delivery.sent_at.desc()).limit(1).with_for_update(of=Delivery)
    ).first()
    if found is None:
        return False
    delivery, row = found
    customer = customer_value(row)
    market = runtime.markets.for_country(customer.country)
    settings = runtime.settings
    channels = usable_channels(customer, market, runtime.configured_channels, row.opted_out or (),
                               delivery.failed_channels or [])
    outcome = after_attempt(
        now=now, deadline_at=delivery.deadline_at, channel="email", ok=False, transient=True, reason=TRANSIENT_BOUNCE,
        retry_after=None, channel_attempts=delivery.channel_attempts + 1,
        max_attempts=settings.max_attempts_per_channel, channels=channels or ["email"],
        failed_channels=delivery.failed_channels or [], retry_base_seconds=settings.retry_base_seconds,
        timezone=customer_zone(customer, market), market=market,
    )
    updated = session.execute(
        update(Delivery).where(Delivery.id == delivery.id, Delivery.state == DeliveryState.SENT)
        .values(state=outcome.state, reason=outcome.reason, sent_at=None, next_attempt_at=outcome.due_at or now,
                attempts=Delivery.attempts + 1, channel_attempts=outcome.channel_attempts,
                failed_channels=outcome.failed_channels, enqueued_at=None, lease_expires_at=None, updated_at=now)
    ).rowcount
    if not updated:
        return False
    session.add(Attempt(delivery_id=delivery.id, at=now, channel="email", outcome="transient", reason=TRANSIENT_BOUNCE,
                        detail=f"transient bounce reported for {notice.occurred_at.isoformat()}"))
    return True
