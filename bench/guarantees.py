"""Guarantees under load: `python -m bench crash` and `python -m bench outage`.

    python -m bench crash  [--buyers 20000]            # SIGKILL the worker 3x, lose the broker's queue once
    python -m bench outage [--buyers 2000] [--outage-seconds 60]   # the chat API answers 503, then recovers

Both run the production layout (`encore worker --concurrency 2` + `encore beat`,
each in its own process group) on a fresh PostgreSQL database and Redis (db 12, or
ENCORE_BENCH_REDIS_DB), against stand-in providers in this process
(channels.sinks), and print their figures and write them as JSON (--json-out,
default /tmp/encore-bench/<scenario>-<time>.json). Exit 0 when every check passed.

crash: N buyers of one livestream by email; the SMTP stand-in takes 20 ms per
recipient so the kills land mid-send. While sending, the worker is killed with
SIGKILL three times (at 20%, 40%, 60% of N) and restarted; at the second kill the
broker's queue is lost too (FLUSHDB of the bench's Redis db: the shared Redis server
itself is not restarted on this machine). Reports recipients with exactly one sent
delivery (target N), duplicates at the endpoint (target 0; a duplicate is a message
the server accepted whose result the killed worker had not yet recorded — the window
README "Crash safety" documents), and sends after the deadline (target 0). The lease
is 10 s so that rows of a killed worker come back quickly.

outage: N buyers (Brazil, WhatsApp only) whose API answers every request 503 for
--outage-seconds, then 200. Reports deliveries sent (target N), sent before the
recovery (target 0), failed (target 0), sent after the deadline (target 0) and how
long after the recovery the last one went out. Retries start at 5 s
(ENCORE_RETRY_BASE_SECONDS) and may take 10 attempts, so a 60 s outage fits.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

ADMIN_DSN = "postgresql://postgres@127.0.0.1:5432/test"
PG_BASE = "postgresql://postgres@127.0.0.1:5432"
REDIS_URL = f"redis://127.0.0.1:6379/{int(os.environ.get('ENCORE_BENCH_REDIS_DB', '12'))}"
PROJECT_DIR = Path(__file__).resolve().parent.parent
RESULTS_DIR = Path(tempfile.gettempdir()) / "encore-bench"
STALL_SECONDS = 120.0


def log(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", flush=True)


def iso(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class Run:
    """One scenario's database, stand-ins and `encore` processes; cleaned up on exit."""

    def __init__(self, name: str, env: dict[str, str]) -> None:
        import psycopg

        self.name = name
        self.data_dir = Path(tempfile.mkdtemp(prefix=f"encore-bench-{name}-"))
        self.db_name = f"encore_bench_{secrets.token_hex(4)}"
        self.db_url = f"{PG_BASE}/{self.db_name}"
        with psycopg.connect(ADMIN_DSN, autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{self.db_name}"')
        self._db = psycopg.connect(self.db_url, autocommit=True)
        self.extra_env = env
        self.processes: dict[str, subprocess.Popen] = {}
        import redis

        redis.Redis.from_url(REDIS_URL).flushdb()
        from store.db import engine_for

        engine_for(self.db_url)  # the schema, before the workers race for it

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("ENCORE_")}
        env.update({"ENCORE_DATABASE_URL": self.db_url, "ENCORE_BROKER_URL": REDIS_URL,
                    "ENCORE_DATA_DIR": str(self.data_dir), "PYTHONUNBUFFERED": "1", **self.extra_env})
        return env

    def encore(self, *args: str) -> list[str]:
        return [str(Path(sys.executable).with_name("encore")), *args]

    def start(self, role: str, argv: list[str]) -> None:
        log_path = self.data_dir / f"{role}.log"
        with open(log_path, "ab") as out:
            offset = out.tell()
            self.processes[role] = subprocess.Popen(argv, cwd=PROJECT_DIR, env=self.env(), stdout=out,
                                                    stderr=subprocess.STDOUT, start_new_session=True)
        if role.startswith("worker"):
            deadline = time.monotonic() + 60
            while " ready." not in log_path.read_text(errors="replace")[offset:]:
                if self.processes[role].poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"{role} did not start; see {log_path}")
                time.sleep(0.1)

    def kill(self, role: str) -> None:
        process = self.processes.pop(role)
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.wait()

    def emit(self, events: list[dict]) -> None:
        path = self.data_dir / f"events-{secrets.token_hex(3)}.jsonl"
        path.write_text("".join(json.dumps(e, separators=(",", ":")) + "\n" for e in events))
        done = subprocess.run(self.encore("emit", str(path)), cwd=PROJECT_DIR, env=self.env(), capture_output=True,
                              text=True)
        if done.returncode != 0:
            raise RuntimeError(f"encore emit failed: {done.stdout} {done.stderr[-2000:]}")

    def scalar(self, query: str):
        row = self._db.execute(query).fetchone()
        assert row is not None, query
        return row[0]

    def wait(self, what: str, predicate, timeout: float = STALL_SECONDS) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            for role, process in self.processes.items():
                if process.poll() is not None:
                    raise RuntimeError(f"{role} exited with {process.returncode}; see {self.data_dir}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"timed out waiting for {what}")
            time.sleep(0.1)

    def close(self, keep: bool = False) -> None:
        for role in list(self.processes):
            process = self.processes.pop(role)
            try:
                os.killpg(process.pid, signal.SIGTERM)
                process.wait(timeout=20)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                try:
                    os.killpg(process.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        self._db.close()
        if keep:
            log(f"kept: database {self.db_url}, data dir {self.data_dir}")
            return
        from store.db import engine_for

        engine_for.cache_clear()
        import psycopg

        with psycopg.connect(ADMIN_DSN, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{self.db_name}" WITH (FORCE)')
        shutil.rmtree(self.data_dir, ignore_errors=True)


def orders(prefix: str, buyers: int, *, stream_id: str | None, **customer) -> list[dict]:
    from coupons.timing import zone_at_local_hour

    now = datetime.now(UTC)
    zone = zone_at_local_hour(13, now)  # daytime there: no quiet hours
    events = []
    for i in range(buyers):
        data = {"order_id": f"{prefix}-order-{i}", "currency": customer.get("currency", "USD"),
                "customer": {"id": f"{prefix}-{i:06d}", "name": f"Buyer {i}", "country": customer.get("country", "US"),
                             "timezone": zone, "consent": customer["consent"],
                             **{field: template.format(i=i) for field, template in customer["address"].items()}},
                "items": [{"sku": "shampoo", "name": "Shampoo", "unit_price": "20.00", "quantity": 1,
                           "refill_sku": "shampoo-refill"}]}
        if stream_id:
            data["stream_id"] = stream_id
        events.append({"id": f"{prefix}-paid-{i}", "type": "order.paid",
                       "occurred_at": iso(now - timedelta(minutes=5)), "data": data})
    return events


def report(scenario: str, figures: dict, checks: dict[str, bool], json_out: str | None) -> int:
    print(f"\n{scenario}:")
    for name, value in figures.items():
        print(f"  {name:<34} {value}")
    for name, ok in checks.items():
        print(f"  check {'ok  ' if ok else 'FAIL'}                     {name}")
    path = Path(json_out) if json_out else RESULTS_DIR / f"{scenario}-{time.strftime('%Y%m%dT%H%M%S')}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"scenario": scenario, "at": iso(datetime.now(UTC)), "figures": figures,
                                "checks": checks, "load": os.getloadavg()}, indent=2))
    print(f"  figures written to {path}")
    return 0 if all(checks.values()) else 1


