"""What every shop platform adapter offers: make codes exist at the shop's checkout.

A platform turns a group of Encore codes that share an offer (a `DiscountShape`) into
working discount codes in the shop, and reports per code what happened: synced, a
transient failure to retry later, or a permanent one carrying the shop's own message.
Adapters never raise for a per-code or per-call failure of `create_codes` or
`disable_codes`; `check` raises `PlatformError`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Protocol

from coupons.errors import ShopError
from coupons.model import OfferType

KEY_PREFIX = "encore-"
"""Every shop-side discount Encore makes is named with this prefix and 16 hex digits."""


@dataclass(frozen=True)
class DiscountShape:
    """What a group of codes shares, so that they can share one discount in the shop."""

    offer_type: OfferType
    sku: str  # the SKU the discount applies to (for refill: the refill SKU)
    currency: str  # ISO 4217 of the offer
    price: Decimal | None  # refill: what the customer pays for one unit (major units)
    percent: Decimal | None  # percent_off: the percentage (e.g. Decimal("30")); second_half_price: 50
    starts_at: datetime  # aware UTC: when the codes start working (the coupon's creation)
    expires_at: datetime  # aware UTC: when the codes stop working (the coupon's expiry)

    def key(self) -> str:
        """Deterministic name of the shop-side discount for this shape, e.g.
        'encore-<16 hex of sha256 over the fields>'; a retried batch finds what a crashed
        one created by this key (Shopify: the discount's title; WooCommerce: a tag in the
        coupon's description/meta_data).

        Equal amounts written differently (14 and 14.00) and equal instants in other
        zones give the same key, so equal offers always share one discount.
        """
        fields = (
            self.offer_type,
            self.sku,
            self.currency.upper(),
            _plain(self.price),
            _plain(self.percent),
            _instant(self.starts_at),
            _instant(self.expires_at),
        )
        digest = hashlib.sha256("\x1f".join(fields).encode("utf-8")).hexdigest()
        return KEY_PREFIX + digest[:16]


def _plain(amount: Decimal | None) -> str:
    if amount is None:
        return ""
    return format(amount.normalize(), "f")


def _instant(moment: datetime) -> str:
    if moment.tzinfo is None:
        raise ValueError(f"a discount shape needs aware datetimes, got {moment!r}")
    return moment.astimezone(UTC).isoformat()


@dataclass(frozen=True)
class SyncOutcome:
    synced: frozenset[str]  # codes that now exist in the shop and work
    transient: Mapping[str, str]  # code -> reason: retry later (timeout, connection, 5xx, 429, THROTTLED)
    permanent: Mapping[str, str]  # code -> the shop's own message (unknown SKU, token refused, ...)


class PlatformError(ShopError):
    """A whole call failed. `transient` says whether trying again later can help;
    `message` names the shop's answer in one line."""

    def __init__(self, message: str, *, transient: bool) -> None:
        super().__init__(message)
        self.message = message
        self.transient = transient


class ShopPlatform(Protocol):
    def create_codes(self, shape: DiscountShape, codes: Sequence[str]) -> SyncOutcome:
        """Make every code exist in the shop as a working discount code of `shape`:
        usage limit 1, ending at shape.expires_at, only for shape.sku. Idempotent by the
        code itself: a code that already exists and belongs to our discount for this shape
        counts as synced; one that exists elsewhere is a permanent failure. Never raises
        for a per-code or per-call failure: reports it in the outcome."""
        ...

    def disable_codes(self, codes: Sequence[str]) -> SyncOutcome:
        """Remove or disable the codes (a void coupon, rule 11). A code that is not in the
        shop counts as done (synced)."""
        ...

    def check(self) -> str:
        """One read-only call with the shop's credentials; returns a one-line description
        (shop name/domain) or raises PlatformError naming what is wrong."""
        ...
