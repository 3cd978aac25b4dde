"""Rule 8 for rows nobody picked up: a scheduled delivery past its deadline ends `expired`.

The sender already expires what it claims late; this sweep keeps `encore status`
true when workers are down or far behind. One UPDATE guarded by the state, so two
sweeps at once (two beats) expire each row once, and a row a sender has claimed
(`sending`) is left to that sender.

Rule 12: a delivery that was still retrying a transient failure expires with that
failure's reason (`smtp_4xx`, `http_503`, ...), so the operator sees what kept it from
going out; one never refused expires with `deadline`.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ColumnElement, FromClause, case, func, literal, select, update
from sqlalchemy.orm import Session

from coupons.states import DeliveryState, Reason
from store.db import rows_changed
from store.models import Attempt, Coupon, Delivery


def last_transient_reason(deliveries: FromClause) -> ColumnElement[str | None]:
    """The reason of the delivery's latest transient attempt, or NULL (a correlated
    subquery, read only for rows with attempts: new ones cost nothing)."""
    latest = (select(Attempt.reason)
              .where(Attempt.delivery_id == deliveries.c.id, Attempt.outcome == "transient")
              .order_by(Attempt.id.desc()).limit(1).scalar_subquery())
    return case((deliveries.c.attempts > 0, latest), else_=None)


SHOP_UNAVAILABLE = "shop_unavailable"
"""Rule 15: the deadline came while the code's shop kept failing (services.code_sync)."""


def shop_kept_failing(deliveries: FromClause) -> ColumnElement[str | None]:
    """`shop_unavailable` when the delivery still waits for its code and the last sync
    attempt failed (transiently), else NULL."""
    return (select(literal(SHOP_UNAVAILABLE)).where(
        Coupon.id == deliveries.c.coupon_id, Coupon.code_synced_at.is_(None), Coupon.sync_reason.is_not(None))
        .scalar_subquery())


def expire_overdue(session: Session, now: datetime) -> int:
    result = session.execute(
        update(Delivery).where(Delivery.state == DeliveryState.SCHEDULED, Delivery.deadline_at <= now)
        .values(state=DeliveryState.EXPIRED,
                reason=func.coalesce(last_transient_reason(Delivery.__table__), shop_kept_failing(Delivery.__table__),
                                     Reason.DEADLINE),
                enqueued_at=None, updated_at=now)
    )
    return rows_changed(result)
