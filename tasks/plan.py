"""Plan a stream's coupons in chunks; sweep streams that waited long enough."""

from services.planner import (
    claim_stream_planning,
    next_unplanned_customers,
    plan_stream_chunk,
    renew_stream_planning,
    streams_waiting,
)
from services.bootstrap import current_runtime, utcnow
from store.db import session_scope
from tasks.app import RETRY_ON_DATABASE_ERRORS, app


@app.task(name="tasks.plan.plan_stream", **RETRY_ON_DATABASE_ERRORS)
def plan_stream(stream_id: str) -> int:
    """One commit per chunk, and a relay kick after each, so sending overlaps planning
    and memory stays flat however many buyers the stream had."""
    from tasks.relay import relay

    runtime = current_runtime()
    with session_scope(runtime.database_url) as session:
        if not claim_stream_planning(session, stream_id, utcnow()):
            return 0  # another planner has it
    planned, after = 0, ""
    try:
        while True:
            with session_scope(runtime.database_url) as session:
                customer_ids = next_unplanned_customers(session, stream_id, after)
                renew_stream_planning(session, stream_id, utcnow(), done=not customer_ids)
                if not customer_ids:
                    return planned
                scheduled = plan_stream_chunk(session, runtime, stream_id, customer_ids, utcnow())
            planned += len(customer_ids)
            after = customer_ids[-1]
            if scheduled:
                relay.delay()
    except Exception:
        with session_scope(runtime.database_url) as session:
            renew_stream_planning(session, stream_id, utcnow(), done=True)  # let the retry claim it
        raise


@app.task(name="tasks.plan.sweep_streams", **RETRY_ON_DATABASE_ERRORS)
def sweep_streams() -> int:
    runtime = current_runtime()
    with session_scope(runtime.database_url) as session:
        waiting = streams_waiting(session, utcnow())
    for stream_id in waiting:
        plan_stream.delay(stream_id)
    return len(waiting)
