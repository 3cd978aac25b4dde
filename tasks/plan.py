"""Plan a stream's coupons in chunks; sweep streams that waited long enough."""

from services.stream_planning import plan_stream as plan_stream_service
from services.stream_planning import sweep_streams as sweep_streams_service
from services.ports import PLAN_STREAM, SWEEP_STREAMS
from tasks.app import RETRY_ON_DATABASE_ERRORS, app, runtime


@app.task(name=PLAN_STREAM, **RETRY_ON_DATABASE_ERRORS)
def plan_stream(stream_id: str) -> int:
    return plan_stream_service(runtime(), stream_id)


@app.task(name=SWEEP_STREAMS, **RETRY_ON_DATABASE_ERRORS)
def sweep_streams() -> int:
    return sweep_streams_service(runtime())
