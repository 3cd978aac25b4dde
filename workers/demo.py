"""`encore demo`: the whole pipeline on embedded defaults, nothing to set up.

It starts local stand-ins for the providers (an SMTP server and an HTTP
endpoint for SMS, WhatsApp, LINE and Telegram), a real worker process with its
scheduler, feeds sample shops' orders and a livestream from several markets,
shows progress, and ends with a summary and a few messages as customers see them.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta

import phonenumbers

from channels.sinks import HttpSink, SmtpSink
from coupons.timing import zone_at_local_hour

SAMPLE_CUSTOMERS = [
    # country, currency, locale, name, channels, product (sku, name, price, refill?)
    ("US", "USD", "en-US", "Ann Lee", ["email", "sms"], ("shampoo", "Argan Shampoo", "20.00", True)),
    ("CA", "CAD", "en-CA", "Marc Roy", ["email"], ("mug", "Travel Mug", "18.50", False)),
    ("DE", "EUR", "de-DE", "Jonas Weber", ["email"], ("tea", "Green Tea 100g", "9.90", True)),
    ("BR", "BRL", "pt-BR", "Ana Souza", ["whatsapp", "email"], ("serum", "Sérum Facial", "89.90", True)),
    ("MX", "MXN", "es-MX", "Luis Pérez", ["whatsapp", "sms"], ("cap", "Gorra", "250", False)),
    ("ID", "IDR", "id-ID", "Siti Rahma", ["whatsapp", "email"], ("serum", "Serum Wajah", "189000", True)),
    ("TH", "THB", "th-TH", "Niran", ["line", "sms"], ("soap", "สบู่สมุนไพร", "120", True)),
    ("VN", "VND", "vi-VN", "Nguyễn An", ["whatsapp", "email"], ("coffee", "Cà phê rang", "150000", True)),
    ("SA", "SAR", "ar-SA", "فاطمة", ["whatsapp", "email"], ("oud", "عطر العود", "320", False)),
    ("AE", "AED", "ar-AE", "Omar", ["email"], ("dates", "Premium Dates", "75", True)),
    ("NG", "NGN", "en-NG", "Chidi", ["telegram", "email"], ("earbuds", "Earbuds", "45000", False)),
    ("PH", "PHP", "en-PH", "Maria <b>Cruz</b>", ["whatsapp", "sms"], ("lotion", "Body Lotion", "399", True)),
]


BROKEN_LINE = '{"id": "broken", "type": "order.paid", "occurred_at": "yesterday"}'
"""Fed on purpose, to show how a bad line is rejected (and kept as a dead letter)."""


def _customer(run: str, index: int, spec: tuple) -> dict:
    country, _currency, locale, name, consent, _product = spec
    example = phonenumbers.example_number_for_type(country, phonenumbers.PhoneNumberType.MOBILE)
    if example is None:
        raise ValueError(f"phonenumbers has no example mobile number for {country}")
    phone = phonenumbers.format_number(example, phonenumbers.PhoneNumberFormat.E164)
    return {
        "id": f"{run}-cust-{index:04d}", "name": name, "country": country, "locale": locale,
        "email": f"buyer{index}.{run}@example.com", "phone": phone, "whatsapp": phone,
        "line_id": f"line-{run}-{index}", "telegram_id": str(100000 + index), "consent": consent,
    }


def sample_events(run: str, buyers: int, now: datetime) -> list[str]:
    """Plain orders, a livestream with `buyers` buyers (some buying twice), its end,
    a repeated event and a broken line: the cases a seller meets on a normal day.

    The shops' own customers live in their market's zone, so at most hours some of
    them are asleep and their coupons wait for the morning (quiet hours); the
    livestream's buyers are placed where it is early afternoon now, so the demo shows
    messages going out whatever the hour it is run.

    Plain orders are paid `now` and the livestream ends `now` (its orders came during
    the half hour before): a coupon is due when its order is paid or its stream ends,
    so the latency the demo reports (due → sent) is the pipeline's, not the age of
    made-up orders."""
    events: list[dict | str] = []
    stream_id = f"{run}-live"
    for index in range(buyers):
        spec = SAMPLE_CUSTOMERS[index % len(SAMPLE_CUSTOMERS)]
        customer = _customer(run, index, spec)
        sku, name, price, consumable = spec[5]
        in_stream = index >= len(SAMPLE_CUSTOMERS)
        if in_stream:
            customer["timezone"] = zone_at_local_hour(13, now)
        orders = 2 if in_stream and index % 5 == 0 else 1
        for n in range(orders):
            item = {"sku": sku, "name": name, "unit_price": price, "quantity": 1 + (index + n) % 2 * (not consumable)}
            if consumable:
                item["refill_sku"] = f"{sku}-refill"
            data = {"order_id": f"{run}-order-{index}-{n}", "currency": spec[1], "customer": customer, "items": [item]}
            if in_stream:
                data["stream_id"] = stream_id
            paid_at = now - timedelta(minutes=30 - n) if in_stream else now
            events.append({"id": f"{run}-evt-{index}-{n}", "type": "order.paid",
                           "occurred_at": _rfc3339(paid_at), "data": data})
    events.append(events[0])  # a webhook delivered twice: acknowledged, ignored
    events.append(BROKEN_LINE)
    events.append({"id": f"{run}-evt-end", "type": "stream.ended",
                   "occurred_at": _rfc3339(now), "data": {"stream_id": stream_id}})
    return [e if isinstance(e, str) else json.dumps(e, ensure_ascii=False) for e in events]


def _rfc3339(when: datetime) -> str:
    """Milliseconds kept: a time cut to the second would add up to a second of latency."""
    return when.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _channel_env(smtp: SmtpSink, http: HttpSink) -> dict[str, str]:
    base = f"json://127.0.0.1:{http.port}"
    return {
        "ENCORE_CHANNEL_EMAIL": f"mailto://127.0.0.1:{smtp.port}?from=shop@encore.example&to={{email}}",
        "ENCORE_CHANNEL_SMS": f"{base}/sms/{{phone}}",
        "ENCORE_CHANNEL_WHATSAPP": f"{base}/whatsapp/{{whatsapp}}",
        "ENCORE_CHANNEL_LINE": f"{base}/line/{{line_id}}",
        "ENCORE_CHANNEL_TELEGRAM": f"{base}/telegram/{{telegram_id}}",
    }


def _work_left(session, now: datetime) -> int:
    """Events not yet applied, stream orders not yet planned, deliveries due or in flight."""
    from sqlalchemy import func, select

    from coupons.states import DeliveryState
    from store.models import Delivery, InboxEvent, Order, Stream

    def count(query) -> int:
        return session.scalar(select(func.count()).select_from(query.subquery())) or 0

    return (
        count(select(InboxEvent.id).where(InboxEvent.processed_at.is_(None)))
        + count(select(Order.id).join(Stream, Stream.id == Order.stream_id)
                .where(Order.coupon_id.is_(None), Order.refunded_at.is_(None), Stream.ended_at.is_not(None)))
        + count(select(Delivery.id).where((Delivery.state == DeliveryState.SENDING)
                                          | ((Delivery.state == DeliveryState.SCHEDULED) & (Delivery.next_attempt_at <= now))))
    )


def run_demo(buyers: int = 40, timeout: float = 180.0) -> int:
    from services.emit import emit_lines
    from services.reports import status
    from store.db import session_scope
    from tasks.app import compose

    smtp, http = SmtpSink().start(), HttpSink().start()
    os.environ.update(_channel_env(smtp, http))
    os.environ.setdefault("ENCORE_RETRY_BASE_SECONDS", "2")
    runtime = compose()  # the environment's settings, the stand-ins' channels among them
    settings = runtime.settings
    settings.data_dir.mkdir(parents=True, exist_ok=True)  # for the worker's log, whatever the database
    print(f"Encore demo — database {settings.database_url}, broker {settings.broker_url}")
    print(f"  providers: SMTP on 127.0.0.1:{smtp.port}, SMS/WhatsApp/LINE/Telegram on http://127.0.0.1:{http.port}")
    log_path = settings.data_dir / "demo-worker.log"
    with open(log_path, "w") as log:
        worker = subprocess.Popen(
            [sys.executable, "-m", "workers.cli", "worker", "--beat", "--concurrency", "2"],
            stdout=log, stderr=subprocess.STDOUT, env=os.environ.copy(),
        )
    print(f"  worker: pid {worker.pid} (log {log_path})")
    try:
        if not _wait_until_ready(worker, log_path, timeout):
            print(f"the worker did not start (exit {worker.returncode}); see {log_path}")
            return 1
        run = datetime.now(UTC).strftime("d%H%M%S")
        lines = sample_events(run, buyers, runtime.clock())
        rejected: list[tuple[int, str]] = []
        report = emit_lines(runtime, (("demo", n, text) for n, text in enumerate(lines, 1)),
                            lambda _s, n, reason: rejected.append((n, reason)))
        with session_scope(runtime.database_url) as session:
            new_events = _events_stored(session, run)
        print(f"\nFed {len(lines)} lines: accepted {report.accepted}, rejected {report.rejected}")
        repeats = report.accepted - new_events
        print(f"  {new_events} new events stored" + (f", and {repeats} repeat of an event already received (a webhook "
                                                     "delivered twice): acknowledged, stored once" if repeats else ""))
        for number, reason in rejected:
            on_purpose = " (broken on purpose, to show a rejection; `encore dead-letters` lists it)" \
                if lines[number - 1] == BROKEN_LINE else ""
            print(f"  rejected line {number}{on_purpose}: {reason}")
        if not report.accepted:  # nothing to wait for (a shops file without a `default` shop rejects them all)
            print("no sample event was accepted: nothing to deliver")
            return 1
        started = time.monotonic()
        last = ""
        while True:
            with session_scope(runtime.database_url) as session:
                snapshot = status(session)
                left = _work_left(session, runtime.clock())
            states = ", ".join(f"{k} {v}" for k, v in snapshot["deliveries"].items() if v) or "no deliveries yet"
            line = f"{states} | work left {left}"
            if line != last:
                print(f"[{time.monotonic() - started:5.1f}s] {line}")
                last = line
            if left == 0 and sum(snapshot["deliveries"].values()) > 0:
                break
            if worker.poll() is not None:
                print(f"the worker stopped (exit {worker.returncode}); see {log_path}")
                return 1
            if time.monotonic() - started > timeout:
                print("demo timed out waiting for the worker")
                return 1
            time.sleep(0.5)
        _summary(snapshot, smtp, http)
        return 0
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(timeout=20)
        except subprocess.TimeoutExpired:
            worker.kill()
        smtp.stop()
        http.stop()


def _wait_until_ready(worker: subprocess.Popen, log_path, timeout: float) -> bool:
    """Wait for the worker's "ready." line, so the timings shown are the pipeline's,
    not the worker's start-up; False if it exits or does not get ready in time."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and worker.poll() is None:
        if " ready." in log_path.read_text(errors="replace"):
            return True
        time.sleep(0.2)
    return False


