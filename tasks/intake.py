"""Apply stored inbox events."""

from services.intake import apply_events as apply_events_service
from services.bootstrap import current_runtime, utcnow
from store.db import session_scope
from tasks.app import RETRY_ON_DATABASE_ERRORS, app


@app.task(name="tasks.intake.apply_events", **RETRY_ON_DATABASE_ERRORS)
def apply_events(event_ids: list[str]) -> int:
    runtime = current_runtime()
    with session_scope(runtime.database_url) as session:
        applied = apply_events_service(session, runtime, event_ids, utcnow())
    from tasks.plan import plan_stream
    from tasks.relay import relay

    for stream_id in applied.streams_to_plan:
        plan_stream.delay(stream_id)
    if applied.scheduled:
        relay.delay()
    return len(event_ids)
