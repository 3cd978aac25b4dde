"""Make codes exist in their shops before they are sent, and stop void ones working."""

from services.code_sync import remove_due_codes, sync_codes_task
from services.ports import REMOVE_CODES, SYNC_CODES
from tasks.app import RETRY_ON_DATABASE_ERRORS, app, runtime


@app.task(name=SYNC_CODES, **RETRY_ON_DATABASE_ERRORS)
def sync_codes() -> int:
    return sync_codes_task(runtime()).synced


@app.task(name=REMOVE_CODES, **RETRY_ON_DATABASE_ERRORS)
def remove_codes() -> int:
    return remove_due_codes(runtime()).removed
