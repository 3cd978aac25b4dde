"""Fan-out throughput: one livestream with N buyers ends; how fast do N emails go out?

    python -m bench fanout --buyers 20000

What one run does (every process it starts is stopped at the end, also on Ctrl-C):

1. a fresh PostgreSQL database `encore_bench_<random>` (dropped unless --keep),
   Redis db 12 flushed and used as the broker, a temporary ENCORE_DATA_DIR;
2. a counting SMTP sink in its own process (bench.smtpsink), the only channel:
   ENCORE_CHANNEL_EMAIL=mailto://127.0.0.1:P?from=shop@example.com&to={email};
3. the raw capacity of that sink: plain smtplib, one reused connection per client
   process, as many client processes as pipeline workers, the pipeline's own
   email bytes (multipart text + html), min(N, 20000) messages;
4. the production layout of the README/Procfile: one `encore worker --concurrency W`
   (W prefork children send) and one `encore beat` (the relay tick); or, with
   --layout processes, W `encore worker --concurrency 1 -n wK@%h` processes;
5. loading, not measured: N `order.paid` events of one stream through
   `encore emit FILE`, waited for until N orders are stored and nothing is planned;
6. the measured window: `stream.ended` is emitted (services.emit.emit_lines, the
   path `encore emit` takes), then the sink is polled until it holds N messages;
7. checks: the sink got exactly N messages for N distinct recipients, and N
   deliveries are `sent`; then CPU seconds per role over the window, so the
   bottleneck shows (workers, PostgreSQL, sink, Redis).

`--py-spy DIR` records the workers with py-spy over the window (raw collapsed
stacks, one file per worker) for profiling.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

ADMIN_DSN = "postgresql://postgres@127.0.0.1:5432/test"
PG_BASE = "postgresql://postgres@127.0.0.1:5432"
REDIS_HOST, REDIS_PORT = "127.0.0.1", 6379
REDIS_DB = int(os.environ.get("ENCORE_BENCH_REDIS_DB", "12"))  # parallel runs on one Redis use different dbs
STREAM_ID = "bench-live-1"
RAW_MAX = 20_000
"""Messages for the raw-capacity measurement: enough for a steady rate (>10 s)."""
STALL_SECONDS = 180.0
"""Give up when the sink count has not moved for this long."""
PROJECT_DIR = Path(__file__).resolve().parent.parent


# --------------------------------------------------------------------------- helpers


def log(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def iso(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def order_paid(i: int, occurred_at: datetime, timezone: str) -> dict:
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


# --------------------------------------------------------------------------- CPU accounting


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _proc_stats() -> dict[int, tuple[str, int, float]]:
    """pid -> (comm, ppid, cpu seconds incl. reaped children) for every process."""
    stats = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            raw = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        comm = raw[raw.index("(") + 1 : raw.rindex(")")]
        fields = raw[raw.rindex(")") + 2 :].split()
        # fields[1] = ppid; [11..14] = utime, stime, cutime, cstime
        cpu = sum(int(v) for v in fields[11:15]) / CLOCK_TICKS
        stats[int(entry)] = (comm, int(fields[1]), cpu)
    return stats


def cpu_by_role(roots: dict[str, list[int]]) -> dict[str, float]:
    """CPU seconds used so far by each role: its root processes and their descendants,
    plus every `postgres` and `redis-server` process on the machine."""
    stats = _proc_stats()
    children: dict[int, list[int]] = defaultdict(list)
    for pid, (_, ppid, _) in stats.items():
        children[ppid].append(pid)
    totals: dict[str, float] = {}
    for role, pids in roots.items():
        seen, stack = set(), list(pids)
        while stack:
            pid = stack.pop()
            if pid in seen or pid not in stats:
                continue
            seen.add(pid)
            stack += children[pid]
        totals[role] = sum(stats[p][2] for p in seen)
    totals["postgres (all)"] = sum(cpu for comm, _, cpu in stats.values() if comm == "postgres")
    totals["redis-server"] = sum(cpu for comm, _, cpu in stats.values() if comm.startswith("redis-server"))
    # Everything else on the machine (other people's tests, this process): the busy
    # time of all CPUs minus the roles above. High values mean a noisy measurement.
    with open("/proc/stat") as f:
        busy = sum(int(v) for i, v in enumerate(f.readline().split()[1:]) if i not in (3, 4)) / CLOCK_TICKS
    totals["other"] = busy - sum(totals.values())
    return totals


TASK_LINE = re.compile(r"^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),(\d{3}): INFO/[^\]]+\] Task ([\w.]+)\[[^\]]+\] "
                       r"succeeded in ([\d.]+)s: (\S+)")


def task_times(log_paths: list[Path], start: float, end: float) -> dict[str, tuple[int, float, int]]:
    """Per task name: (tasks, seconds, summed return values) of the tasks that finished in [start, end]
    and began before `end`, from the workers' INFO log lines."""
    found: dict[str, list] = defaultdict(lambda: [0, 0.0, 0])
    for path in log_paths:
        for line in path.read_text(errors="replace").splitlines():
            match = TASK_LINE.match(line)
            if not match:
                continue
            finished = time.mktime(time.strptime(match[1], "%Y-%m-%d %H:%M:%S")) + int(match[2]) / 1000
            seconds = float(match[4])
            if finished < start or finished - seconds > end:
                continue
            entry = found[match[3].rpartition(".")[2]]
            entry[0] += 1
            entry[1] += seconds
            entry[2] += int(match[5]) if match[5].isdigit() else 0
    return {name: tuple(v) for name, v in sorted(found.items(), key=lambda kv: -kv[1][1])}


