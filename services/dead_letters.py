"""Dead letters you can act on: rejected events and failed deliveries, and replay.

Ids are prefixed so one command takes both: `L12` is dead letter 12 (an event
that was rejected), `D7` is delivery 7 (a delivery that ended `failed`).

A dead letter's `source` says where it was written: `emit:<input>:<line>` (rejected
at the edge), `apply` (the event was stored but applying it failed) or `plan`
(planning one trigger for one customer failed). Replay does what fits each, or
refuses with a reason.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import desc, func, select, update
from sqlalchemy.orm import Session

from coupons.events import EventError, parse_event
from coupons.privacy import mask_personal_data
from coupons.shops import raw_id, shop_key
from coupons.states import DeliveryState
from store.models import Attempt, Coupon, DeadLetter, Delivery, InboxEvent

from .code_sync import SHOP_REJECTED
from .failures import failure_reason
from .intake import payload_of, store_events
from .planner import replan
from .reports import rfc3339
from .bootstrap import Runtime

LIST_LIMIT = 1000
"""Newest rows of each kind a listing shows: the listing stays one bounded query per
kind however many dead letters and failed deliveries the tables hold."""


def list_dead_letters(session: Session, include_replayed: bool = False, limit: int = LIST_LIMIT,
                      shop: str | None = None) -> list[dict]:
    """Up to `limit` newest dead letters and `limit` newest failed deliveries, oldest first
    within each kind; three queries in all. With `shop`, only that shop's."""
    letters = select(DeadLetter).order_by(desc(DeadLetter.id)).limit(limit)
    if not include_replayed:
        letters = letters.where(DeadLetter.replayed_at.is_(None))
    if shop is not None:
        letters = letters.where(DeadLetter.shop == shop)
    rows = [
        {"id": f"L{letter.id}", "kind": "event", "shop": letter.shop, "source": letter.source, "reason": letter.reason,
         "at": rfc3339(letter.received_at), "raw": letter.raw[:2000],
         "replayed_at": rfc3339(letter.replayed_at)}
        for letter in reversed(session.scalars(letters).all())
    ]
    # (state, due_at) is indexed: the newest failed deliveries without sorting them all.
    failed_query = select(Delivery).where(Delivery.state == DeliveryState.FAILED)
    if shop is not None:
        failed_query = failed_query.where(Delivery.shop == shop)
    failed = session.scalars(failed_query.order_by(desc(Delivery.due_at)).limit(limit)).all()
    last_attempt = select(func.max(Attempt.id)).where(Attempt.delivery_id.in_([d.id for d in failed])) \
        .group_by(Attempt.delivery_id)
    details = dict(session.execute(
        select(Attempt.delivery_id, Attempt.detail).where(Attempt.id.in_(last_attempt.scalar_subquery()))
    ).all()) if failed else {}
    for delivery in sorted(failed, key=lambda d: d.id):
        rows.append({"id": f"D{delivery.id}", "kind": "delivery", "shop": delivery.shop,
                     "source": raw_id(delivery.shop, delivery.customer_id),
                     "reason": delivery.reason, "at": rfc3339(delivery.updated_at),
                     # masked again: rows stored before provider text was masked on arrival
                     "raw": mask_personal_data(details.get(delivery.id) or ""),
                     "deadline_at": rfc3339(delivery.deadline_at)})
    return rows


@dataclass(frozen=True)
class ReplayResult:
    id: str
    ok: bool
    message: str
    event_id: str | None = None
    delivery_id: int | None = None
    code_sync: bool = False
    """The delivery waits for its code to be made in the shop: ring the sync, not only the relay."""


def replay(session: Session, item_id: str, now: datetime, fixed_text: str | bytes | None = None,
           runtime: Runtime | None = None) -> ReplayResult:
    """Re-submit a rejected event (its stored text, or `fixed_text`), apply again an event
    whose applying failed, plan again a trigger whose planning failed (needs `runtime`),
    or re-queue a failed delivery."""
    kind, _, number = item_id.upper().partition("L") if item_id.upper().startswith("L") else item_id.upper().partition("D")
    if not number.isdigit() or kind:
        return ReplayResult(item_id, False, "unknown id: use L<n> for an event, D<n> for a delivery")
    if item_id.upper().startswith("L"):
        return _replay_letter(session, int(number), item_id, now, fixed_text, runtime)
    return _requeue_delivery(session, int(number), item_id, now)


