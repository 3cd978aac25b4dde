"""The one place that knows the queues: which queue each task runs on, and how a
service's ring becomes a Celery message (model: zulip's `queue_event_on_commit`).

Queues split the work so one kind cannot starve another: a million-line `encore emit`
fills `intake`, a 100,000-buyer stream fills `plan`, and sends and the relay's ticks
still get workers. Every task is routed by its full name, so a renamed task is a
visible change here, not a prefix that silently matches another queue.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import Celery
from kombu.exceptions import ChannelError
from sqlalchemy.orm import Session

from services import ports
from store.db import on_commit

log = logging.getLogger(__name__)

QUEUES = ("intake", "plan", "send", "relay", "sync")
ROUTES = {
    ports.APPLY_EVENTS: "intake",
    ports.PLAN_STREAM: "plan",
    ports.SWEEP_STREAMS: "plan",
    ports.RUN_DUE_CAMPAIGNS: "plan",
    ports.RUN_CAMPAIGN: "plan",
    ports.RELAY: "relay",
    ports.EXPIRE_OVERDUE: "relay",
    ports.SEND_DELIVERIES: "send",
    ports.SYNC_CODES: "sync",
    ports.REMOVE_CODES: "sync",
}
"""Task name → queue."""


def task_routes() -> dict[str, dict[str, str]]:
    """ROUTES in Celery's `task_routes` form, for a `.delay()` outside the doorbell."""
    return {task: {"queue": queue} for task, queue in ROUTES.items()}


class CeleryDoorbell:
    """Rings by task name through `app` (tasks/app.py), on the task's queue."""

    def __init__(self, app: Celery) -> None:
        self.app = app

    def ring(self, task: str, *args: Any) -> None:
        self.app.send_task(task, args=list(args), queue=ROUTES[task])

    def ring_after_commit(self, session: Session, task: str, *args: Any) -> None:
        on_commit(session, lambda: self._ring_or_log(task, args))

    def _ring_or_log(self, task: str, args: tuple) -> None:
        try:
            self.ring(task, *args)
        except Exception:  # noqa: BLE001 - committed already: the relay or beat rings it again
            log.warning("ringing %s failed; the relay or beat finds what it announced", task, exc_info=True)

    def waiting(self, task: str) -> int | None:
        """Messages waiting in the task's queue (not those a worker holds), or None if the
        broker cannot say. Redis, RabbitMQ and the embedded broker all answer a passive
        declare; an empty Redis queue has no key, which kombu reports as a missing queue."""
        queue = ROUTES[task]
        try:
            with self.app.connection_for_read() as connection:
                try:
                    return connection.default_channel.queue_declare(queue=queue, passive=True).message_count
                except (ChannelError, *connection.channel_errors):
                    return 0  # no such queue: nothing waits in it
        except Exception:  # noqa: BLE001 - unknown: the relay falls back to re-enqueueing
            log.warning("could not read the length of queue %s", queue, exc_info=True)
            return None