# --------------------------------------------------------------------------- raw SMTP capacity


def _raw_client(host: str, port: int, data: bytes, first: int, count: int, go) -> None:
    """One client process: one SMTP connection, `count` messages, distinct recipients."""
    import smtplib

    smtp = smtplib.SMTP(host, port, timeout=30)
    smtp.ehlo()
    go.wait()
    for k in range(first, first + count):
        smtp.sendmail("shop@example.com", [f"raw{k}@example.com"], data)
    smtp.quit()


def _raw_build_client(host: str, port: int, message, first: int, count: int, go) -> None:
    """Like _raw_client, but builds each email with the pipeline's channels.smtp.build_email."""
    from channels.smtp import SmtpConnection, SmtpSettings

    settings = SmtpSettings(host=host, port=port, secure_mode="insecure", user=None, password=None,
                            from_name=None, from_addr="shop@example.com")
    connection = SmtpConnection(settings)
    go.wait()
    for k in range(first, first + count):
        result = connection.send(f"raw{k}@example.com", message)
        if not result.ok:
            raise RuntimeError(f"raw send failed: {result}")
    connection.close()


# --------------------------------------------------------------------------- the run


@dataclass
class Figures:
    buyers: int
    load_emit_seconds: float = 0.0
    load_seconds: float = 0.0
    raw_rate: float = 0.0
    raw_build_rate: float = 0.0
    message_bytes: int = 0
    planning_seconds: float | None = None
    first_message_seconds: float | None = None
    last_message_seconds: float | None = None
    sent_during_planning: int = 0
    cpu: dict[str, float] = field(default_factory=dict)
    checks: dict[str, bool] = field(default_factory=dict)

    @property
    def pipeline_rate(self) -> float:
        return self.buyers / self.last_message_seconds if self.last_message_seconds else 0.0

    @property
    def ratio(self) -> float:
        return self.pipeline_rate / self.raw_rate if self.raw_rate else 0.0


