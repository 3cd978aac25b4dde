"""The one Celery app, and the runtime of the process that runs its tasks.

Settings favour at-least-once delivery: a task is acked after it ran, and requeued
when its worker dies, so every task must be safe to run twice (they are: each claims
rows in the database before acting).

Nothing is configured at import: `compose()` (called by `runtime()`, the command line
and the demo) bootstraps the runtime and points the app at the same settings. A
worker's pool children and beat are forked from the process that did so, and inherit
both."""

from __future__ import annotations

import gc
import os
import signal
import time

from celery import Celery
from billiard.process import current_process
from celery.signals import task_prerun, worker_process_init, worker_shutting_down
from kombu import pools
from sqlalchemy.exc import OperationalError

from config.settings import Settings
from schedules.beat import BEAT_SCHEDULE
from services.bootstrap import Runtime, bootstrap

from tasks.doorbell import CeleryDoorbell, task_routes

TASK_MODULES = ("tasks.intake", "tasks.plan", "tasks.relay", "tasks.send", "tasks.campaigns", "tasks.expiry",
                "tasks.sync")

app = Celery("encore")

RETRY_ON_DATABASE_ERRORS = dict(
    autoretry_for=(OperationalError,), retry_backoff=1, retry_backoff_max=30, retry_jitter=True, max_retries=8,
)
"""Task options for a database that blips (connection dropped, SQLite busy): a short
retry in the broker. Anything longer is the relay's job, from the rows themselves."""


REDIS_CONNECT_TIMEOUT = 5.0
REDIS_SOCKET_TIMEOUT = 10.0
"""Seconds a Redis broker may take to accept a connection, and to answer once connected."""


def configure(settings: Settings) -> Celery:
    """Point the app at `settings` (by `compose`, and again by tests pointing it elsewhere)."""
    if app._pool is not None:
        # Drop connections to a previous broker: kombu keeps global per-URL pools,
        # and Celery's own reset is the one it does after a fork.
        pools.reset()
        app._after_fork()
    app.conf.update(
        broker_url=settings.broker_url,
        broker_connection_retry_on_startup=True,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_ignore_result=True,
        result_backend=None,
        task_default_queue="intake",
        task_routes=task_routes(),
        task_serializer="json",
        accept_content=["json"],
        timezone="UTC",
        enable_utc=True,
        worker_hijack_root_logger=False,
        beat_schedule=BEAT_SCHEDULE,
        # Beat keeps its schedule in memory, not in a `celerybeat-schedule` file: every
        # periodic job is idempotent and reads what is due from the database, so a
        # restarted beat loses nothing, and beat needs no writable folder at all.
        beat_scheduler="celery.beat:Scheduler",
        include=list(TASK_MODULES),
    )
    # Redis: a visibility timeout far above any task's run time, so a slow batch is not
    # redelivered while still running; and bounded socket waits (kombu's default is none),
    # so a Redis that accepts connections but never answers (a hung host, a half-open
    # link) fails a publish in seconds instead of hanging `encore emit` or a web request
    # forever. A worker's BRPOP returns every second, far inside them. Other transports
    # take no such options (SQLAlchemy's would reject them); AMQP's connect is bounded by
    # Celery's broker_connection_timeout.
    is_redis = settings.broker_url.startswith(("redis://", "rediss://"))
    app.conf.broker_transport_options = (
        {"visibility_timeout": 3600, "socket_connect_timeout": REDIS_CONNECT_TIMEOUT,
         "socket_timeout": REDIS_SOCKET_TIMEOUT} if is_redis else {})
    return app


def compose(settings: Settings | None = None) -> Runtime:
    """A runtime whose doorbell is this app, and the app configured from the same settings
    (the environment's unless given)."""
    composed = bootstrap(settings, doorbell=CeleryDoorbell(app))
    configure(composed.settings)
    return composed


_runtime: Runtime | None = None


def runtime() -> Runtime:
    """This process's runtime, composed on first use: the tasks' (a pool child inherits
    its parent's), `encore serve`'s and the command line's."""
    global _runtime
    if _runtime is None:
        _runtime = compose()
    return _runtime


RESUME_AFTER_SECONDS = 30.0
"""A pool process still given new tasks this long after its SIGTERM belongs to a worker
that is not stopping (the signal reached that process alone): it sends again. A stopping
worker's main process gives its pool no new task once its warm shutdown began."""
_stop_requested_at: float | None = None


def _stop_taking_sends(signum: int, _frame: object) -> None:
    """SIGTERM in a pool child: finish the sends in flight, hand the rest back (SPEC rule
    19); a second SIGTERM ends the child at once."""
    global _stop_requested_at
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    _stop_requested_at = time.monotonic()
    os.write(2, f"encore: pool process {os.getpid()} asked to stop: finishing its sends in flight\n".encode())
    if _runtime is not None:
        _runtime.stopping.set()


@task_prerun.connect
def _stop_gracefully_on_sigterm(**_: object) -> None:
    """A pool child asked to stop (SIGTERM, which a deploy sends to the whole process
    group: systemd, Heroku) finishes its sends in flight and hands the rest back
    (`Runtime.stopping`), while the parent's warm shutdown waits for its task. Billiard
    gives a child a SIGTERM handler that exits at once (after `worker_process_init`, so
    it is replaced here, before each task): that ended a batch mid-send, leaving a
    message the provider took that no row recorded, sent again by the next worker. In
    the worker's main process (solo or threads pool) Celery's own handler stays."""
    global _stop_requested_at
    if current_process()._name == "MainProcess":
        return
    if _stop_requested_at is not None and time.monotonic() - _stop_requested_at > RESUME_AFTER_SECONDS:
        _stop_requested_at = None
        if _runtime is not None:
            _runtime.stopping.clear()
    if _stop_requested_at is None and signal.getsignal(signal.SIGTERM) is not _stop_taking_sends:
        signal.signal(signal.SIGTERM, _stop_taking_sends)


@worker_shutting_down.connect
def _stop_sending_on_shutdown(**_: object) -> None:
    """The same in a worker that runs its tasks in its own process (solo or threads pool)."""
    if _runtime is not None:
        _runtime.stopping.set()


@worker_process_init.connect
def _freeze_long_lived_objects(**_: object) -> None:
    """Keep what a worker child holds for life (modules, templates, settings) out of
    the garbage collector's scans: py-spy showed ~25% of planning CPU in the collector
    walking those objects again and again."""
    gc.freeze()