# --------------------------------------------------------------------------- crash


def crash(args: argparse.Namespace) -> int:
    from channels.sinks import SmtpSink

    buyers = args.buyers
    smtp = SmtpSink().start()
    smtp.rcpt_delay = 0.02
    run = Run("crash", {"ENCORE_CHANNEL_EMAIL": f"mailto://127.0.0.1:{smtp.port}?from=shop@example.com&to={{email}}",
                        "ENCORE_LEASE_SECONDS": "10"})
    try:
        run.start("worker", run.encore("worker", "--concurrency", "2", "-n", "crash@%h"))
        run.start("beat", run.encore("beat"))
        log(f"loading {buyers} buyers of one stream")
        run.emit(orders("crash", buyers, stream_id="crash-live", consent=["email"],
                        address={"email": "buyer{i}@example.com"}))
        run.wait("orders applied", lambda: run.scalar("select count(*) from events where processed_at is null") == 0
                 and run.scalar("select count(*) from orders") == buyers, timeout=900)
        started = time.monotonic()
        run.emit([{"id": "crash-end", "type": "stream.ended", "occurred_at": iso(datetime.now(UTC)),
                   "data": {"stream_id": "crash-live"}}])
        for kill, share in enumerate((0.2, 0.4, 0.6), 1):
            run.wait(f"{share:.0%} sent", lambda share=share: smtp.count >= buyers * share, timeout=600)
            run.kill("worker")
            log(f"kill {kill}: worker SIGKILLed at {smtp.count} messages")
            if kill == 2:
                import redis

                redis.Redis.from_url(REDIS_URL).flushdb()
                log("  the broker lost its queue (FLUSHDB)")
            run.start("worker", run.encore("worker", "--concurrency", "2", "-n", f"crash{kill}@%h"))
        run.wait("every delivery sent", lambda: run.scalar("select count(*) from deliveries where state = 'sent'")
                 == buyers, timeout=600)
        elapsed = time.monotonic() - started
        smtp.wait_for(buyers + 10**9, timeout=args.settle)  # late duplicates, if any, arrive meanwhile
        per_recipient = Counter(r for item in smtp.received for r in item.rcpt_tos)
        exactly_one = run.scalar("select count(*) from (select customer_id from deliveries where state = 'sent' "
                                 "group by customer_id having count(*) = 1) one")
        late = run.scalar("select count(*) from deliveries where sent_at > deadline_at")
        duplicates = sum(n - 1 for n in per_recipient.values())
        figures = {"buyers": buyers, "seconds from stream.ended to the last send": round(elapsed, 1),
                   "recipients with exactly one sent": exactly_one, "messages at the endpoint": smtp.count,
                   "duplicates at the endpoint": duplicates, "sent after the deadline": late,
                   "kills": 3, "broker queue lost": 1}
        checks = {"every recipient exactly one sent delivery": exactly_one == buyers,
                  "every recipient reached": len(per_recipient) == buyers,
                  "no send after its deadline": late == 0,
                  "no duplicate at the endpoint (see README: the accepted-but-unrecorded window)": duplicates == 0}
        return report("crash", figures, checks, args.json_out)
    finally:
        run.close(args.keep)
        smtp.stop()


