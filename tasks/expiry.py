"""Expire deliveries whose deadline passed while they waited."""

from services.expiry import expire_overdue as expire_overdue_service
from services.bootstrap import current_runtime, utcnow
from store.db import session_scope
from tasks.app import RETRY_ON_DATABASE_ERRORS, app


@app.task(name="tasks.relay.expire_overdue", **RETRY_ON_DATABASE_ERRORS)
def expire_overdue() -> int:
    with session_scope(current_runtime().database_url) as session:
        return expire_overdue_service(session, utcnow())
