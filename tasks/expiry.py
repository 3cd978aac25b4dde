"""Expire deliveries whose deadline passed while they waited."""

from services.expiry import expire_overdue as expire_overdue_service
from services.ports import EXPIRE_OVERDUE
from store.db import session_scope
from tasks.app import RETRY_ON_DATABASE_ERRORS, app, runtime


@app.task(name=EXPIRE_OVERDUE, **RETRY_ON_DATABASE_ERRORS)
def expire_overdue() -> int:
    process = runtime()
    with session_scope(process.database_url) as session:
        return expire_overdue_service(session, process.clock())
