"""What the use cases need from outside them, as interfaces: a clock, and a doorbell
that asks for the next step by name (model: zulip's `queue_json_publish`).

The services say *which* task should run next; how the message travels (Celery, its
queues and routes) is `tasks/doorbell.py`'s business, and a test rings an in-memory
doorbell instead (`tests/support.RecordingDoorbell`, like dramatiq's StubBroker).
A ring is only a hint: everything it announces is already in the database, and the
relay or beat finds it again if the ring is lost.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy.orm import Session

Clock = Callable[[], datetime]
"""The one source of "now" a use case reads: `Runtime.clock` (a fake one in tests)."""

# The doors: a task's name is its module and function (tasks/<module>.py).
APPLY_EVENTS = "tasks.intake.apply_events"
PLAN_STREAM = "tasks.plan.plan_stream"
SWEEP_STREAMS = "tasks.plan.sweep_streams"
RELAY = "tasks.relay.relay"
SEND_DELIVERIES = "tasks.send.send_deliveries"
RUN_DUE_CAMPAIGNS = "tasks.campaigns.run_due_campaigns"
RUN_CAMPAIGN = "tasks.campaigns.run_campaign"
EXPIRE_OVERDUE = "tasks.expiry.expire_overdue"
SYNC_CODES = "tasks.sync.sync_codes"
REMOVE_CODES = "tasks.sync.remove_codes"
TASKS = (APPLY_EVENTS, PLAN_STREAM, SWEEP_STREAMS, RELAY, SEND_DELIVERIES, RUN_DUE_CAMPAIGNS, RUN_CAMPAIGN,
         EXPIRE_OVERDUE, SYNC_CODES, REMOVE_CODES)


class Doorbell(Protocol):
    def ring(self, task: str, *args: Any) -> None:
        """Ask for `task(*args)` to run now. Raises when the broker refuses: the caller
        has committed what the ring announces and decides what to tell its user."""

    def ring_after_commit(self, session: Session, task: str, *args: Any) -> None:
        """Ring once `session`'s transaction commits; never if it rolls back ("commit
        first, then ring"). A broker that refuses then is logged, not raised."""

    def waiting(self, task: str) -> int | None:
        """Messages waiting in `task`'s queue that no worker holds yet; None when the
        broker cannot say."""


class NoDoorbell:
    """The doorbell of a process that only reads (`encore status`, `encore check`):
    ringing it is a bug, reported by name."""

    def ring(self, task: str, *args: Any) -> None:
        raise RuntimeError(f"{task}: this process was built without a doorbell")

    def ring_after_commit(self, session: Session, task: str, *args: Any) -> None:
        self.ring(task, *args)

    def waiting(self, task: str) -> int | None:
        return None