def _events_stored(session, run: str) -> int:
    """Events of this demo run now in the inbox (a repeated id is stored once)."""
    from sqlalchemy import func, select

    from store.models import InboxEvent

    return session.scalar(select(func.count()).where(InboxEvent.id.startswith(f"{run}-"))) or 0


def _summary(snapshot: dict, smtp: SmtpSink, http: HttpSink) -> None:
    deliveries = snapshot["deliveries"]
    print("\nSummary")
    print(f"  sent {deliveries['sent']}  scheduled {deliveries['scheduled']} (waiting for the end of the customer's "
          f"quiet hours)  suppressed {deliveries['suppressed']}  expired {deliveries['expired']}  failed {deliveries['failed']}")
    print(f"  provider stand-ins received: {smtp.count} emails, {http.count} SMS/chat messages")
    latency = snapshot["latency_seconds"]
    print(f"  latency due → sent: p50 {latency['p50']:.1f}s, p99 {latency['p99']:.1f}s (a coupon is due when its "
          "order is paid or its livestream ends,\n    or at the end of the customer's quiet hours; each step here waits "
          "for the embedded broker, which is read about once a second)")
    shown = 0
    for mail in smtp.messages[:2]:
        print(f"\n── email to {mail['To']} ──\nSubject: {mail['Subject']}\n{_plain_text(mail)}")
        shown += 1
    for request in http.requests[:3]:
        body = request.json or {}
        print(f"\n── {request.path.split('/')[1]} to {request.path.split('/')[-1]} ──\n{body.get('message', '').strip()}")
        shown += 1
    print("\nNow try: encore status   ·   encore deliveries   ·   encore deliveries --json")


def _plain_text(mail) -> str:
    """The text part of a demo email (every email Encore sends has one)."""
    part = mail.get_body(("plain",))
    return "(no text part)" if part is None else part.get_content().strip()
