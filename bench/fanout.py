"""Fan-out throughput: one livestream with N buyers ends; how fast do N messages go out?

    python -m bench fanout --buyers 20000
    python -m bench fanout --buyers 500 --channel whatsapp --latency-ms 150

What one run does (every process it starts is stopped at the end, also on Ctrl-C):

1. a fresh PostgreSQL database `encore_bench_<random>` (dropped unless --keep),
   Redis db 12 flushed and used as the broker, a temporary ENCORE_DATA_DIR;
2. a counting provider stand-in in its own process, the only channel, answering each
   message after --latency-ms: an SMTP sink (bench.smtpsink) for
   ENCORE_CHANNEL_EMAIL=mailto://127.0.0.1:P?from=shop@example.com&to={email}, or with
   --channel whatsapp an HTTP endpoint (bench.httpsink) for
   ENCORE_CHANNEL_WHATSAPP=json://127.0.0.1:P/wa/{whatsapp} and Brazilian buyers who
   consented to WhatsApp only;
3. the raw capacity of that endpoint in the same run: --raw-connections (32) plain
   keep-alive connections (smtplib with the pipeline's own email bytes, or http.client
   POSTing what Apprise's json:// posts), threads over W client processes, sending for
   --raw-seconds; for email also W connections building each email with
   channels.smtp.build_email;
4. the production layout of the README/Procfile: one `encore worker --concurrency W`
   (W prefork children send) and one `encore beat` (the relay tick); or, with
   --layout processes, W `encore worker --concurrency 1 -n wK@%h` processes;
5. loading, not measured: N `order.paid` events of one stream through
   `encore emit FILE`, waited for until N orders are stored and nothing is planned;
6. the measured window: `stream.ended` is emitted (services.emit.emit_lines, the
   path `encore emit` takes), then the sink is polled until it holds N messages;
7. checks: the sink got exactly N messages for N distinct recipients, and N
   deliveries are `sent`; then CPU seconds per role over the window, so the
   bottleneck shows (workers, PostgreSQL, sink, Redis), and the figures as JSON.

`--py-spy DIR` records the workers with py-spy over the window (raw collapsed
stacks, one file per worker) for profiling.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from bench.harness import (
    PROJECT_DIR,
    STALL_SECONDS,
    Stack,
    cpu_by_role,
    iso,
    log,
    machine_load,
    run_bench,
    task_times,
)

STREAM_ID = "bench-live-1"


# --------------------------------------------------------------------------- helpers


def order_paid(i: int, occurred_at: datetime, timezone: str, channel: str = "email") -> dict:
    """An order of buyer i; `channel` "whatsapp" makes a Brazilian buyer (latin_america:
    WhatsApp first) who consented to WhatsApp only."""
    if channel == "whatsapp":
        event = order_paid(i, occurred_at, timezone)
        event["data"]["currency"] = "BRL"
        event["data"]["customer"].update(country="BR", consent=["whatsapp"], whatsapp=f"+55119{i:08d}")
        del event["data"]["customer"]["email"]
        return event
    return {
        "id": f"bench-order-paid-{i}",
        "type": "order.paid",
        "occurred_at": iso(occurred_at),
        "data": {
            "order_id": f"bench-order-{i}",
            "stream_id": STREAM_ID,
            "currency": "USD",
            "customer": {
                "id": f"bench-customer-{i:07d}",
                "name": f"Buyer {i}",
                "country": "US",
                "timezone": timezone,
                "email": f"buyer{i}@example.com",
                "consent": ["email"],
            },
            "items": [{"sku": "shampoo", "name": "Shampoo", "unit_price": "20.00", "quantity": 1,
                       "refill_sku": "shampoo-refill"}],
        },
    }


def stream_ended(occurred_at: datetime) -> dict:
    return {"id": "bench-stream-ended", "type": "stream.ended", "occurred_at": iso(occurred_at),
            "data": {"stream_id": STREAM_ID}}


# --------------------------------------------------------------------------- raw capacity


def _raw_process(kind: str, host: str, port: int, payload, name: str, connections: int, seconds: float,
                 go, ready) -> None:
    """One client process holding `connections` plain keep-alive connections (one thread
    each) that send back to back for `seconds` after `go`: smtplib with prebuilt bytes
    ("smtp"), channels.smtp building each email ("smtp-build"), or http.client POSTs ("http")."""
    errors: list[BaseException] = []

    def loop(thread: int) -> None:
        try:
            send = _raw_sender(kind, host, port, payload, f"{name}-{thread}")
            ready.release()
            go.wait()
            deadline, k = time.time() + seconds, 0
            while time.time() < deadline:
                send(k)
                k += 1
        except BaseException as exc:  # noqa: BLE001 - reported through the exit code
            errors.append(exc)

    import threading

    threads = [threading.Thread(target=loop, args=(t,)) for t in range(connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]

def _raw_sender(kind: str, host: str, port: int, payload, name: str) -> Callable[[int], None]:
    """One connection of `_raw_process` and how it sends message `k` on it."""
    import http.client
    import smtplib

    if kind == "smtp":
        smtp = smtplib.SMTP(host, port, timeout=30)
        smtp.ehlo()

        def send_raw(k: int) -> None:
            smtp.sendmail("shop@example.com", [f"raw-{name}-{k}@example.com"], payload)
        return send_raw
    if kind == "smtp-build":
        from channels.smtp import SmtpConnection, SmtpSettings

        built = SmtpConnection(SmtpSettings(host=host, port=port, secure_mode="insecure", user=None,
                                            password=None, from_name=None, from_addr="shop@example.com"))

        def send_built(k: int) -> None:
            if not built.send(f"raw-{name}-{k}@example.com", payload).ok:
                raise RuntimeError("raw send failed")
        return send_built
    http_connection = http.client.HTTPConnection(host, port, timeout=30)

    def send_post(k: int) -> None:
        http_connection.request("POST", f"/wa/raw-{name}-{k}", body=payload, headers={"Content-Type": "application/json"})
        response = http_connection.getresponse()
        response.read()
        if response.status != 200:
            raise RuntimeError(f"raw POST answered {response.status}")
    return send_post


# --------------------------------------------------------------------------- the run


@dataclass
class Figures:
    buyers: int
    load_emit_seconds: float = 0.0
    load_seconds: float = 0.0
    raw_rate: float = 0.0
    raw_build_rate: float | None = None
    message_bytes: int = 0
    planning_seconds: float | None = None
    first_message_seconds: float | None = None
    last_message_seconds: float | None = None
    sent_during_planning: int = 0
    codes_seconds: float | None = None  # --shop: the last code existed in the shop (max code_synced_at)
    shop: dict = field(default_factory=dict)  # --shop: the stand-in's traffic (requests, throttled, lowest bucket)
    cpu: dict[str, float] = field(default_factory=dict)
    checks: dict[str, bool] = field(default_factory=dict)

    @property
    def pipeline_rate(self) -> float:
        return self.buyers / self.last_message_seconds if self.last_message_seconds else 0.0

    @property
    def ratio(self) -> float:
        return self.pipeline_rate / self.raw_rate if self.raw_rate else 0.0


class FanoutBench(Stack):
    name = "fanout"

    def __init__(self, args: argparse.Namespace) -> None:
        super().__init__(args)
        self.buyers = args.buyers
        self.figures = Figures(args.buyers)
        self.channel = args.channel
        self.currency = "USD" if args.channel == "email" else "BRL"

    def sample_message(self, channel: str):
        """The message the pipeline will send to one buyer, rendered the pipeline's way."""
        from decimal import Decimal

        from coupons.messages import render_message, resolve_language
        from coupons.model import MessageContext, Offer

        language, locale = resolve_language(None, "en" if channel == "email" else "pt")
        offer = Offer(type="refill", sku="shampoo-refill", product_name="Shampoo", currency=self.currency,
                      price=Decimal("14.00"), regular_price=Decimal("20.00"))
        return render_message(MessageContext(
            language=language, locale=locale, customer_name="Buyer 12345", offer=offer, code="K7QW-9XMT-4RZP-H2",
            expires_at=datetime.now(UTC) + timedelta(days=7), timezone="America/New_York", framing="urgency",
        ), channel)

    def measure_raw(self) -> None:
        """The endpoint's capacity with plain clients, in this run: --raw-connections keep-alive
        connections (threads over --workers client processes) sending for --raw-seconds."""
        import multiprocessing

        from channels.smtp import SmtpSettings, build_email

        if self.channel == "email":
            message = self.sample_message("email")
            settings = SmtpSettings(host="127.0.0.1", port=self.sink_port, secure_mode="insecure", user=None,
                                    password=None, from_name=None, from_addr="shop@example.com")
            data = build_email(message, settings, "buyer12345@example.com")
            runs = [("raw", "smtp", data, self.args.raw_connections),
                    ("raw_build", "smtp-build", message, self.args.workers)]
        else:
            message = self.sample_message("whatsapp")
            # What Apprise's json:// plugin posts.
            data = json.dumps({"version": "1.0", "title": "", "message": message.text, "attachments": [],
                               "type": "info"}).encode()
            runs = [("raw", "http", data, self.args.raw_connections)]
        self.figures.message_bytes = len(data)
        context = multiprocessing.get_context("spawn")
        processes = max(1, min(self.args.workers, self.args.raw_connections))
        for label, kind, payload, connections in runs:
            self.sink("reset")
            go, ready = context.Event(), context.Semaphore(0)
            share = [connections // processes + (1 if c < connections % processes else 0) for c in range(processes)]
            procs = [context.Process(target=_raw_process, args=(kind, "127.0.0.1", self.sink_port, payload, f"p{c}",
                                                                share[c], self.args.raw_seconds, go, ready),
                                     daemon=True)
                     for c in range(processes) if share[c]]
            for p in procs:
                p.start()
            for _ in range(connections):
                if not ready.acquire(timeout=60):
                    raise RuntimeError(f"{label}: the client connections did not open")
            self.sink("reset")
            started = time.time()
            go.set()
            for p in procs:
                p.join()
                if p.exitcode != 0:
                    raise RuntimeError(f"{label}: a client process failed (exit {p.exitcode})")
            status = self.sink("reset")
            rate = status["count"] / (status["last_at"] - started) if status["count"] else 0.0
            log(f"{label} ({kind}): {status['count']} messages of {len(data)} bytes over {connections} connections "
                f"in {self.args.raw_seconds:g}s: {rate:,.0f} msg/s")
            setattr(self.figures, f"{label}_rate", rate)

    def load(self) -> None:
        from coupons.timing import zone_at_local_hour

        now = datetime.now(UTC)
        timezone = zone_at_local_hour(13, now)  # 13:00 there now: outside every market's quiet hours
        ordered_at = now - timedelta(minutes=10)
        path = self.data_dir / "orders.jsonl"
        with open(path, "w") as out:
            for i in range(self.buyers):
                out.write(json.dumps(order_paid(i, ordered_at, timezone, self.channel), separators=(",", ":")) + "\n")
        log(f"loading {self.buyers} order.paid events (customer zone {timezone}, "
            f"local time {now.astimezone(ZoneInfo(timezone)):%H:%M}) via `encore emit`")
        started = time.monotonic()
        emit = subprocess.run([str(Path(sys.executable).with_name("encore")), "emit", str(path)], cwd=PROJECT_DIR,
                              env=self.env(), capture_output=True, text=True)
        self.figures.load_emit_seconds = time.monotonic() - started
        if emit.returncode != 0:
            raise RuntimeError(f"encore emit failed ({emit.returncode}): {emit.stdout} {emit.stderr[-2000:]}")
        log(f"  encore emit: {emit.stdout.strip()} in {self.figures.load_emit_seconds:.1f}s "
            f"({self.buyers / self.figures.load_emit_seconds:,.0f} events/s stored)")
        last_change, last = time.monotonic(), -1
        while True:
            orders = self.scalar("select count(*) from orders")
            unapplied = self.scalar("select count(*) from events where processed_at is null")
            if orders >= self.buyers and unapplied == 0:
                break
            if orders != last:
                last_change, last = time.monotonic(), orders
            elif time.monotonic() - last_change > STALL_SECONDS:
                raise RuntimeError(f"loading stalled at {orders} orders")
            self.check_alive()
            time.sleep(0.25)
        self.figures.load_seconds = time.monotonic() - started
        deliveries = self.scalar("select count(*) from deliveries")
        if deliveries:
            raise RuntimeError(f"{deliveries} deliveries planned before the stream ended")
        log(f"  {orders} orders stored and applied in {self.figures.load_seconds:.1f}s "
            f"({self.buyers / self.figures.load_seconds:,.0f} orders/s end to end); 0 deliveries")

    def measure(self) -> None:
        from services.emit import emit_lines
        from tasks.app import compose

        self.sink("reset")
        profilers = self.start_profilers()
        runtime = compose()
        cpu_before = cpu_by_role(self.roots())
        line = json.dumps(stream_ended(datetime.now(UTC)))
        started = time.time()
        report = emit_lines(runtime, [("bench", 1, line)], lambda *reject: None)
        if report.accepted != 1:
            raise RuntimeError(f"stream.ended not accepted: {report}")
        log("stream.ended emitted: measuring")
        planned_at = None
        planned = 0
        next_db, next_print = 0.0, time.monotonic() + 5
        progress, last_change = None, time.monotonic()
        while True:
            status = self.sink()
            if planned_at is None and time.monotonic() >= next_db:
                next_db = time.monotonic() + 0.25
                planned = self.scalar("select count(*) from deliveries")
                if planned >= self.buyers:
                    planned_at = time.time()
                    self.figures.planning_seconds = planned_at - started
                    self.figures.sent_during_planning = status["count"]
                    log(f"  planning done: {self.buyers} deliveries at +{self.figures.planning_seconds:.1f}s "
                        f"({status['count']} already sent)")
            if status["count"] >= self.buyers:
                break
            # Stalled = neither planning nor sending moved (sending may wait for planning).
            if (status["count"], planned) != progress:
                progress, last_change = (status["count"], planned), time.monotonic()
            elif time.monotonic() - last_change > STALL_SECONDS:
                raise RuntimeError(f"stalled: {status['count']} sent, {planned} planned of {self.buyers}")
            if time.monotonic() >= next_print:
                next_print = time.monotonic() + 5
                elapsed = time.time() - started
                log(f"  +{elapsed:5.1f}s sink {status['count']:>7} ({status['count'] / elapsed:,.0f}/s so far)"
                    + (f", planned {planned}" if planned_at is None else ""))
                self.check_alive()
            time.sleep(0.05)
        cpu_after = cpu_by_role(self.roots())
        self.stop_profilers(profilers)
        self.figures.first_message_seconds = status["first_at"] - started
        self.figures.last_message_seconds = status["last_at"] - started
        window = self.figures.last_message_seconds
        self.figures.cpu = {role: (cpu_after.get(role, 0.0) - spent) / window for role, spent in cpu_before.items()}
        if planned_at is None and self.scalar("select count(*) from deliveries") >= self.buyers:
            # Planned between the last poll and the last message: an upper bound.
            self.figures.planning_seconds = time.time() - started
            self.figures.sent_during_planning = status["count"]
        self.started_at = started
        self.tasks = task_times(sorted(self.data_dir.glob("worker-*.log")), started, status["last_at"])
        log(f"  sink got message {self.buyers} at +{window:.2f}s")

    def verify(self) -> None:
        time.sleep(self.args.settle)  # anything beyond N would be a duplicate
        deadline = time.monotonic() + 30
        while True:
            states = dict(self.sql("select state, count(*) from deliveries group by state"))
            if states.get("sent", 0) >= self.buyers or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        status = self.sink()
        attempts = self.scalar("select count(*) from attempts")
        checks = {
            f"sink received exactly {self.buyers} messages (got {status['count']})": status["count"] == self.buyers,
            f"distinct recipients = {self.buyers} (got {status['distinct']})": status["distinct"] == self.buyers,
            f"deliveries sent = {self.buyers} (states {states})": states.get("sent", 0) == self.buyers
            and sum(states.values()) == self.buyers,
            f"attempts = {self.buyers} (got {attempts})": attempts == self.buyers,
        }
        if self.args.shop != "none":
            checks.update(self.verify_shop())
        self.figures.checks = checks
        self.sink_sessions = status["sessions"]

    def verify_shop(self) -> dict[str, bool]:
        """Rule 15 at scale: every code is in the shop, none was sent before it existed
        (the send claim refuses it; checked here from the rows), the shop never throttled."""
        from bench.shop import shop_get

        last_synced = self.scalar("select extract(epoch from max(code_synced_at)) from coupons")
        self.figures.codes_seconds = float(last_synced) - self.started_at if last_synced else None
        early = self.scalar("select count(*) from deliveries d join coupons c on c.id = d.coupon_id "
                            "where c.code_synced_at is null or d.sent_at < c.code_synced_at")
        codes = set(shop_get(self, "codes")["codes"])
        ours = {code for (code,) in self.sql("select code from coupons")}
        stats = shop_get(self, "stats")
        self.figures.shop = {key: stats[key] for key in ("requests", "throttled", "lowest_available", "mutations")}
        self.figures.shop["bulk_adds"] = len(stats["bulk_add_sizes"])
        return {
            f"every code exists in the shop ({len(ours & codes)} of {len(ours)})": ours <= codes,
            f"no message sent before its code existed ({early} early)": early == 0,
            f"the shop never throttled ({stats['throttled']} THROTTLED)": stats["throttled"] == 0,
        }

    def timeline(self) -> tuple[float, float]:
        """Planning chunks as the coupons stamp them: each chunk's `now` (its start), from the window start."""
        first, last = self.sql("select extract(epoch from min(created_at)), extract(epoch from max(created_at)) "
                               "from coupons")[0]
        return float(first) - self.started_at, float(last) - self.started_at

    # ----------------------------------------------------------------- report

    def report(self) -> int:
        f = self.figures
        print()
        layout = (f"`encore worker --concurrency {self.args.workers}`" if self.args.layout == "prefork"
                  else f"{self.args.workers} x `encore worker --concurrency 1`")
        endpoint = (f"SMTP sink (aiosmtpd{', PIPELINING' if self.args.smtp_pipelining else ''})"
                    if self.channel == "email"
                    else "HTTP endpoint (WhatsApp-like, json:// channel)")
        print(f"fanout: {f.buyers} buyers of one stream; {layout} + `encore beat`; PostgreSQL, Redis broker, "
              f"{endpoint} answering after {self.args.latency_ms:g} ms"
              + (f"; database SET {', '.join(self.args.pg_set)}" if self.args.pg_set else ""))
        print(f"  loading (not measured)   encore emit {f.load_emit_seconds:.1f}s "
              f"({f.buyers / f.load_emit_seconds:,.0f} events/s); all applied after {f.load_seconds:.1f}s "
              f"({f.buyers / f.load_seconds:,.0f} orders/s)")
        if self.channel == "email":
            print(f"  message size             {f.message_bytes} bytes (multipart text + html)")
            print(f"  raw SMTP capacity        {f.raw_rate:,.0f} msg/s (smtplib, prebuilt bytes, "
                  f"{self.args.raw_connections} concurrent reused connections); {f.raw_build_rate:,.0f} msg/s "
                  f"building each with channels.smtp.build_email over {self.args.workers} connections")
        else:
            print(f"  message size             {f.message_bytes} bytes (JSON body)")
            print(f"  raw HTTP capacity        {f.raw_rate:,.0f} msg/s (http.client POSTs, "
                  f"{self.args.raw_connections} concurrent keep-alive connections)")
        if f.planning_seconds is not None:
            print(f"  planning done            +{f.planning_seconds:.1f}s ({f.buyers / f.planning_seconds:,.0f} "
                  f"deliveries/s; {f.sent_during_planning} sent meanwhile)")
        else:
            print("  planning done            not observed before the last message")
        first_chunk, last_chunk = self.timeline()
        print(f"  planning chunks          first started +{first_chunk:.2f}s, last started +{last_chunk:.2f}s "
              f"(coupons.created_at)")
        if f.codes_seconds is not None:
            shop = f.shop
            print(f"  codes in the shop        last at +{f.codes_seconds:.2f}s ({shop['requests']} Admin API calls, "
                  f"{shop['bulk_adds']} bulk adds, lowest bucket {shop['lowest_available']} points, "
                  f"{shop['throttled']} THROTTLED)")
        print(f"  first message            +{f.first_message_seconds:.2f}s")
        print(f"  last message             +{f.last_message_seconds:.2f}s")
        print(f"  pipeline                 {f.pipeline_rate:,.0f} msg/s   ratio pipeline/raw {f.ratio:.2f}"
              + (f" (vs raw + build_email {f.pipeline_rate / f.raw_build_rate:.2f})" if f.raw_build_rate else ""))
        planning, last = f.planning_seconds, f.last_message_seconds
        if planning is not None and last is not None and last > planning:
            after = (f.buyers - f.sent_during_planning) / (last - planning)
            during = f.sent_during_planning / planning
            print(f"  send rate                {during:,.0f} msg/s while planning, {after:,.0f} msg/s after")
        print(f"  {'SMTP sessions' if self.channel == 'email' else 'HTTP connections':<25}{self.sink_sessions}")
        busy = ", ".join(f"{name} {count}x {seconds:.1f}s" + (f" ({seconds / total * 1000:.2f} ms/item)" if total else "")
                         for name, (count, seconds, total) in self.tasks.items())
        print(f"  worker task time         {busy}")
        print("  CPU over the window      " + ", ".join(f"{role} {cores:.2f}" for role, cores in f.cpu.items())
              + f" cores (of {os.cpu_count()})")
        print(f"  machine load             {self.load_before} before, {machine_load()} after (1/5/15 min)")
        ok = all(f.checks.values())
        for text, passed in f.checks.items():
            print(f"  check {'ok  ' if passed else 'FAIL'}               {text}")
        self.write_json({
            "scenario": "fanout", "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "command": "python -m bench fanout " + " ".join(self.argv), "channel": self.channel,
            "latency_ms": self.args.latency_ms, "raw_connections": self.args.raw_connections,
            "smtp_pipelining": self.args.smtp_pipelining,
            "workers": self.args.workers, "layout": self.args.layout, "shop": self.args.shop, **asdict(f),
            "pipeline_rate": round(f.pipeline_rate, 1), "ratio": round(f.ratio, 3),
            "load_average_before": self.load_before, "load_average_after": machine_load(),
        })
        extra = "".join(f"{name}={value} " for name, value in (("pg", ",".join(self.args.pg_set)),) if value)
        print(f"fanout buyers={f.buyers} channel={self.channel} shop={self.args.shop} "
              + (f"codes={f.codes_seconds:.1f}s " if f.codes_seconds is not None else "") + f"latency={self.args.latency_ms:g}ms {extra}pipeline={f.pipeline_rate:.0f} msg/s raw={f.raw_rate:.0f} msg/s "
              f"ratio={f.ratio:.2f} last={f.last_message_seconds:.1f}s "
              f"planning={'?' if f.planning_seconds is None else f'{f.planning_seconds:.1f}s'} "
              f"checks={'ok' if ok else 'FAILED'}")
        return 0 if ok else 1

    def run(self) -> int:
        self.load_before = machine_load()
        self.flush_redis()
        self.create_database()
        self.start_sink(self.args.latency_ms, "smtp" if self.channel == "email" else "http",
                        ("--pipelining",) if self.args.smtp_pipelining else ())
        if self.channel == "email":
            self.channels = {
                "ENCORE_CHANNEL_EMAIL": f"mailto://127.0.0.1:{self.sink_port}?from=shop@example.com&to={{email}}"}
        else:  # a WhatsApp-like HTTP API; the recipient in the path (Apprise's json:// drops query arguments)
            self.channels = {"ENCORE_CHANNEL_WHATSAPP": f"json://127.0.0.1:{self.sink_port}/wa/{{whatsapp}}"}
        if self.args.shop == "shopify":
            from bench.shop import start_shopify

            self.channels.update(start_shopify(self, {"shampoo": "20.00", "shampoo-refill": "20.00"}))
        os.environ.clear()
        os.environ.update(self.env())  # for the in-process emit of stream.ended
        from store.db import engine_for

        engine_for(self.db_url)  # schema via Alembic, before the workers race for it
        self.measure_raw()
        self.start_pipeline()
        self.load()
        self.measure()
        self.verify()
        return self.report()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench fanout",
        description="Time N coupon emails after one livestream with N buyers ends, against the raw SMTP capacity.",
    )
    parser.add_argument("--buyers", type=int, default=10_000, help="buyers in the stream (default 10000)")
    parser.add_argument("--workers", type=int, default=2,
                        help="sending processes: prefork children (or worker processes, see --layout); also the "
                             "number of raw-capacity client processes (default 2)")
    parser.add_argument("--layout", choices=("prefork", "processes"), default="prefork",
                        help="prefork (default, as the Procfile): one `encore worker --concurrency W`; "
                             "processes: W x `encore worker --concurrency 1 -n wK@%%h`")
    parser.add_argument("--keep", action="store_true", help="keep the database and data dir (logs) afterwards")
    parser.add_argument("--settle", type=float, default=2.0,
                        help="seconds to wait after the N-th message before counting duplicates (default 2)")
    parser.add_argument("--pg-set", metavar="NAME=VALUE", action="append", default=[],
                        help="experiment: ALTER DATABASE <bench db> SET NAME = VALUE (e.g. random_page_cost=1.1); "
                             "repeatable")
    parser.add_argument("--py-spy", metavar="DIR", help="record the workers with py-spy over the window into DIR")
    parser.add_argument("--channel", choices=("email", "whatsapp"), default="email",
                        help="email: US buyers, an SMTP sink (default); whatsapp: Brazilian buyers with WhatsApp "
                             "consent only, an HTTP endpoint (ENCORE_CHANNEL_WHATSAPP=json://…/wa/{whatsapp})")
    parser.add_argument("--latency-ms", type=float, default=0.0,
                        help="the endpoint answers each message after this delay (default 0)")
    parser.add_argument("--smtp-pipelining", action="store_true",
                        help="the SMTP stand-in advertises PIPELINING, so Encore sends MAIL, RCPT and DATA in one "
                             "write (the raw clients, plain smtplib, do not pipeline)")
    parser.add_argument("--raw-connections", type=int, default=32,
                        help="concurrent plain connections for the raw capacity (default 32)")
    parser.add_argument("--raw-seconds", type=float, default=8.0,
                        help="how long each raw-capacity measurement sends (default 8)")
    parser.add_argument("--shop", choices=("none", "shopify"), default="none",
                        help="shopify: the buyers' shop is on Shopify (the Admin API stand-in, 100 ms per call, "
                             "a 1,000-point bucket restored at 100/s): every code is made there before it is sent; "
                             "also measures when the last code existed (default none)")
    parser.add_argument("--sync-worker", action="store_true",
                        help="with --shop: code sync runs in a worker of its own (`encore worker -Q sync -P threads "
                             "--concurrency 4`), and the senders' worker reads every other queue")
    parser.add_argument("--json-out", metavar="PATH",
                        help="write the figures here (default: a file under $TMPDIR/encore-bench/, printed)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.buyers < 1 or args.workers < 1 or args.raw_connections < 1:
        print("--buyers, --workers and --raw-connections must be >= 1", file=sys.stderr)
        return 2
    bench = FanoutBench(args)
    bench.argv = list(argv if argv is not None else sys.argv[2:])
    return run_bench(bench)