def _replay_letter(session: Session, number: int, item_id: str, now: datetime, fixed_text: str | bytes | None,
                   runtime: Runtime | None) -> ReplayResult:
    letter = session.get(DeadLetter, number)
    if letter is None:
        return ReplayResult(item_id, False, "no such dead letter")
    if letter.replayed_at is not None:
        return ReplayResult(item_id, False, f"already replayed at {rfc3339(letter.replayed_at)}")
    if letter.source == "plan":
        if fixed_text is not None:
            return ReplayResult(item_id, False, "a planning dead letter is replayed without --file")
        return _replan(session, letter, item_id, now, runtime)
    try:
        event = parse_event(fixed_text if fixed_text is not None else letter.raw, now,
                            shops=runtime.settings.shops if runtime is not None else None)
    except EventError as exc:
        return ReplayResult(item_id, False, f"still rejected: {exc}")
    stored = session.get(InboxEvent, shop_key(event.shop, event.id))
    if stored is None:
        store_events(session, [event], now)
        letter.replayed_at = now
        return ReplayResult(item_id, True, f"accepted as event {event.id}", event_id=shop_key(event.shop, event.id))
    if letter.source != "apply":
        return ReplayResult(item_id, False, f"event {event.id} is already stored (an event id is accepted once); "
                                            "nothing replayed")
    if stored.processed_at is None:
        letter.replayed_at = now
        return ReplayResult(item_id, True, f"event {event.id} is already waiting to be applied", event_id=stored.id)
    # Applying it failed and the inbox row was marked processed: put it back, with the fixed text if given.
    stored.type, stored.occurred_at, stored.payload = event.type, event.occurred_at, payload_of(event)
    stored.processed_at, stored.enqueued_at = None, now
    letter.replayed_at = now
    return ReplayResult(item_id, True, f"event {event.id} queued to be applied again", event_id=stored.id)


def _plan_target(raw: str) -> tuple[str, str] | None:
    """(trigger key, customer id) from a planning dead letter (JSON; or the older
    `<trigger key> customer=<id>` text)."""
    try:
        found = json.loads(raw)
        return str(found["trigger_key"]), str(found["customer_id"])
    except (ValueError, KeyError, TypeError):
        key, separator, customer_id = raw.partition(" customer=")
        return (key, customer_id) if separator and key and customer_id else None


def _replan(session: Session, letter: DeadLetter, item_id: str, now: datetime,
            runtime: Runtime | None) -> ReplayResult:
    target = _plan_target(letter.raw)
    if target is None:
        return ReplayResult(item_id, False, "cannot replay: the dead letter does not name a trigger and customer")
    if runtime is None:
        return ReplayResult(item_id, False, "cannot replay planning without the runtime (settings, markets)")
    trigger_key, customer_id = target
    try:
        replan(session, runtime, trigger_key, customer_id, now)
    except ValueError as exc:  # the trigger or its orders are not there: nothing to plan
        return ReplayResult(item_id, False, f"cannot replay: {exc}")
    except Exception as exc:
        return ReplayResult(item_id, False, f"still failing: {failure_reason(exc)}")
    delivery_id = session.scalar(select(Delivery.id).join(Coupon, Coupon.id == Delivery.coupon_id).where(
        Coupon.trigger_key == trigger_key, Coupon.customer_id == customer_id))
    letter.replayed_at = now
    if delivery_id is None:
        return ReplayResult(item_id, True, f"planned {trigger_key} for customer {customer_id} again: nothing "
                                           "scheduled yet (the stream has not triggered, or every order was refunded)")
    state = session.scalar(select(Delivery.state).where(Delivery.id == delivery_id))
    return ReplayResult(item_id, True, f"planned {trigger_key} for customer {customer_id}: delivery D{delivery_id} "
                                       f"{state}", delivery_id=delivery_id if state == DeliveryState.SCHEDULED else None)


def _requeue_delivery(session: Session, number: int, item_id: str, now: datetime) -> ReplayResult:
    delivery = session.get(Delivery, number)
    if delivery is None:
        return ReplayResult(item_id, False, "no such delivery")
    if delivery.state != DeliveryState.FAILED:
        return ReplayResult(item_id, False, f"delivery is {delivery.state}, only failed ones are re-queued")
    if now >= delivery.deadline_at:
        return ReplayResult(item_id, False, f"deadline passed at {rfc3339(delivery.deadline_at)}")
    delivery.state = DeliveryState.SCHEDULED
    delivery.next_attempt_at = now  # due_at stays the planned time: latency is measured from it
    delivery.failed_channels = []
    delivery.channel_attempts = 0
    delivery.enqueued_at = None
    delivery.updated_at = now
    if delivery.reason == SHOP_REJECTED:
        # The shop refused the code (the SKU added since, the token fixed): make it there
        # again first; the sync releases the delivery (services.code_sync).
        delivery.next_attempt_at = None
        session.execute(update(Coupon).where(Coupon.id == delivery.coupon_id, Coupon.code_synced_at.is_(None))
                        .values(sync_due_at=now, sync_reason=None, sync_claim_token=None))
        return ReplayResult(item_id, True, "re-queued: its code is made in the shop first", delivery_id=delivery.id,
                            code_sync=True)
    return ReplayResult(item_id, True, "re-queued", delivery_id=delivery.id)