# --------------------------------------------------------------------------- outage


def outage(args: argparse.Namespace) -> int:
    from channels.sinks import HttpSink

    buyers = args.buyers
    http = HttpSink(record=True).start()
    http.respond("/whatsapp/", [503], forever=True)
    run = Run("outage", {"ENCORE_CHANNEL_WHATSAPP": f"json://127.0.0.1:{http.port}/whatsapp/{{whatsapp}}",
                         "ENCORE_RETRY_BASE_SECONDS": "5", "ENCORE_MAX_ATTEMPTS_PER_CHANNEL": "10"})
    try:
        run.start("worker", run.encore("worker", "--concurrency", "2", "-n", "outage@%h"))
        run.start("beat", run.encore("beat"))
        log(f"{buyers} orders from Brazil, WhatsApp only; the API answers 503 for {args.outage_seconds:.0f}s")
        outage_started = datetime.now(UTC)
        run.emit(orders("outage", buyers, stream_id=None, country="BR", currency="BRL", consent=["whatsapp"],
                        address={"whatsapp": "+55119{i:08d}"}))
        time.sleep(max(0.0, args.outage_seconds - (datetime.now(UTC) - outage_started).total_seconds()))
        sent_during = run.scalar("select count(*) from deliveries where state = 'sent'")
        recovered_at = datetime.now(UTC)
        http.respond("/whatsapp/", [])
        refused = http.count  # after the switch: every request recorded later is answered 200
        log(f"recovered: {refused} requests refused during the outage")
        run.wait("every delivery finished", lambda: run.scalar(
            "select count(*) from deliveries where state in ('sent', 'failed', 'expired')") == buyers, timeout=600)
        last_sent = run.scalar("select max(sent_at) from deliveries")
        sent = run.scalar("select count(*) from deliveries where state = 'sent'")
        failed = run.scalar("select count(*) from deliveries where state in ('failed', 'expired')")
        before = run.scalar(f"select count(*) from deliveries where sent_at < '{iso(recovered_at)}'")
        late = run.scalar("select count(*) from deliveries where sent_at > deadline_at")
        after_recovery = Counter(r.path for r in http.requests[refused:])
        figures = {"buyers": buyers, "outage seconds": args.outage_seconds, "requests refused (503)": refused,
                   "sent": sent, "sent during the outage": sent_during + before, "failed or expired": failed,
                   "sent after the deadline": late,
                   "last send, seconds after recovery": round((last_sent - recovered_at).total_seconds(), 1)
                   if last_sent else None,
                   "recipients sent more than once after recovery": sum(1 for n in after_recovery.values() if n > 1)}
        checks = {"every delivery sent": sent == buyers, "none sent before recovery": sent_during + before == 0,
                  "none failed": failed == 0, "none after its deadline": late == 0,
                  "each recipient once after recovery": figures["recipients sent more than once after recovery"] == 0}
        return report("outage", figures, checks, args.json_out)
    finally:
        run.close(args.keep)
        http.stop()


def main_for(scenario: str, argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=f"python -m bench {scenario}", description=__doc__.split("\n\n")[0])
    parser.add_argument("--buyers", type=int, default=20_000 if scenario == "crash" else 2_000)
    if scenario == "outage":
        parser.add_argument("--outage-seconds", type=float, default=60.0)
    parser.add_argument("--settle", type=float, default=3.0, help="seconds to wait for late duplicates (crash)")
    parser.add_argument("--json-out", help="where to write the figures")
    parser.add_argument("--keep", action="store_true", help="keep the database and logs")
    args = parser.parse_args(argv)

    def interrupted(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, interrupted)
    try:
        return (crash if scenario == "crash" else outage)(args)
    except KeyboardInterrupt:
        log("interrupted; cleaned up")
        return 130
    except RuntimeError as error:
        log(f"error: {error}")
        return 1


def main_crash(argv: list[str] | None = None) -> int:
    return main_for("crash", argv)


def main_outage(argv: list[str] | None = None) -> int:
    return main_for("outage", argv)
