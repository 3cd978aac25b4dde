"""The concurrent send loop: many sends in flight per batch, one connection.

Real providers answer in tens to hundreds of milliseconds, so one send at a time
makes throughput children / latency whatever the CPU. Each channel's items wait in a
`_ChannelQueue` and are taken by up to `Settings.concurrency_for(channel)` threads,
each with a sender lent by `channels.pool` (its SMTP session or HTTP keep-alive
connection is kept). Each thread runs fence → window → send → record (`_send_one`)
per item, sharing the batch's `Claim` (one database connection behind a lock), and
asks the channel's shared token bucket before each send: a wait longer than
`MAX_RATE_WAIT_SECONDS` stops the channel's queue, and what no thread has taken yet
goes back to the relay (`rate_limited`). A worker asked to stop (`Runtime.stopping`,
SIGTERM) takes no new item: its sends in flight finish and are recorded, and the rest
goes back to the relay at once. A worker killed mid-batch leaves at most its
in-flight messages sent-but-unrecorded (each only for the one database round trip
after the provider's answer).
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from datetime import datetime, timedelta

from channels.adapter import ChannelSender
from channels.ratelimit import Limiter
from coupons.delivery_rules import SendDecision, send_window
from store.models import FAILED, SCHEDULED

from ..bootstrap import Runtime
from ..ports import Clock
from .claim import Claim, LeaseKeeper
from .prepare import Outgoing

# --------------------------------------------------------------------------- rate limits

MAX_RATE_WAIT_SECONDS = 1.0
"""Longest a worker waits in place for a rate-limit token before rescheduling."""


def _wait_for_token(limiter: Limiter | None) -> float | None:
    """None once a token is taken; the wait in seconds if it is too long to hold the worker."""
    if limiter is None:
        return None
    while (wait := limiter.acquire()) > 0:
        if wait > MAX_RATE_WAIT_SECONDS:
            return wait
        time.sleep(wait)
    return None


# --------------------------------------------------------------------------- one delivery

SENT_NOW, RETRY_LATER, ENDED, RESCHEDULED, LOST = "sent", "retry", "ended", "rescheduled", "lost"


def _window(runtime: Runtime, item: Outgoing, now: datetime) -> SendDecision:
    return send_window(now=now, deadline_at=item.deadline_at, timezone=item.timezone,
                       market=runtime.markets.by_name[item.market_name],
                       last_transient_reason=item.last_transient_reason, channel=item.channel,
                       windows=item.sms_rule)


def _send_one(runtime: Runtime, claim: Claim, sender: ChannelSender, item: Outgoing, clock: Clock) -> str:
    """Fence, window, send, record: one delivery, one attempt. Called from several
    threads at once for different items (each with its own sender; `Claim` is
    thread-safe)."""
    if not claim.owns(item.delivery_id):
        return LOST
    now = clock()
    window = _window(runtime, item, now)
    if window.action == "end":
        claim.finish(item.delivery_id, now, state=window.state or FAILED, reason=window.reason)
        return ENDED
    if window.action == "reschedule":
        claim.finish(item.delivery_id, now, state=SCHEDULED, reason=item.last_reason, next_attempt_at=window.due_at)
        return RESCHEDULED

    def may_attempt_again() -> bool:
        return (not runtime.stopping.is_set() and claim.owns(item.delivery_id)
                and _window(runtime, item, clock()).action == "send")

    result = sender.send(item.address, item.message, may_attempt=may_attempt_again)
    if not claim.record(item, result, started_at=now, answered_at=clock()):
        return LOST
    return SENT_NOW if result.ok else RETRY_LATER


# --------------------------------------------------------------------------- the threads


class _ChannelQueue:
    """One channel's items for the batch, taken one at a time by its sending threads.
    When the shared rate limit is spent for longer than a worker should wait, the
    queue stops: what no thread has taken yet goes back to the relay."""

    def __init__(self, channel: str, items: list[Outgoing]) -> None:
        self.channel = channel
        self._items = list(reversed(items))
        self._lock = threading.Lock()
        self.hand_back_after: float | None = None  # seconds until tokens are there again
        self.stopped = False  # the process is stopping: the rest goes back as it was

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    def take(self) -> Outgoing | None:
        with self._lock:
            if self.hand_back_after is not None or self.stopped or not self._items:
                return None
            return self._items.pop()

    def stop_for_shutdown(self, item: Outgoing) -> None:
        with self._lock:
            self._items.append(item)
            self.stopped = True

    def stop(self, item: Outgoing, wait: float) -> None:
        with self._lock:
            self._items.append(item)
            self.hand_back_after = max(wait, self.hand_back_after or 0.0)

    def rest(self) -> list[Outgoing]:
        with self._lock:
            rest, self._items = list(reversed(self._items)), []
            return rest


def _drain(runtime: Runtime, claim: Claim, queue: _ChannelQueue, clock: Clock,
           counts: dict[str, int], counts_lock: threading.Lock) -> None:
    """One sending slot: borrow a sender, send the queue's items until it is empty."""
    limiter = runtime.rate_limiter(queue.channel)
    pool = runtime.sender_pool(queue.channel)
    with pool.lend() as sender:
        while (item := queue.take()) is not None:
            if runtime.stopping.is_set():
                queue.stop_for_shutdown(item)
                return
            wait = _wait_for_token(limiter)
            if wait is not None:
                queue.stop(item, wait)
                return
            outcome = _send_one(runtime, claim, sender, item, clock)
            with counts_lock:
                counts[outcome] += 1


def send_all(runtime: Runtime, claim: Claim, outgoing: list[Outgoing], clock: Clock) -> defaultdict[str, int]:
    """Send `outgoing` under `claim`, up to each channel's concurrency at once, each
    result recorded as its answer arrives; what a spent rate limit stopped goes back to
    the relay. Returns how many items ended each way (`SENT_NOW`, `RETRY_LATER`, ...)."""
    by_channel: dict[str, list[Outgoing]] = defaultdict(list)
    for item in outgoing:
        by_channel[item.channel].append(item)
    queues = [_ChannelQueue(channel, items) for channel, items in by_channel.items()]
    counts: defaultdict[str, int] = defaultdict(int)
    counts_lock = threading.Lock()
    errors: list[BaseException] = []

    def slot(queue: _ChannelQueue) -> None:
        try:
            _drain(runtime, claim, queue, clock, counts, counts_lock)
        except BaseException as error:  # noqa: BLE001 - re-raised in the task's thread below
            errors.append(error)

    with LeaseKeeper(claim):
        threads = [threading.Thread(target=slot, args=(queue,), name=f"send-{queue.channel}-{n}", daemon=True)
                   for queue in queues
                   for n in range(min(runtime.settings.concurrency_for(queue.channel), len(queue)))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    if errors:
        raise errors[0]
    for queue in queues:
        if queue.stopped:
            # A graceful stop: each row goes back due now, as it was, for the next worker.
            now = clock()
            for rest in queue.rest():
                if claim.finish(rest.delivery_id, now, state=SCHEDULED, reason=rest.last_reason, next_attempt_at=now):
                    counts[RESCHEDULED] += 1
            continue
        if queue.hand_back_after is None:
            continue
        # The provider's rate is spent for longer than a worker should hold:
        # hand the rest back to the relay for when tokens are there again.
        at = clock() + timedelta(seconds=queue.hand_back_after)
        counts[RESCHEDULED] += sum(claim.finish_all([rest.delivery_id for rest in queue.rest()], clock(),
                                                    state=SCHEDULED, reason="rate_limited", next_attempt_at=at))
    return counts
