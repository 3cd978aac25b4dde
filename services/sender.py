"""Claim, send, record: the sending side of a batch of deliveries.

1. Claim: one UPDATE moves due `scheduled` rows to `sending` with a lease and a
   fresh claim token; a row another worker claimed is simply not returned
   (`sending.claim`).
2. Decide (pure, `coupons.delivery_rules.decide_send`) with fresh consent,
   refunds, quiet hours and the frequency cap; render the message. One delivery
   that cannot be decided or rendered ends `failed` (`render_error`) on its own
   (`sending.prepare`).
3. Per delivery: check the claim is still ours (the fence), check the deadline and
   quiet hours at that moment, send, record (`sending.loop`). Every write of a result
   applies only while the row is `sending` under our token, so a worker that
   stalled past its lease can neither send (it finds out before the send) nor
   overwrite the new owner's result (`sending.writes`). Results are recorded right
   after each send.

Many sends are in flight at once: each channel's items are sent by up to
`Settings.concurrency_for(channel)` threads, which share the batch's `Claim`: one
database connection, behind a lock, so a batch holds one connection however many
sends it has in flight.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from store.db import session_scope

from .bootstrap import Runtime
from .code_sync import platform_shops
from .ports import Clock
from .sending.claim import Claim, claim, new_claim_token
from .sending.loop import ENDED, LOST, RESCHEDULED, RETRY_LATER, SENT_NOW, send_all
from .sending.prepare import ClaimedBatch, prepare

__all__ = ["BatchReport", "ClaimedBatch", "claim_batch", "send_claimed", "send_deliveries"]


@dataclass(frozen=True)
class BatchReport:
    claimed: int = 0
    sent: int = 0
    retried: int = 0
    ended: int = 0
    rescheduled: int = 0
    lost: int = 0  # rows another worker took over after this one's lease ran out


def claim_batch(runtime: Runtime, ids: list[int], clock: Clock) -> ClaimedBatch:
    """Claim the due rows among `ids` under a new token; decide and render each."""
    now = clock()
    batch = ClaimedBatch(token=new_claim_token(), claimed_at=now, claimed=[])
    with session_scope(runtime.database_url) as session:
        batch.claimed = claim(session, ids, now, timedelta(seconds=runtime.settings.lease_seconds), batch.token,
                              platform_shops(runtime.settings))
    if batch.claimed:
        with session_scope(runtime.database_url) as session:
            prepare(session, runtime, batch)
    return batch


def send_claimed(runtime: Runtime, batch: ClaimedBatch, clock: Clock) -> BatchReport:
    """Send what `claim_batch` took, up to the channel's concurrency at once, each
    result recorded as its answer arrives."""
    claim = Claim(runtime, batch, clock)
    try:
        counts = send_all(runtime, claim, batch.outgoing, clock)
    finally:
        claim.close()
    return BatchReport(claimed=len(batch.claimed), sent=counts[SENT_NOW], retried=counts[RETRY_LATER],
                       ended=batch.ended + counts[ENDED], rescheduled=batch.rescheduled + counts[RESCHEDULED],
                       lost=counts[LOST])


def send_deliveries(runtime: Runtime, ids: list[int], clock: Clock) -> BatchReport:
    """Claim, send and record one batch; safe to run twice with the same ids."""
    batch = claim_batch(runtime, ids, clock)
    if not batch.claimed:
        return BatchReport()
    return send_claimed(runtime, batch, clock)
