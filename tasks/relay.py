"""Ring the doorbell for whatever the database says is due."""

from datetime import timedelta

from services.relay import SEND_BATCH, batches, claim_due_deliveries, claim_unapplied_events, release_expired_leases
from services.runtime import current_runtime, utcnow
from store.db import session_scope
from workers.app import RETRY_ON_DATABASE_ERRORS, app

EVENT_BATCH = 500


@app.task(name="tasks.relay.relay", **RETRY_ON_DATABASE_ERRORS)
def relay() -> int:
    from tasks.intake import apply_events
    from tasks.send import send_deliveries

    runtime = current_runtime()
    requeue_after = timedelta(seconds=runtime.settings.lease_seconds)
    with session_scope(runtime.database_url) as session:
        release_expired_leases(session, utcnow())
        event_ids = claim_unapplied_events(session, utcnow(), requeue_after)
    for chunk in batches(event_ids, EVENT_BATCH):
        apply_events.delay(chunk)
    enqueued = 0
    while True:
        with session_scope(runtime.database_url) as session:
            due = claim_due_deliveries(session, utcnow(), requeue_after)
        for chunk in batches(due, SEND_BATCH):
            send_deliveries.delay(chunk)
        enqueued += len(due)
        if not due:
            return enqueued