class FanoutBench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.buyers = args.buyers
        self.figures = Figures(args.buyers)
        self.processes: list[tuple[str, subprocess.Popen]] = []
        self.data_dir = Path(tempfile.mkdtemp(prefix="encore-bench-"))
        self.db_name = f"encore_bench_{secrets.token_hex(4)}"
        self.db_url = f"{PG_BASE}/{self.db_name}"
        self.db_created = False
        self.sink_port = 0
        self.status_port = 0
        self._status_socket: socket.socket | None = None
        self._status_file = None
        self._db = None

    # ----------------------------------------------------------------- setup

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("ENCORE_")}
        env.update({
            "ENCORE_DATABASE_URL": self.db_url,
            "ENCORE_BROKER_URL": f"redis://{REDIS_HOST}:{REDIS_PORT}/{REDIS_DB}",
            "ENCORE_DATA_DIR": str(self.data_dir),
            "ENCORE_CHANNEL_EMAIL": f"mailto://127.0.0.1:{self.sink_port}?from=shop@example.com&to={{email}}",
            "PYTHONUNBUFFERED": "1",
        })
        if self.args.send_concurrency:
            env["ENCORE_SEND_CONCURRENCY"] = str(self.args.send_concurrency)
        return env

    def create_database(self) -> None:
        import psycopg
        from psycopg import sql

        with psycopg.connect(ADMIN_DSN, autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{self.db_name}"')
            self.db_created = True
            for setting in self.args.pg_set:
                name, _, value = setting.partition("=")
                if not re.fullmatch(r"[a-z_.]+", name):
                    raise ValueError(f"--pg-set {setting!r}: not a setting name")
                admin.execute(f'ALTER DATABASE "{self.db_name}" SET {name} = {sql.quote(value)}')
        log(f"database {self.db_name} created" + (f" with {', '.join(self.args.pg_set)}" if self.args.pg_set else ""))

    def drop_database(self) -> None:
        import psycopg

        if self._db is not None:
            self._db.close()
            self._db = None
        with psycopg.connect(ADMIN_DSN, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{self.db_name}" WITH (FORCE)')
        log(f"database {self.db_name} dropped")

    def flush_redis(self) -> None:
        import redis

        redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=REDIS_DB).flushdb()

    def start(self, role: str, argv: list[str], log_name: str) -> subprocess.Popen:
        log_path = self.data_dir / log_name
        out = open(log_path, "ab")
        # Own session: the whole group (a prefork worker and its children) stops together.
        proc = subprocess.Popen(argv, cwd=PROJECT_DIR, env=self.env(), stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
        out.close()
        self.processes.append((role, proc))
        return proc

    def stop_all(self) -> None:
        for _, proc in reversed(self.processes):
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + 20
        for role, proc in reversed(self.processes):
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log(f"{role} (pid {proc.pid}) ignored SIGTERM; killing its process group")
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                proc.wait()
        # A prefork child may outlive its parent for a moment: make sure the groups are empty.
        for _, proc in self.processes:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.processes.clear()

    def start_sink(self) -> None:
        self.sink_port, self.status_port = free_port(), free_port()
        proc = self.start("sink", [sys.executable, "-m", "bench.smtpsink", "--port", str(self.sink_port),
                                   "--status-port", str(self.status_port)], "sink.log")
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"SMTP sink exited: {(self.data_dir / 'sink.log').read_text()}")
            if "listening" in (self.data_dir / "sink.log").read_text():
                break
            time.sleep(0.05)
        else:
            raise RuntimeError("SMTP sink did not start")
        self._status_socket = socket.create_connection(("127.0.0.1", self.status_port))
        self._status_file = self._status_socket.makefile("rwb")
        log(f"SMTP sink pid {proc.pid} on 127.0.0.1:{self.sink_port}")

    def sink(self, command: str = "status") -> dict:
        self._status_file.write(command.encode() + b"\n")
        self._status_file.flush()
        return json.loads(self._status_file.readline())

    def sql(self, query: str) -> list[tuple]:
        import psycopg

        if self._db is None:
            self._db = psycopg.connect(self.db_url, autocommit=True)
        return self._db.execute(query).fetchall()

    def scalar(self, query: str):
        return self.sql(query)[0][0]

    # ----------------------------------------------------------------- phases

    def sample_message(self):
        """The email the pipeline will send to one buyer, rendered the pipeline's way."""
        from decimal import Decimal

        from coupons.messages import render_message, resolve_language
        from coupons.model import MessageContext, Offer

        language, locale = resolve_language(None, "en")
        offer = Offer(type="refill", sku="shampoo-refill", product_name="Shampoo", currency="USD",
                      price=Decimal("14.00"), regular_price=Decimal("20.00"))
        return render_message(MessageContext(
            language=language, locale=locale, customer_name="Buyer 12345", offer=offer, code="K7QW-9XMT-4RZP-H2",
            expires_at=datetime.now(UTC) + timedelta(days=7), timezone="America/New_York", framing="urgency",
        ), "email")

    def measure_raw(self) -> None:
        import multiprocessing

        from channels.smtp import SmtpSettings, build_email

        message = self.sample_message()
        settings = SmtpSettings(host="127.0.0.1", port=self.sink_port, secure_mode="insecure", user=None,
                                password=None, from_name=None, from_addr="shop@example.com")
        data = build_email(message, settings, "buyer12345@example.com")
        self.figures.message_bytes = len(data)
        count = min(self.buyers, RAW_MAX)
        clients = self.args.workers
        context = multiprocessing.get_context("spawn")
        for label, target, payload in (("raw smtplib", _raw_client, data),
                                       ("raw smtplib + build_email", _raw_build_client, message)):
            self.sink("reset")
            go = context.Event()
            share = [count // clients + (1 if c < count % clients else 0) for c in range(clients)]
            procs = [context.Process(target=target, args=("127.0.0.1", self.sink_port, payload,
                                                          sum(share[:c]), share[c], go), daemon=True)
                     for c in range(clients)]
            for p in procs:
                p.start()
            time.sleep(1.0)  # let the clients import and connect
            started = time.time()
            go.set()
            for p in procs:
                p.join()
                if p.exitcode != 0:
                    raise RuntimeError(f"{label}: a client process failed (exit {p.exitcode})")
            status = self.sink("reset")
            if status["count"] != count:
                raise RuntimeError(f"{label}: sink got {status['count']} of {count}")
            rate = count / (status["last_at"] - started)
            log(f"{label}: {count} messages of {len(data)} bytes, {clients} client processes: {rate:,.0f} msg/s")
            if target is _raw_client:
                self.figures.raw_rate = rate
            else:
                self.figures.raw_build_rate = rate

    def start_pipeline(self) -> None:
        encore = str(Path(sys.executable).with_name("encore"))
        worker = [encore]
        if self.args.layout == "prefork":
            # The Procfile's shape: one worker whose prefork children are the senders.
            self.start("worker w1", [*worker, "worker", "--concurrency", str(self.args.workers), "-n", "w1@%h"],
                       "worker-w1.log")
            names = ["worker-w1.log"]
        else:
            for k in range(1, self.args.workers + 1):
                self.start(f"worker w{k}", [*worker, "worker", "--concurrency", "1", "-n", f"w{k}@%h"],
                           f"worker-w{k}.log")
            names = [f"worker-w{k}.log" for k in range(1, self.args.workers + 1)]
        self.start("beat", [encore, "beat"], "beat.log")
        deadline = time.monotonic() + 60
        pending = set(names)
        while pending:
            for name in list(pending):
                if " ready." in (self.data_dir / name).read_text(errors="replace"):
                    pending.discard(name)
            for role, proc in self.processes:
                if proc.poll() is not None:
                    raise RuntimeError(f"{role} exited with {proc.returncode}; see {self.data_dir}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"workers not ready after 60 s: {sorted(pending)}")
            time.sleep(0.2)
        layout = ", ".join(f"{role} pid {proc.pid}" for role, proc in self.processes if role != "sink")
        log(f"pipeline up: {layout}")

    def load(self) -> None:
        from coupons.timing import zone_at_local_hour

        now = datetime.now(UTC)
        timezone = zone_at_local_hour(13, now)  # 13:00 there now: outside every market's quiet hours
        ordered_at = now - timedelta(minutes=10)
        path = self.data_dir / "orders.jsonl"
        with open(path, "w") as out:
            for i in range(self.buyers):
                out.write(json.dumps(order_paid(i, ordered_at, timezone), separators=(",", ":")) + "\n")
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

    def check_alive(self) -> None:
        for role, proc in self.processes:
            if proc.poll() is not None:
                raise RuntimeError(f"{role} exited with {proc.returncode}; see logs in {self.data_dir}")

    def roots(self) -> dict[str, list[int]]:
        roles: dict[str, list[int]] = defaultdict(list)
        for role, proc in self.processes:
            roles["workers" if role.startswith("worker") else role].append(proc.pid)
        return roles

    def start_profilers(self) -> list[subprocess.Popen]:
        if not self.args.py_spy:
            return []
        out_dir = Path(self.args.py_spy).resolve()
        out_dir.mkdir(parents=True, exist_ok=True)
        py_spy = str(Path(sys.executable).with_name("py-spy"))
        profilers = []
        for role, proc in self.processes:
            if role.startswith("worker"):
                name = role.split()[-1]
                profilers.append(subprocess.Popen(
                    [py_spy, "record", "--pid", str(proc.pid), "--subprocesses", "--format", "raw",
                     "--rate", "200", "--output", str(out_dir / f"{name}-{self.buyers}.txt"), "--nonblocking"],
                    stdout=subprocess.DEVNULL, stderr=open(out_dir / f"{name}-{self.buyers}.log", "w"),
                    start_new_session=True))
        time.sleep(1.0)  # py-spy attaches
        return profilers

    def measure(self) -> None:
        from services.emit import emit_lines
        from services.runtime import current_runtime, utcnow
        from tasks.intake import apply_events

        self.sink("reset")
        profilers = self.start_profilers()
        runtime = current_runtime()
        cpu_before = cpu_by_role(self.roots())
        line = json.dumps(stream_ended(datetime.now(UTC)))
        started = time.time()
        report = emit_lines(runtime, [("bench", 1, line)], utcnow, lambda ids: apply_events.delay(ids),
                            lambda *reject: None)
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
        for profiler in profilers:
            profiler.send_signal(signal.SIGINT)
        for profiler in profilers:
            try:
                profiler.wait(timeout=30)
            except subprocess.TimeoutExpired:
                profiler.kill()
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
        self.figures.checks = checks
        self.sink_sessions = status["sessions"]

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
        print(f"fanout: {f.buyers} buyers of one stream; {layout} + `encore beat`; PostgreSQL, Redis broker, "
              f"SMTP sink (aiosmtpd)"
              + (f"; database SET {', '.join(self.args.pg_set)}" if self.args.pg_set else ""))
        print(f"  loading (not measured)   encore emit {f.load_emit_seconds:.1f}s "
              f"({f.buyers / f.load_emit_seconds:,.0f} events/s); all applied after {f.load_seconds:.1f}s "
              f"({f.buyers / f.load_seconds:,.0f} orders/s)")
        print(f"  message size             {f.message_bytes} bytes (multipart text + html)")
        print(f"  raw SMTP capacity        {f.raw_rate:,.0f} msg/s (smtplib, prebuilt bytes, "
              f"{self.args.workers} reused connections); {f.raw_build_rate:,.0f} msg/s building each with "
              f"channels.smtp.build_email")
        if f.planning_seconds is not None:
            print(f"  planning done            +{f.planning_seconds:.1f}s ({f.buyers / f.planning_seconds:,.0f} "
                  f"deliveries/s; {f.sent_during_planning} sent meanwhile)")
        else:
            print("  planning done            not observed before the last message")
        first_chunk, last_chunk = self.timeline()
        print(f"  planning chunks          first started +{first_chunk:.2f}s, last started +{last_chunk:.2f}s "
              f"(coupons.created_at)")
        print(f"  first message            +{f.first_message_seconds:.2f}s")
        print(f"  last message             +{f.last_message_seconds:.2f}s")
        print(f"  pipeline                 {f.pipeline_rate:,.0f} msg/s   ratio pipeline/raw {f.ratio:.2f}"
              f" (vs raw + build_email {f.pipeline_rate / f.raw_build_rate:.2f})")
        if f.planning_seconds is not None and f.last_message_seconds > f.planning_seconds:
            after = (f.buyers - f.sent_during_planning) / (f.last_message_seconds - f.planning_seconds)
            during = f.sent_during_planning / f.planning_seconds
            print(f"  send rate                {during:,.0f} msg/s while planning, {after:,.0f} msg/s after")
        print(f"  SMTP sessions            {self.sink_sessions}")
        busy = ", ".join(f"{name} {count}x {seconds:.1f}s" + (f" ({seconds / total * 1000:.2f} ms/item)" if total else "")
                         for name, (count, seconds, total) in self.tasks.items())
        print(f"  worker task time         {busy}")
        print("  CPU over the window      " + ", ".join(f"{role} {cores:.2f}" for role, cores in f.cpu.items())
              + f" cores (of {os.cpu_count()})")
        ok = all(f.checks.values())
        for text, passed in f.checks.items():
            print(f"  check {'ok  ' if passed else 'FAIL'}               {text}")
        extra = "".join(f"{name}={value} " for name, value in (("pg", ",".join(self.args.pg_set)),) if value)
        print(f"fanout buyers={f.buyers} {extra}pipeline={f.pipeline_rate:.0f} msg/s raw={f.raw_rate:.0f} msg/s "
              f"ratio={f.ratio:.2f} last={f.last_message_seconds:.1f}s "
              f"planning={'%.1fs' % f.planning_seconds if f.planning_seconds is not None else '?'} "
              f"checks={'ok' if ok else 'FAILED'}")
        return 0 if ok else 1

    def run(self) -> int:
        self.flush_redis()
        self.create_database()
        self.start_sink()
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

    def cleanup(self) -> None:
        self.stop_all()
        if self._status_socket is not None:
            self._status_socket.close()
        if self.args.keep:
            log(f"kept: database {self.db_url}, data dir {self.data_dir}")
            return
        if self.db_created:
            try:
                from store.db import engine_for

                engine_for.cache_clear()
            except Exception:
                pass
            self.drop_database()
        shutil.rmtree(self.data_dir, ignore_errors=True)


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
    parser.add_argument("--send-concurrency", type=int, metavar="N",
                        help="ENCORE_SEND_CONCURRENCY for the workers (default: the product's default)")
    parser.add_argument("--py-spy", metavar="DIR", help="record the workers with py-spy over the window into DIR")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.buyers < 1 or args.workers < 1:
        print("--buyers and --workers must be >= 1", file=sys.stderr)
        return 2

    def interrupted(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, interrupted)
    signal.signal(signal.SIGINT, interrupted)  # also when started in the background, where SIGINT is ignored
    bench = FanoutBench(args)
    try:
        return bench.run()
    except KeyboardInterrupt:
        log("interrupted; cleaning up")
        return 130
    except Exception as error:
        log(f"error: {error}")
        for name in sorted(bench.data_dir.glob("*.log")):
            tail = name.read_text(errors="replace").splitlines()[-15:]
            print(f"--- {name.name} (last lines)\n" + "\n".join(tail), file=sys.stderr)
        raise
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not skip cleanup
        bench.cleanup()
        signal.signal(signal.SIGINT, signal.default_int_handler)
