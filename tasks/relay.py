"""Ring the doorbell for whatever the database says is due."""

import logging
from datetime import timedelta

from services.relay import (
    SEND_BATCH,
    batches,
    claim_due_deliveries,
    claim_unapplied_events,
    release_expired_leases,
)
from services.bootstrap import Clock, Runtime, current_runtime, utcnow
from store.db import session_scope
from tasks.app import RETRY_ON_DATABASE_ERRORS, app

EVENT_BATCH = 500
SEND_QUEUE = "send"
INTAKE_QUEUE = "intake"

log = logging.getLogger(__name__)


def queued_messages(queue: str) -> int | None:
    """Messages waiting in `queue` (not those a worker holds), or None if the broker
    cannot say. Redis, RabbitMQ and the embedded broker all answer a passive declare;
    an empty Redis queue has no key, which kombu reports as a missing queue."""
    from kombu.exceptions import ChannelError

    try:
        with app.connection_for_read() as connection:
            try:
                return connection.default_channel.queue_declare(queue=queue, passive=True).message_count
            except (ChannelError, *connection.channel_errors):
                return 0  # no such queue: nothing waits in it
    except Exception:  # noqa: BLE001 - unknown: the relay falls back to re-enqueueing
        log.warning("could not read the length of queue %s", queue, exc_info=True)
        return None


@app.task(name="tasks.relay.relay", **RETRY_ON_DATABASE_ERRORS)
def relay() -> int:
    return relay_once(current_runtime())


def relay_once(runtime: Runtime, clock: Clock = utcnow) -> int:
    """One relay pass: give back expired leases, enqueue unapplied events and due deliveries."""
    from tasks.intake import apply_events
    from tasks.send import send_deliveries

    requeue_after = timedelta(seconds=runtime.settings.lease_seconds)
    with session_scope(runtime.database_url) as session:
        release_expired_leases(session, clock())
        # Like sends: stored events whose message is older than the lease are presumed lost
        # only when the intake queue is empty. A million-line `encore emit` on a busy machine
        # can take longer than the lease to apply, and its backlog must not be copied into the
        # broker again. The queue is asked only when there is something to claim (rarely).
        with session.begin_nested() as claim:
            event_ids = claim_unapplied_events(session, clock(), requeue_after)
            if event_ids and queued_messages(INTAKE_QUEUE) not in (0, None):
                claim.rollback()
                event_ids = []
    for chunk in batches(event_ids, EVENT_BATCH):
        apply_events.delay(chunk)
    # Asked before the first enqueue of this pass: what this pass enqueues is not lost.
    broker_holds_none = queued_messages(SEND_QUEUE) in (0, None)
    enqueued = 0
    while True:
        with session_scope(runtime.database_url) as session:
            due = claim_due_deliveries(session, clock(), requeue_after, broker_holds_none=broker_holds_none)
        for chunk in batches(due, SEND_BATCH):
            send_deliveries.delay(chunk)
        enqueued += len(due)
        if not due:
            return enqueued
