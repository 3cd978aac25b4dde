"""Ring the doorbell for whatever the database says is due."""

from services.ports import RELAY
from services.relay import relay_once
from tasks.app import RETRY_ON_DATABASE_ERRORS, app, runtime


@app.task(name=RELAY, **RETRY_ON_DATABASE_ERRORS)
def relay() -> int:
    return relay_once(runtime())
