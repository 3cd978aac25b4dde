"""Send one batch of deliveries."""

from services.ports import RELAY, SEND_DELIVERIES
from services.sender import send_deliveries as send_deliveries_service
from tasks.app import RETRY_ON_DATABASE_ERRORS, app, runtime


@app.task(name=SEND_DELIVERIES, **RETRY_ON_DATABASE_ERRORS)
def send_deliveries(delivery_ids: list[int]) -> int:
    process = runtime()
    report = send_deliveries_service(process, delivery_ids, process.clock)
    if report.rescheduled or report.retried:
        process.doorbell.ring(RELAY)  # a permanent failure moves to the next channel at once
    return report.sent
