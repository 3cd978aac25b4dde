"""What every shop platform offers Encore: create codes, disable codes, check credentials."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Protocol

from coupons.model import OfferType


@dataclass(frozen=True)
class DiscountShape:
    """What a group of codes shares, so that they can share one discount in the shop."""

    offer_type: OfferType
    sku: str
    currency: str
    price: Decimal | None
    percent: Decimal | None
    starts_at: datetime
    expires_at: datetime

    def key(self) -> str:
        """Deterministic name of the shop-side discount for this shape: a retried batch finds
        what a crashed one created by this key."""
        fields = (
            self.offer_type,
            self.sku,
            self.currency,
            _decimal_text(self.price),
            _decimal_text(self.percent),
            self.starts_at.astimezone(UTC).isoformat(),
            self.expires_at.astimezone(UTC).isoformat(),
        )
        digest = hashlib.sha256("\x1f".join(fields).encode()).hexdigest()
        return f"encore-{digest[:16]}"


def _decimal_text(value: Decimal | None) -> str:
    """One text per number, so that 14, 14.0 and 14.00 name the same discount."""
    return "" if value is None else format(value.normalize(), "f")


@dataclass(frozen=True)
class SyncOutcome:
    synced: frozenset[str]
    transient: Mapping[str, str]
    permanent: Mapping[str, str]


class PlatformError(Exception):
    """A whole call failed: `transient` says whether trying again later may help."""

    def __init__(self, message: str, *, transient: bool) -> None:
        super().__init__(message)
        self.message = message
        self.transient = transient


class ShopPlatform(Protocol):
    def create_codes(self, shape: DiscountShape, codes: Sequence[str]) -> SyncOutcome:
        """Make every code exist in the shop as a working discount code of `shape`: usage
        limit 1, ending at shape.expires_at, only for shape.sku. Idempotent by the code
        itself. Never raises for a per-code or per-call failure: reports it in the outcome."""
        ...

    def disable_codes(self, codes: Sequence[str]) -> SyncOutcome:
        """Remove or disable the codes (a void coupon). A code not in the shop counts as done."""
        ...

    def check(self) -> str:
        """One read-only call with the shop's credentials: a one-line description, or
        PlatformError naming what is wrong."""
        ...
