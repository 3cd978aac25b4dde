"""Rule 8 for rows nobody picked up: a scheduled delivery past its deadline ends `expired`.

The sender already expires what it claims late; this sweep keeps `encore status`
true when workers are down or far behind. One UPDATE guarded by the state, so two
sweeps at once (two beats) expire each row once, and a row a sender has claimed
(`sending`) is left to that sender.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import update
from sqlalchemy.orm import Session

from store.models import EXPIRED, SCHEDULED, Delivery


def expire_overdue(session: Session, now: datetime) -> int:
    return session.execute(
        update(Delivery).where(Delivery.state == SCHEDULED, Delivery.deadline_at <= now)
        .values(state=EXPIRED, reason="deadline", enqueued_at=None, updated_at=now)
    ).rowcount
