"""Dead letters you can act on: rejected events and failed deliveries, and replay.

Ids are prefixed so one command takes both: `L12` is dead letter 12 (an event
that was rejected), `D7` is delivery 7 (a delivery that ended `failed`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from coupons.events import EventError, parse_event
from store.models import FAILED, SCHEDULED, Attempt, DeadLetter, Delivery

from .intake import store_events
from .reports import rfc3339


def list_dead_letters(session: Session, include_replayed: bool = False) -> list[dict]:
    letters = select(DeadLetter).order_by(DeadLetter.id)
    if not include_replayed:
        letters = letters.where(DeadLetter.replayed_at.is_(None))
    rows = [
        {"id": f"L{letter.id}", "kind": "event", "source": letter.source, "reason": letter.reason,
         "at": rfc3339(letter.received_at), "raw": letter.raw[:2000],
         "replayed_at": rfc3339(letter.replayed_at)}
        for letter in session.scalars(letters)
    ]
    for delivery in session.scalars(select(Delivery).where(Delivery.state == FAILED).order_by(Delivery.id)):
        last = session.scalar(select(Attempt).where(Attempt.delivery_id == delivery.id).order_by(Attempt.id.desc()).limit(1))
        rows.append({"id": f"D{delivery.id}", "kind": "delivery", "source": delivery.customer_id,
                     "reason": delivery.reason, "at": rfc3339(delivery.updated_at),
                     "raw": last.detail if last else "", "deadline_at": rfc3339(delivery.deadline_at)})
    return rows


@dataclass(frozen=True)
class ReplayResult:
    id: str
    ok: bool
    message: str
    event_id: str | None = None
    delivery_id: int | None = None


def replay(session: Session, item_id: str, now: datetime, fixed_text: str | None = None) -> ReplayResult:
    """Re-submit a rejected event (its stored text, or `fixed_text`) or re-queue a failed delivery."""
    kind, _, number = item_id.upper().partition("L") if item_id.upper().startswith("L") else item_id.upper().partition("D")
    if not number.isdigit() or kind:
        return ReplayResult(item_id, False, "unknown id: use L<n> for an event, D<n> for a delivery")
    if item_id.upper().startswith("L"):
        return _replay_event(session, int(number), item_id, now, fixed_text)
    return _requeue_delivery(session, int(number), item_id, now)


def _replay_event(session: Session, number: int, item_id: str, now: datetime, fixed_text: str | None) -> ReplayResult:
    letter = session.get(DeadLetter, number)
    if letter is None:
        return ReplayResult(item_id, False, "no such dead letter")
    if letter.replayed_at is not None:
        return ReplayResult(item_id, False, f"already replayed at {rfc3339(letter.replayed_at)}")
    try:
        event = parse_event(fixed_text if fixed_text is not None else letter.raw)
    except EventError as exc:
        return ReplayResult(item_id, False, f"still rejected: {exc}")
    store_events(session, [event], now)
    letter.replayed_at = now
    return ReplayResult(item_id, True, f"accepted as event {event.id}", event_id=event.id)


def _requeue_delivery(session: Session, number: int, item_id: str, now: datetime) -> ReplayResult:
    delivery = session.get(Delivery, number)
    if delivery is None:
        return ReplayResult(item_id, False, "no such delivery")
    if delivery.state != FAILED:
        return ReplayResult(item_id, False, f"delivery is {delivery.state}, only failed ones are re-queued")
    if now >= delivery.deadline_at:
        return ReplayResult(item_id, False, f"deadline passed at {rfc3339(delivery.deadline_at)}")
    delivery.state = SCHEDULED
    delivery.due_at = now
    delivery.failed_channels = []
    delivery.channel_attempts = 0
    delivery.enqueued_at = None
    delivery.updated_at = now
    return ReplayResult(item_id, True, "re-queued", delivery_id=delivery.id)
