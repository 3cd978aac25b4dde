"""The claim on a batch of deliveries and its lease: what makes a worker's sends its own.

A claim moves due `scheduled` rows to `sending` with a lease and a fresh claim token
(a row another worker claimed is simply not returned). While the batch is sent, the
`Claim` knows which rows it still owns: before each send it renews the lease when
lease/3 has passed and reads back which rows are still under its token, dropping the
ones the relay handed to another worker; a `LeaseKeeper` thread renews it on the same
beat, so rows waiting for a sending slot keep their lease too. Results go through the
claim, fenced by its token (`fenced`, `group_commit`), and leave the owned set once written.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timedelta

from sqlalchemy import exists, update
from sqlalchemy.orm import Session

from channels.adapter import SendResult
from store.bulk import one_of
from store.db import engine_for, table_of
from store.models import SCHEDULED, SENDING, Coupon, Delivery

from ..bootstrap import Runtime
from ..ports import Clock
from .prepare import ClaimedBatch, Outgoing, outcome_values
from .group_commit import GroupWriter, write_patience

log = logging.getLogger(__name__)

_DELIVERIES = table_of(Delivery)
_COUPONS = table_of(Coupon)


def new_claim_token() -> str:
    return uuid.uuid4().hex


def claim(session: Session, ids: list[int], now: datetime, lease: timedelta, token: str,
          platform_shops: Sequence[str] = ()) -> list[int]:
    """Take the due rows among `ids` for this worker, under `token` (a Core UPDATE: the
    ORM's bulk-update bookkeeping cost more CPU than the statement). A delivery of one of
    `platform_shops` whose code is not in its shop yet is never taken (rule 15), however
    it became due."""
    where = [one_of(session, _DELIVERIES.c.id, ids), _DELIVERIES.c.state == SCHEDULED,
             _DELIVERIES.c.next_attempt_at <= now]
    if platform_shops:
        where.append(~exists().where(_COUPONS.c.id == _DELIVERIES.c.coupon_id, _COUPONS.c.code_synced_at.is_(None),
                                     _COUPONS.c.shop.in_(list(platform_shops))))
    return list(session.execute(
        _DELIVERIES.update()
        .where(*where)
        .values(state=SENDING, lease_expires_at=now + lease, updated_at=now, claim_token=token)
        .returning(_DELIVERIES.c.id)
    ).scalars())


RENEW_FRACTION = 3
"""The claim is renewed and verified every lease/3: a worker that stalled longer than
that checks it still owns a row before sending it (a DB round trip per lease/3 per
batch, not per message). The 2/3 lease left covers clock skew up to that much
between the worker and the relay that releases leases."""


class Claim:
    """One batch's claim: its token, the rows it still owns, and the one connection
    that writes their results (`writer`). Thread-safe: the batch's sending threads
    share it, and the writer's lock guards both the connection and the owned rows, so
    a renewal, a fence check and a group write never interleave."""

    def __init__(self, runtime: Runtime, batch: ClaimedBatch, clock: Clock,
                 sleep: Callable[[float], None] = time.sleep):
        self.runtime = runtime
        self.token = batch.token
        self.clock = clock
        self.owned = {item.delivery_id for item in batch.outgoing}
        self.lease = timedelta(seconds=runtime.settings.lease_seconds)
        self.verified_at = batch.claimed_at
        self.writer = GroupWriter(engine_for(runtime.database_url), self.token, sleep=sleep,
                                  patience=lambda: write_patience(self.verified_at, self.lease, self.clock()),
                                  on_written=self._written)
        self._lock = self.writer.lock

    # -- the fence

    def owns(self, delivery_id: int) -> bool:
        """True while `delivery_id` is still this claim's; renews and verifies the
        claim when lease/3 has passed since it was last verified."""
        with self._lock:
            self.renew_if_due()
            return delivery_id in self.owned

    def renew_if_due(self) -> None:
        """Renew the lease of every row still owned (in flight or waiting for a
        sending slot) when lease/3 has passed since the last renewal."""
        with self._lock:
            now = self.clock()
            if self.owned and now - self.verified_at >= self.lease / RENEW_FRACTION:
                self._renew(now)

    @property
    def renew_every_seconds(self) -> float:
        return self.lease.total_seconds() / RENEW_FRACTION

    def _renew(self, now: datetime) -> None:
        statement = (update(Delivery)
                     .where(Delivery.id.in_(sorted(self.owned)), Delivery.claim_token == self.token,
                            Delivery.state == SENDING)
                     .values(lease_expires_at=now + self.lease)
                     .returning(Delivery.id))
        kept = set(self.writer.execute(lambda connection: connection.execute(statement).scalars().all()))
        lost = self.owned - kept
        if lost:
            log.warning("claim %s lost %d deliveries to another worker (lease ran out): %s",
                        self.token[:8], len(lost), sorted(lost)[:20])
        self.owned = kept
        self.verified_at = now

    def _written(self, delivery_ids: Iterable[int]) -> None:
        """A written row is no longer in flight: it needs no renewal (called under the lock)."""
        self.owned.difference_update(delivery_ids)

    # -- writes

    def record(self, item: Outgoing, result: SendResult, started_at: datetime, answered_at: datetime) -> bool:
        """Write one attempt's outcome if the row is still ours; True if it was."""
        values = outcome_values(item, result, answered_at, self.runtime)
        attempt = dict(at=started_at, channel=item.channel, reason=result.reason, detail=result.detail,
                       outcome="sent" if result.ok else ("transient" if result.transient else "permanent"))
        applied = self.writer.write_all([(values, attempt)])[0]
        if not applied:
            log.warning("delivery %d: result %r after the lease was lost, not applied", item.delivery_id,
                        attempt["outcome"])
        return applied

    def finish(self, delivery_id: int, at: datetime, *, state: str, reason: str | None,
               next_attempt_at: datetime | None = None) -> bool:
        """End the row, or give it back to the relay for `next_attempt_at`, without a send."""
        return self.finish_all([delivery_id], at, state=state, reason=reason, next_attempt_at=next_attempt_at)[0]

    def finish_all(self, delivery_ids: list[int], at: datetime, *, state: str, reason: str | None,
                   next_attempt_at: datetime | None = None) -> list[bool]:
        """`finish` for several rows, written together; True for each that was still ours."""
        values = dict(state=state, reason=reason, updated_at=at, lease_expires_at=None, enqueued_at=None)
        if next_attempt_at is not None:
            values["next_attempt_at"] = next_attempt_at
        return self.writer.write_all([({**values, "delivery_id": delivery_id}, None) for delivery_id in delivery_ids])

    def close(self, broken: bool = False) -> None:
        self.writer.close(broken)


class LeaseKeeper:
    """Renews the claim every lease/3 while the batch is being sent, so rows still
    waiting for a sending slot keep their lease even when every slot is busy with a
    slow provider. A sender checks the claim itself before each send as well (a
    stalled process's keeper stalled too)."""

    def __init__(self, claim: Claim) -> None:
        self._claim = claim
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"lease-{claim.token[:8]}", daemon=True)

    def __enter__(self) -> LeaseKeeper:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self._claim.renew_every_seconds):
            try:
                self._claim.renew_if_due()
            except Exception:  # noqa: BLE001 - the senders' own check still fences
                log.warning("claim %s: renewing the lease failed", self._claim.token[:8], exc_info=True)
