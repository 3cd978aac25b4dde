"""What every benchmark needs: a fresh PostgreSQL database, Redis db 12 as the broker,
the production process layout (`encore worker` + `encore beat`, each in its own
process group so everything stops on exit or Ctrl-C), stand-in providers, CPU and
memory accounting per role, and the figures written as JSON.

Each scenario (bench/fanout.py, bench/intake.py, bench/latency.py) subclasses `Stack`.
"""

from __future__ import annotations

import argparse
import io
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
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import psycopg

ADMIN_DSN = "postgresql://postgres@127.0.0.1:5432/test"
PG_BASE = "postgresql://postgres@127.0.0.1:5432"
REDIS_HOST, REDIS_PORT = "127.0.0.1", 6379
REDIS_DB = int(os.environ.get("ENCORE_BENCH_REDIS_DB", "12"))  # parallel runs on one Redis use different dbs
STALL_SECONDS = 180.0
"""Give up when nothing has moved for this long."""
PROJECT_DIR = Path(__file__).resolve().parent.parent
RESULTS_DIR = Path(tempfile.gettempdir()) / "encore-bench"
"""Where figures go without --json-out (the run's own data dir is removed at the end)."""


# --------------------------------------------------------------------------- helpers


def log(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def iso(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


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


class Stack:
    """One benchmark run's world. Subclasses set `name` and `channels` and write `run`."""

    name = "bench"

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.argv: list[str] = []
        """The command line as given, for the figures' `command`."""
        self.channels: dict[str, str] = {}
        """ENCORE_CHANNEL_* variables of every Encore process; a callable value is read when used."""
        self.processes: list[tuple[str, subprocess.Popen]] = []
        self.data_dir = Path(tempfile.mkdtemp(prefix="encore-bench-"))
        self.db_name = f"encore_bench_{secrets.token_hex(4)}"
        self.db_url = f"{PG_BASE}/{self.db_name}"
        self.db_created = False
        self.sink_port = 0
        self.status_port = 0
        self._status_socket: socket.socket | None = None
        self._status_file: io.BufferedRWPair | None = None
        self._db: psycopg.Connection | None = None

    # ----------------------------------------------------------------- setup

    def run(self) -> int:
        """The benchmark itself: print the figures, return the exit status."""
        raise NotImplementedError

    def env(self) -> dict[str, str]:
        # ENCORE_SEND_CONCURRENCY[_<CHANNEL>] pass through: experiments with sends in flight.
        env = {k: v for k, v in os.environ.items()
               if not k.startswith("ENCORE_") or k.startswith("ENCORE_SEND_CONCURRENCY")}
        env.update({
            "ENCORE_DATABASE_URL": self.db_url,
            "ENCORE_BROKER_URL": f"redis://{REDIS_HOST}:{REDIS_PORT}/{REDIS_DB}",
            "ENCORE_DATA_DIR": str(self.data_dir),
            "PYTHONUNBUFFERED": "1",
            **self.channels,
        })
        return env

    def create_database(self) -> None:
        import psycopg
        from psycopg import sql

        with psycopg.connect(ADMIN_DSN, autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{self.db_name}"')
            self.db_created = True
            for setting in self.pg_set:
                name, _, value = setting.partition("=")
                if not re.fullmatch(r"[a-z_.]+", name):
                    raise ValueError(f"--pg-set {setting!r}: not a setting name")
                admin.execute(f'ALTER DATABASE "{self.db_name}" SET {name} = {sql.quote(value)}')
        log(f"database {self.db_name} created" + (f" with {', '.join(self.pg_set)}" if self.pg_set else ""))

    @property
    def pg_set(self) -> list[str]:
        return getattr(self.args, "pg_set", None) or []

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

    def start_sink(self, latency_ms: float = 0.0, kind: str = "smtp", extra: tuple[str, ...] = ()) -> None:
        """The provider stand-in: bench.smtpsink (SMTP) or bench.httpsink (an HTTP API),
        answering each message after `latency_ms`, with a status port."""
        self.sink_port, self.status_port = free_port(), free_port()
        proc = self.start("sink", [sys.executable, "-m", f"bench.{kind}sink", "--port", str(self.sink_port),
                                   "--status-port", str(self.status_port), "--latency-ms", str(latency_ms), *extra],
                          "sink.log")
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"{kind} sink exited: {(self.data_dir / 'sink.log').read_text()}")
            if "listening" in (self.data_dir / "sink.log").read_text():
                break
            time.sleep(0.05)
        else:
            raise RuntimeError(f"{kind} sink did not start")
        self._status_socket = socket.create_connection(("127.0.0.1", self.status_port))
        self._status_file = self._status_socket.makefile("rwb")
        log(f"{kind} sink pid {proc.pid} on 127.0.0.1:{self.sink_port}, answering after {latency_ms:g} ms")

    def sink(self, command: str = "status") -> dict:
        assert self._status_file is not None, "the sink is not started"
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

    def start_pipeline(self) -> None:
        encore = str(Path(sys.executable).with_name("encore"))
        worker = [encore]
        # --sync-worker: code sync (an I/O wait on the shop) gets a worker of its own, with
        # threads, and the senders' worker leaves the `sync` queue to it.
        own_sync = getattr(self.args, "sync_worker", False)
        queues = ["-Q", "intake,plan,send,relay"] if own_sync else []
        if getattr(self.args, "layout", "prefork") == "prefork":
            # The Procfile's shape: one worker whose prefork children are the senders.
            self.start("worker w1", [*worker, "worker", "--concurrency", str(self.args.workers), "-n", "w1@%h",
                                     *queues], "worker-w1.log")
            names = ["worker-w1.log"]
        else:
            for k in range(1, self.args.workers + 1):
                self.start(f"worker w{k}", [*worker, "worker", "--concurrency", "1", "-n", f"w{k}@%h"],
                           f"worker-w{k}.log")
            names = [f"worker-w{k}.log" for k in range(1, self.args.workers + 1)]
        if own_sync:
            self.start("worker sync", [*worker, "worker", "-Q", "sync", "-P", "threads", "--concurrency", "4",
                                       "-n", "sync@%h"], "worker-sync.log")
            names.append("worker-sync.log")
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

    def check_alive(self, ignore: tuple[str, ...] = ()) -> None:
        """Stop the run when a started process died (except the roles in `ignore`, which end by design)."""
        for role, proc in self.processes:
            if role not in ignore and proc.poll() is not None:
                raise RuntimeError(f"{role} exited with {proc.returncode}; see logs in {self.data_dir}")

    def roots(self) -> dict[str, list[int]]:
        roles: dict[str, list[int]] = defaultdict(list)
        for role, proc in self.processes:
            roles["workers" if role.startswith("worker") else role].append(proc.pid)
        return roles

    def start_profilers(self) -> list[subprocess.Popen]:
        if not getattr(self.args, "py_spy", None):
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
                     "--rate", "200", "--output", str(out_dir / f"{name}-{self.name}.txt"), "--nonblocking"],
                    stdout=subprocess.DEVNULL, stderr=open(out_dir / f"{name}-{self.name}.log", "w"),
                    start_new_session=True))
        time.sleep(1.0)  # py-spy attaches
        return profilers

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

    def stop_profilers(self, profilers: list[subprocess.Popen]) -> None:
        for profiler in profilers:
            profiler.send_signal(signal.SIGINT)
        for profiler in profilers:
            try:
                profiler.wait(timeout=30)
            except subprocess.TimeoutExpired:
                profiler.kill()

    # ----------------------------------------------------------------- memory, load, JSON

    def process_tree(self, role_prefix: str) -> list[int]:
        """The pids of the started processes whose role starts with `role_prefix`, and their descendants."""
        children: dict[int, list[int]] = defaultdict(list)
        for pid, (_, ppid, _) in _proc_stats().items():
            children[ppid].append(pid)
        found, stack = [], [proc.pid for role, proc in self.processes if role.startswith(role_prefix)]
        while stack:
            pid = stack.pop()
            found.append(pid)
            stack += children[pid]
        return found

    def write_json(self, figures: dict) -> Path:
        """Write the run's figures as JSON (to --json-out, else into the data dir) and say where."""
        target = getattr(self.args, "json_out", None)
        path = Path(target) if target else RESULTS_DIR / f"{self.name}-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(figures, indent=2, default=str) + "\n")
        print(f"figures written to {path}")
        return path


def vm_kib(pid: int, field: str) -> int:
    """A /proc/<pid>/status memory figure in KiB (VmHWM = peak resident set, VmRSS = now); 0 if gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def machine_load() -> str:
    """`uptime`'s load averages, reported beside every figure: the machine is shared."""
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"


def run_bench(bench: Stack) -> int:
    """Run `bench.run()` and always clean up (Ctrl-C, SIGTERM, errors)."""

    def interrupted(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, interrupted)
    signal.signal(signal.SIGINT, interrupted)  # also when started in the background, where SIGINT is ignored
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
