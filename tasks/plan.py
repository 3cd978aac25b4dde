"""Plan a stream's coupons in chunks; sweep streams that waited long enough."""

from services.planner import plan_stream_chunk, streams_waiting, unplanned_stream_customers
from services.runtime import current_runtime
from services.sender import utcnow
from store.db import session_scope
from workers.app import app


@app.task(name="tasks.plan.plan_stream")
def plan_stream(stream_id: str) -> int:
    """One commit per chunk, and a relay kick after each, so sending overlaps planning."""
    from tasks.relay import relay

    runtime = current_runtime()
    planned = 0
    with session_scope(runtime.database_url) as reader:
        chunks = list(unplanned_stream_customers(reader, stream_id))
    for customer_ids in chunks:
        with session_scope(runtime.database_url) as session:
            scheduled = plan_stream_chunk(session, runtime, stream_id, customer_ids, utcnow())
        planned += len(customer_ids)
        if scheduled:
            relay.delay()
    return planned


@app.task(name="tasks.plan.sweep_streams")
def sweep_streams() -> int:
    runtime = current_runtime()
    with session_scope(runtime.database_url) as session:
        waiting = streams_waiting(session, utcnow())
    for stream_id in waiting:
        plan_stream.delay(stream_id)
    return len(waiting)
