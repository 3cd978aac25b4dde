"""Apply stored inbox events; intake rings the planner and the relay after its commit."""

from services.intake import apply_events as apply_events_service
from services.ports import APPLY_EVENTS
from store.db import session_scope
from tasks.app import RETRY_ON_DATABASE_ERRORS, app, runtime


@app.task(name=APPLY_EVENTS, **RETRY_ON_DATABASE_ERRORS)
def apply_events(event_ids: list[str]) -> int:
    process = runtime()
    with session_scope(process.database_url) as session:
        apply_events_service(session, process, event_ids, process.clock())
    return len(event_ids)
