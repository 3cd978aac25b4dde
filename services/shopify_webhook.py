"""Shopify's `orders/paid` webhook, taken: stored as an `order.paid` event once, or kept
as one dead letter however often Shopify retries it.

The HTTP edge verifies the HMAC and the topic; this decides what the delivery becomes.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from typing import Literal

from coupons.events import decode_line, load_json, validate_event
from coupons.shopify_orders import Ignored, order_paid_event
from coupons.shops import DEFAULT_SHOP
from store.db import session_scope

from .failures import store_dead_letter_once
from .intake import store_events
from .bootstrap import Runtime
from .ports import APPLY_EVENTS

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WebhookOutcome:
    outcome: Literal["accepted", "ignored", "rejected"]
    detail: str
    """The event id when accepted, why the order makes no coupon when ignored, the error
    naming the field when rejected."""


def take_order_paid(runtime: Runtime, body: bytes, webhook_id: str | None,
                    shop: str = DEFAULT_SHOP) -> WebhookOutcome:
    """Shopify's bytes, mapped and validated as every event is, as an event of `shop` (the
    shop whose secret verified it). A rejected order is kept as
    a dead letter with those bytes, once per webhook: Shopify retries it unchanged, and each
    retry must not add another copy. An accepted one is stored, then enqueued."""
    received_at = runtime.clock()
    try:
        mapped = order_paid_event(load_json(decode_line(body)), webhook_id)
        if isinstance(mapped, Ignored):
            log.info("shopify webhook %s: %s", webhook_id, mapped.reason)  # ids only: no customer data in logs
            return WebhookOutcome("ignored", mapped.reason)
        event = validate_event({**mapped, "shop": shop}, received_at, shops=runtime.settings.shops)
    except ValueError as exc:  # EventError and ShopifyPayloadError are ones
        delivery = webhook_id or "body:" + hashlib.sha256(body).hexdigest()[:16]
        with session_scope(runtime.database_url) as session:
            store_dead_letter_once(session, f"shopify:{delivery}", body.decode("utf-8", "backslashreplace"),
                                   str(exc), received_at, shop)
        return WebhookOutcome("rejected", str(exc))
    with session_scope(runtime.database_url) as session:
        new_ids = store_events(session, [event], received_at)
    if new_ids:
        try:
            runtime.doorbell.ring(APPLY_EVENTS, new_ids)
        except Exception:  # stored already: the relay enqueues it after the lease
            log.warning("enqueueing Shopify event %s failed; the relay will retry", event.id, exc_info=True)
    return WebhookOutcome("accepted", event.id)
