"""Builders for events and a running stack (real worker, real sinks) for tests."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from channels.sinks import HttpSink, SmtpSink
from coupons.timing import zone_at_local_hour


def iso(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def zone_where_local_hour_is(hour: int, now: datetime | None = None) -> str:
    return zone_at_local_hour(hour, now or datetime.now(UTC))


def order_paid(event_id: str, *, order_id: str | None = None, customer_id: str = "c1", country: str = "US",
               currency: str = "USD", occurred_at: datetime | None = None, stream_id: str | None = None,
               items: list[dict] | None = None, consent: list[str] | None = None, timezone: str | None = None,
               name: str | None = "Ann", **contact) -> dict:
    customer = {"id": customer_id, "country": country, "consent": consent if consent is not None else ["email"]}
    if name is not None:
        customer["name"] = name
    if timezone:
        customer["timezone"] = timezone
    if "email" not in contact and "email" in customer["consent"]:
        contact["email"] = f"{customer_id}@example.com"
    customer.update(contact)
    data = {
        "order_id": order_id or f"order-{event_id}",
        "currency": currency,
        "customer": customer,
        "items": items or [{"sku": "shampoo", "name": "Shampoo", "unit_price": "20.00", "quantity": 1,
                            "refill_sku": "shampoo-refill"}],
    }
    if stream_id:
        data["stream_id"] = stream_id
    return {"id": event_id, "type": "order.paid", "occurred_at": iso(occurred_at or datetime.now(UTC)), "data": data}


def stream_ended(event_id: str, stream_id: str, occurred_at: datetime | None = None) -> dict:
    return {"id": event_id, "type": "stream.ended", "occurred_at": iso(occurred_at or datetime.now(UTC)),
            "data": {"stream_id": stream_id}}


def wait_until(predicate: Callable[[], object], timeout: float = 30.0, interval: float = 0.05) -> object:
    """Poll `predicate` until it returns something truthy; fail with what it last saw."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(interval)


class Stack:
    """A running Encore: settings from env, a real Celery worker in a thread, a relay ticker."""

    def __init__(self, runtime, smtp: SmtpSink, http: HttpSink, worker: WorkerProcess):
        self.runtime = runtime
        self.smtp = smtp
        self.http = http
        self.worker = worker

    def emit(self, *events: dict | str) -> object:
        from services.emit import emit_lines
        from services.runtime import utcnow
        from tasks.intake import apply_events

        lines = [("test", n, e if isinstance(e, str) else json.dumps(e)) for n, e in enumerate(events, 1)]
        rejected: list[tuple[int, str]] = []
        report = emit_lines(self.runtime, lines, utcnow, lambda ids: apply_events.delay(ids),
                            lambda _s, n, reason: rejected.append((n, reason)))
        report.rejected_lines = rejected
        return report

    def deliveries(self, customer_id: str | None = None) -> list[dict]:
        from services.reports import deliveries
        from store.db import session_scope

        with session_scope(self.runtime.database_url) as session:
            return deliveries(session, customer_id)

    def status(self) -> dict:
        from services.reports import status
        from store.db import session_scope

        with session_scope(self.runtime.database_url) as session:
            return status(session)

    def wait_for_states(self, count: int, states: tuple[str, ...], timeout: float = 60.0) -> list[dict]:
        return wait_until(lambda: (rows := self.deliveries()) and len(rows) >= count
                          and all(r["state"] in states for r in rows) and rows, timeout)

    def query(self, statement):
        from store.db import session_scope

        with session_scope(self.runtime.database_url) as session:
            return session.execute(statement).all()


class WorkerProcess:
    """A real `encore worker` process (prefork, like production), with its log."""

    def __init__(self, env: dict[str, str], log_path, concurrency: int = 2):
        self.env = env
        self.log_path = log_path
        self.concurrency = concurrency
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 60.0) -> WorkerProcess:
        log = open(self.log_path, "a")
        start_offset = log.tell()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "workers.cli", "worker", "--concurrency", str(self.concurrency),
             "--loglevel", "INFO", "-n", f"test-{os.getpid()}-{time.monotonic_ns()}@%h"],
            stdout=log, stderr=subprocess.STDOUT, env=self.env, start_new_session=True,
        )
        log.close()

        def ready() -> bool:
            if self.process.poll() is not None:
                raise AssertionError(f"worker exited with {self.process.returncode}:\n{self.log()}")
            with open(self.log_path) as f:
                f.seek(start_offset)
                return " ready." in f.read()

        wait_until(ready, timeout)
        return self

    def log(self) -> str:
        with open(self.log_path) as f:
            return f.read()[-4000:]

    def kill(self) -> None:
        """SIGKILL the whole worker (parent and pool children), as a crash would."""
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.kill()


@contextmanager
def running_stack(monkeypatch, *, database_url: str, broker_url: str, data_dir, env: dict | None = None,
                  relay_tick: float = 0.5, concurrency: int = 2) -> Iterator[Stack]:
    import services.runtime as runtime_module
    from workers.app import configure
    from workers.settings import load_settings

    smtp = SmtpSink()
    http = HttpSink()
    smtp.start()
    http.start()
    settings_env = {
        "ENCORE_DATA_DIR": str(data_dir),
        "ENCORE_DATABASE_URL": database_url,
        "ENCORE_BROKER_URL": broker_url,
        "ENCORE_CHANNEL_EMAIL": f"mailto://127.0.0.1:{smtp.port}?from=shop@example.com&to={{email}}",
        "ENCORE_CHANNEL_SMS": f"json://127.0.0.1:{http.port}/sms/{{phone}}",
        "ENCORE_CHANNEL_WHATSAPP": f"json://127.0.0.1:{http.port}/whatsapp/{{whatsapp}}",
        "ENCORE_RETRY_BASE_SECONDS": "0.2",
        "ENCORE_LEASE_SECONDS": "30",
        **(env or {}),
    }
    for key, value in settings_env.items():
        if value is None:
            monkeypatch.delenv(key, raising=False)
        else:
            monkeypatch.setenv(key, value)
    runtime_module.current_runtime.cache_clear()
    configure(load_settings())
    runtime = runtime_module.current_runtime()
    worker = WorkerProcess(dict(os.environ), Path(data_dir) / "worker.log", concurrency)
    stop = threading.Event()

    def tick() -> None:
        """What `encore beat` does, faster."""
        from tasks.plan import sweep_streams
        from tasks.relay import relay

        ticks = 0
        while not stop.wait(relay_tick):
            ticks += 1
            try:
                relay.delay()
                if ticks % 4 == 0:
                    sweep_streams.delay()
            except Exception:  # the broker may be restarting in a crash test
                pass

    ticker = threading.Thread(target=tick, daemon=True)
    try:
        worker.start()
        ticker.start()
        yield Stack(runtime, smtp, http, worker)
    finally:
        stop.set()
        worker.stop()
        smtp.stop()
        http.stop()
        runtime_module.current_runtime.cache_clear()
