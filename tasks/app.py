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

from celery import Celery
from celery.signals import worker_process_init
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


@worker_process_init.connect
def _freeze_long_lived_objects(**_: object) -> None:
    """Keep what a worker child holds for life (modules, templates, settings) out of
    the garbage collector's scans: py-spy showed ~25% of planning CPU in the collector
    walking those objects again and again."""
    gc.freeze()
