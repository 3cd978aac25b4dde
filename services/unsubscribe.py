"""Following an unsubscribe link (SPEC rule 6, section 6): the token names the customer
and the channel; confirming it opts the customer out of that channel now."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy.orm import Session

from coupons.events import validate_event
from coupons.messages import resolve_language
from coupons.shops import ENCORE_SIGNATURE, raw_id, shop_of_key
from coupons.unsubscribe import BadToken, read_token
from store.db import session_scope
from store.models import Customer

from .intake import apply_events, store_events
from .bootstrap import Runtime


@dataclass(frozen=True)
class UnsubscribeLink:
    channel: str
    language: str | None
    """The customer's language, when Encore knows their locale or country."""
    brand: str = ENCORE_SIGNATURE
    """The name of the customer's shop, which the page is signed with (SPEC section 7)."""


def read_unsubscribe_link(runtime: Runtime, token: str) -> UnsubscribeLink | None:
    """What the link would do; None for a token this Encore did not mint (altered, forged)."""
    return _follow(runtime, token, None)


def unsubscribe_by_link(runtime: Runtime, token: str, now: datetime) -> UnsubscribeLink | None:
    """Opt the link's customer out of its channel at `now`; None (and nothing changed)
    for a token this Encore did not mint."""
    return _follow(runtime, token, now)


def _follow(runtime: Runtime, token: str, opt_out_at: datetime | None) -> UnsubscribeLink | None:
    secret = runtime.settings.webhook_secret
    if not secret:
        return None
    try:
        target = read_token(secret, token)
    except BadToken:
        return None
    shop = shop_of_key(target.customer_id)  # the token names the stored key, scoped to its shop
    with session_scope(runtime.database_url) as session:
        language = customer_language(runtime, session.get(Customer, target.customer_id))
        if opt_out_at is not None:
            _opt_out(session, runtime, shop, raw_id(shop, target.customer_id), target.channel, opt_out_at)
    return UnsubscribeLink(target.channel, language, runtime.settings.shops.signature(shop))


def customer_language(runtime: Runtime, customer: Customer | None) -> str | None:
    """The language a page for `customer` is written in: their locale, else their
    market's language; None when Encore knows neither their locale nor their country."""
    if customer is None or not (customer.locale or customer.country):
        return None
    market = runtime.markets.for_country(customer.country or "")
    region = f"{market.language_for(customer.country)}-{customer.country}" if customer.country else "en"
    return resolve_language(customer.locale, region)[0]


def _opt_out(session: Session, runtime: Runtime, shop: str, customer_id: str, channel: str, now: datetime) -> None:
    """Acts as a `customer.opted_out` event of the customer's shop, stored and applied now:
    the sender checks consent again before each send, so deliveries already scheduled stop too."""
    event = validate_event({"id": f"unsubscribe:{uuid.uuid4().hex}", "type": "customer.opted_out", "shop": shop,
                            "occurred_at": now.astimezone(UTC).isoformat(),
                            "data": {"customer_id": customer_id, "channels": [channel]}}, now)
    apply_events(session, runtime, store_events(session, [event], now), now)
