"""Builders for events and a running stack (real worker, real sinks) for tests."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from channels.sinks import HttpSink, SmtpSink
from coupons.timing import zone_at_local_hour


class FakeClock:
    """A clock the test moves by hand; call it to read the time."""

    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> datetime:
        self.now += timedelta(**delta)
        return self.now


class RecordingDoorbell:
    """An in-memory doorbell (like dramatiq's StubBroker): every ring is kept, in order,
    so a service test asserts which task rings next without a broker, and answers the
    rings it wants answered (`take`). `waiting` counts the rings of a task not taken yet,
    as the broker counts the messages of its queue."""

    def __init__(self) -> None:
        self.rings: list[tuple[str, tuple]] = []

    def ring(self, task: str, *args: Any) -> None:
        self.rings.append((task, args))

    def ring_after_commit(self, session, task: str, *args: Any) -> None:
        from store.db import on_commit

        on_commit(session, lambda: self.ring(task, *args))

    def waiting(self, task: str) -> int | None:
        return sum(1 for name, _ in self.rings if name == task)

    def take(self, *tasks: str) -> list[tuple[str, tuple]]:
        """Remove and return the rings of `tasks` (of every task when none is named)."""
        taken = [ring for ring in self.rings if not tasks or ring[0] in tasks]
        self.rings = [ring for ring in self.rings if ring not in taken]
        return taken

    def names(self) -> list[str]:
        return [name for name, _ in self.rings]


CODE_PATTERN = re.compile(r"\b[A-HJ-KM-NP-Z2-9]{5}-[A-HJ-KM-NP-Z2-9]{5}-[A-HJ-KM-NP-Z2-9]{5}\b")
"""A coupon code as messages show it (coupons.codes: three groups of five, no 0 O 1 I L)."""


def codes_at(smtp: SmtpSink) -> Counter:
    """How often each coupon code reached the SMTP stand-in (a duplicate shows as 2)."""
    return Counter(CODE_PATTERN.search(m.get_body(("plain",)).get_content()).group(0) for m in smtp.messages)


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


# SPEC section 7's example shops file, verbatim: the unit and the acceptance tests read the same text.
SPEC_SHOPS_FILE = """\
[shops.glow-us]
platform = "shopify"                        # "shopify", "woocommerce" or "none"
domain = "glow-us.myshopify.com"            # Shopify: the myshopify domain; WooCommerce: the site URL
api_url = "https://glow-us.myshopify.com/admin/api/2025-07/graphql.json"  # optional: the default is built from
                                            # domain; tests point it at a stand-in
token_env = "GLOW_US_SHOPIFY_TOKEN"         # Shopify: the variable holding the Admin API access token
webhook_secret_env = "GLOW_US_SHOPIFY_SECRET"  # Shopify: the variable holding the webhook signing secret
brand = "Glow"                              # the shop's name in its messages (optional)

[shops.glow-wc]
platform = "woocommerce"
domain = "https://glow.example"             # REST base: {domain}/wp-json/wc/v3/
key_env = "GLOW_WC_KEY"                     # the variables holding the REST consumer key and secret
secret_env = "GLOW_WC_SECRET"
"""


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

        lines = [("test", n, e if isinstance(e, str) else json.dumps(e)) for n, e in enumerate(events, 1)]
        rejected: list[tuple[int, str]] = []
        report = emit_lines(self.runtime, lines, lambda _s, n, reason: rejected.append((n, reason)))
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

    def sent_count(self) -> int:
        from sqlalchemy import func, select

        from store.models import Delivery

        return self.query(select(func.count()).select_from(Delivery).where(Delivery.state == "sent"))[0][0]

    def hold_smtp_until_settled(self, senders_waiting: int, after: int = 0, timeout: float = 60.0) -> None:
        """Make the SMTP server hold every new recipient once it accepted `after` messages,
        and wait until `senders_waiting` senders are held there and everything it accepted
        is recorded as sent: a worker killed now leaves no message accepted but unrecorded
        (the one duplicate window, documented in the README, that crash tests are not
        about). Waiting for a held state, not a passing moment, keeps this true on a
        loaded machine."""
        self.smtp.hold_after = after
        wait_until(lambda: self.smtp.count >= after, timeout=timeout)
        wait_until(lambda: self.smtp.waiting_in_rcpt >= senders_waiting and not self.smtp.past_rcpt
                   and self.sent_count() == self.smtp.count, timeout=timeout, interval=0.01)


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
        stop_process_group(self.process)


@contextmanager
def running_stack(monkeypatch, *, database_url: str, broker_url: str, data_dir, env: dict | None = None,
                  relay_tick: float = 0.5, concurrency: int = 2) -> Iterator[Stack]:
    from tasks.app import compose

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
    runtime = compose()  # the settings above, ringing through the Celery app pointed at them
    worker = WorkerProcess(dict(os.environ), Path(data_dir) / "worker.log", concurrency)
    stop = threading.Event()

    def tick() -> None:
        """What `encore beat` does, faster."""
        from services.code_sync import platform_shops
        from services.ports import RELAY, REMOVE_CODES, SWEEP_STREAMS, SYNC_CODES

        ticks = 0
        while not stop.wait(relay_tick):
            ticks += 1
            try:
                runtime.doorbell.ring(RELAY)
                if ticks % 4 == 0:
                    runtime.doorbell.ring(SWEEP_STREAMS)
                if ticks % 2 == 0 and platform_shops(runtime.settings):
                    runtime.doorbell.ring(SYNC_CODES)
                    runtime.doorbell.ring(REMOVE_CODES)
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


# ----------------------------------------------------------------------- encore serve

WEBHOOK_SECRET = "test-webhook-secret-0123456789"
SHOPIFY_SECRET = "test-shopify-secret-abcdef"


def signed_headers(body: bytes, secret: str = WEBHOOK_SECRET) -> dict[str, str]:
    """Headers a shop sends with a signed request to `encore serve`."""
    import hashlib
    import hmac

    return {"Content-Type": "application/json",
            "X-Encore-Signature": "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()}


def shopify_headers(body: bytes, webhook_id: str, secret: str = SHOPIFY_SECRET) -> dict[str, str]:
    """The headers Shopify sends with a webhook: the HMAC is base64 of HMAC-SHA256 over the raw body."""
    import base64
    import hashlib
    import hmac

    return {
        "Content-Type": "application/json",
        "X-Shopify-Topic": "orders/paid",
        "X-Shopify-Hmac-Sha256": base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode(),
        "X-Shopify-Shop-Domain": "encore-test.myshopify.com",
        "X-Shopify-API-Version": "2025-01",
        "X-Shopify-Webhook-Id": webhook_id,
        "X-Shopify-Event-Id": f"evt-{webhook_id}",
        "X-Shopify-Triggered-At": "2026-03-10T12:00:00.000000000Z",
    }


def shopify_order(order_id: int = 820982911946154508, *, customer_id: int = 115310627314723954,
                  country: str = "US", email: str | None = "john@example.com", phone: str | None = "+16135551111",
                  email_consent: str = "subscribed", sms_consent: str = "not_subscribed", locale: str = "en",
                  processed_at: datetime | None = None, discount_codes: list[str] = (),
                  line_items: list[dict] | None = None, shipping: bool = True, currency: str = "USD") -> dict:
    """An orders/paid payload in the shape Shopify documents (REST Order resource, trimmed of
    fields Encore ignores but keeping a few to show they are ignored)."""
    when = (processed_at or datetime.now(UTC)).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S-00:00")
    address = {"first_name": "John", "last_name": "Smith", "address1": "123 Elm St.", "city": "Ottawa",
               "zip": "K2P 1L4", "country": "United States", "country_code": country, "phone": "555-625-1199",
               "name": "John Smith", "province_code": None}
    payload = {
        "id": order_id,
        "admin_graphql_api_id": f"gid://shopify/Order/{order_id}",
        "name": "#9999",
        "email": email,
        "phone": None,
        "created_at": when,
        "processed_at": when,
        "currency": currency,
        "presentment_currency": currency,
        "financial_status": "paid",
        "customer_locale": locale,
        "total_price": "398.00",
        "buyer_accepts_marketing": email_consent == "subscribed",
        "discount_codes": [{"code": code, "amount": "10.00", "type": "percentage"} for code in discount_codes],
        "customer": {
            "id": customer_id,
            "email": email,
            "first_name": "John",
            "last_name": "Smith",
            "phone": phone,
            "state": "disabled",
            "currency": currency,
            "email_marketing_consent": {"state": email_consent, "opt_in_level": "single_opt_in",
                                        "consent_updated_at": when},
            "sms_marketing_consent": {"state": sms_consent, "opt_in_level": "single_opt_in",
                                      "consent_updated_at": when, "consent_collected_from": "SHOPIFY"},
            "admin_graphql_api_id": f"gid://shopify/Customer/{customer_id}",
            "default_address": {**address, "id": 1, "customer_id": customer_id, "default": True},
        },
        "billing_address": dict(address),
        "shipping_address": dict(address) if shipping else None,
        "line_items": line_items or [
            {"id": 866550311766439020, "variant_id": 808950810, "product_id": 632910392, "title": "IPod Nano - 8GB",
             "name": "IPod Nano - 8GB - black", "sku": "IPOD2008BLACK", "price": "199.00", "quantity": 1,
             "current_quantity": 1, "grams": 200, "gift_card": False, "taxable": True,
             "price_set": {"shop_money": {"amount": "199.00", "currency_code": currency},
                           "presentment_money": {"amount": "199.00", "currency_code": currency}}},
        ],
    }
    return payload


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ServeProcess:
    """A real `encore serve` process, as the Procfile's `web` line runs it."""

    def __init__(self, env: dict[str, str], log_path, cwd=None):
        self.env = env
        self.log_path = log_path
        self.cwd = cwd
        self.port = free_port()
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> ServeProcess:
        import httpx

        log = open(self.log_path, "a")
        self.process = subprocess.Popen([sys.executable, "-m", "workers.cli", "serve", "--port", str(self.port)],
                                        stdout=log, stderr=subprocess.STDOUT, env=self.env, cwd=self.cwd,
                                        start_new_session=True)
        log.close()

        def ready() -> bool:
            if self.process.poll() is not None:
                raise AssertionError(f"encore serve exited with {self.process.returncode}:\n{self.log()}")
            try:
                return httpx.get(self.url + "/openapi.json", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(ready, timeout, interval=0.2)
        return self

    def log(self) -> str:
        with open(self.log_path) as f:
            return f.read()[-4000:]

    def stop(self) -> None:
        stop_process_group(self.process)


ENCORE_SCRIPT = str(Path(sys.executable).with_name("encore"))
"""The installed console script, as a user runs it."""


def stop_process_group(process: subprocess.Popen | None) -> None:
    """Stop a process started in a session of its own (with its pool children) as a
    deploy does: SIGTERM, then SIGKILL if it is still there after 30 s."""
    if process is None or process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)


class EncoreDaemon:
    """A long-running installed `encore` command (worker, beat, serve) in its own
    process group, its output in `log_path`."""

    def __init__(self, args: list[str], env: dict[str, str], log_path: Path, cwd: Path | None = None) -> None:
        self.log_path = log_path
        with open(log_path, "ab") as out:
            self.process = subprocess.Popen([ENCORE_SCRIPT, *args], stdout=out, stderr=subprocess.STDOUT, env=env,
                                            cwd=cwd, start_new_session=True)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]

    def alive(self) -> bool:
        """True while it runs; an exit fails the test with the command's log."""
        if self.process.poll() is not None:
            raise AssertionError(f"{self.log_path.name}: exited {self.process.returncode}\n{self.log()}")
        return True

    def stop(self) -> None:
        stop_process_group(self.process)
