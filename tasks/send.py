"""Send one batch of deliveries."""

from services.bootstrap import current_runtime
from services.sender import send_deliveries as send_deliveries_service
from tasks.app import RETRY_ON_DATABASE_ERRORS, app


@app.task(name="tasks.send.send_deliveries", **RETRY_ON_DATABASE_ERRORS)
def send_deliveries(delivery_ids: list[int]) -> int:
    report = send_deliveries_service(current_runtime(), delivery_ids)
    if report.rescheduled or report.retried:
        from tasks.relay import relay

        relay.delay()  # a permanent failure moves to the next channel at once
    return report.sent
