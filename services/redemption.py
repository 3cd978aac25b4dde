"""Rule 13: a code redeems once, atomically, on SQLite and PostgreSQL alike.

The single conditional UPDATE is the lock: of two concurrent redemptions only
one can match `redeemed_at IS NULL`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, select, update
from sqlalchemy.orm import Session

from coupons.codes import normalize_code
from coupons.shops import shop_key
from coupons.states import RedemptionStatus
from store.db import session_scope
from store.models import Coupon

# The names the web edge imports (the later pass moves it to the enum).
REDEEMED = RedemptionStatus.REDEEMED
ALREADY_REDEEMED = RedemptionStatus.ALREADY_REDEEMED
EXPIRED = RedemptionStatus.EXPIRED
VOID = RedemptionStatus.VOID
UNKNOWN = RedemptionStatus.UNKNOWN


@dataclass(frozen=True)
class Redemption:
    status: RedemptionStatus
    code: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == RedemptionStatus.REDEEMED


def _spellings(code: str) -> tuple[str, str]:
    """How a code may be stored: grouped with dashes (shops without a platform) or without
    them (a platform shop's, as the shop holds it: services.code_sync.shop_code)."""
    return code, code.replace("-", "")


def redeem(session: Session, code_text: str, order_id: str, now: datetime, *, shop: str | None = None,
           customer_id: str | None = None) -> Redemption:
    """Redeem a code for an order (`order_id`: its stored key). With `shop`, only a coupon
    of that shop redeems (another shop's code is unknown there); with `customer_id` (the
    order's customer, a stored key), only that customer's coupon (SPEC section 7)."""
    code = normalize_code(code_text)
    if code is None:
        return Redemption(RedemptionStatus.UNKNOWN)
    condition: list[ColumnElement[bool]] = [Coupon.code.in_(_spellings(code))]
    if shop is not None:
        condition.append(Coupon.shop == shop)
    if customer_id is not None:
        condition.append(Coupon.customer_id == customer_id)
    claimed = session.execute(
        update(Coupon)
        .where(*condition, Coupon.redeemed_at.is_(None), Coupon.void_at.is_(None), Coupon.expires_at > now)
        .values(redeemed_at=now, redeemed_order_id=order_id)
        .returning(Coupon.id)
    ).scalar()
    if claimed is not None:
        return Redemption(RedemptionStatus.REDEEMED, code)
    coupon = session.scalar(select(Coupon).where(Coupon.code.in_(_spellings(code))))
    if coupon is None or (shop is not None and coupon.shop != shop):
        return Redemption(RedemptionStatus.UNKNOWN)
    if customer_id is not None and coupon.customer_id != customer_id:
        return Redemption(RedemptionStatus.OTHER_CUSTOMER, code)
    if coupon.redeemed_at is not None:
        return Redemption(RedemptionStatus.ALREADY_REDEEMED, code)
    if coupon.void_at is not None:
        return Redemption(RedemptionStatus.VOID, code)
    return Redemption(RedemptionStatus.EXPIRED, code)


def redeem_alone(database_url: str, code_text: str, order_id: str, now: datetime) -> Redemption:
    """`redeem` in a transaction of its own: a redemption that arrives by itself (the
    shop's checkout calling `POST /coupons/{code}/redeem`), not inside an order's intake.
    The request is signed with the install's secret and codes are unique across shops:
    the code finds its shop, and `order_id` is taken as an order of that shop."""
    with session_scope(database_url) as session:
        code = normalize_code(code_text)
        shop = session.scalar(select(Coupon.shop).where(Coupon.code.in_(_spellings(code)))) if code else None
        if shop is None:
            return Redemption(RedemptionStatus.UNKNOWN)
        # The order is one of the coupon's shop: its key is scoped like every order id.
        return redeem(session, code_text, shop_key(shop, order_id), now, shop=shop)
