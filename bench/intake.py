"""Intake throughput: how fast do N events go from `encore emit FILE` to applied orders?

    python -m bench intake --events 10000
    python -m bench intake --events 1000000      # ~10 min; memory must stay flat

One run (every process it starts is stopped at the end, also on Ctrl-C):

1. a fresh PostgreSQL database, Redis db 12 flushed and used as the broker;
2. the production layout: `encore worker --concurrency W` (W = --workers, default 2)
   and `encore beat`;
3. a JSON Lines file of N `order.paid` events written to disk line by line (never
   held in memory): stream orders (one stream per 10,000 orders; no stream ends, so
   nothing is planned and intake alone is measured), US customers, a share of them
   (--repeat-share, default 0.1) repeat customers whose consent and profile are merged;
4. the measured window: the real `encore emit FILE` in a subprocess, until every
   inbox row is applied (`processed_at` set) and N orders are stored;
5. memory: the peak resident set (VmHWM) of `encore emit` (from wait4) and of every
   worker process, and the workers' resident set sampled over the run, so a leak
   shows as growth between the first and last quarter;
6. checks: N orders, N events applied, the expected customers, no dead letter.
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench.harness import PROJECT_DIR, STALL_SECONDS, Stack, cpu_by_role, log, machine_load, run_bench, task_times, vm_kib

ORDERS_PER_STREAM = 10_000


def write_events(path: Path, count: int, repeat_share: float, seed: int = 7) -> int:
    """Write `count` order.paid lines; returns the number of distinct customers."""
    rng = random.Random(seed)
    start = datetime.now(UTC) - timedelta(hours=1)  # inside the hour: no stream waits 6 h, nothing is planned
    customers = 0
    with open(path, "w", buffering=1 << 20) as out:
        for i in range(count):
            if customers and rng.random() < repeat_share:
                customer = rng.randrange(customers)
            else:
                customer, customers = customers, customers + 1
            at = (start + timedelta(microseconds=1000 * i * 3600 // max(count, 1))).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
            consent = '["email","sms"]' if i % 3 else '["email"]'
            out.write(
                f'{{"id":"in-{i}","type":"order.paid","occurred_at":"{at}","data":{{"order_id":"o-{i}",'
                f'"stream_id":"live-{i // ORDERS_PER_STREAM}","currency":"USD","customer":{{"id":"c-{customer}",'
                f'"name":"Buyer {customer}","country":"US","timezone":"America/New_York",'
                f'"email":"buyer{customer}@example.com","phone":"+1202555{customer % 10000:04d}",'
                f'"consent":{consent}}},"items":[{{"sku":"shampoo","name":"Shampoo","unit_price":"20.00",'
                f'"quantity":{1 + i % 2},"refill_sku":"shampoo-refill"}}]}}}}\n')
    return customers


class IntakeBench(Stack):
    name = "intake"

    def __init__(self, args: argparse.Namespace) -> None:
        super().__init__(args)
        self.figures: dict = {"scenario": "intake", "events": args.events, "workers": args.workers,
                              "repeat_share": args.repeat_share, "date": datetime.now(UTC).isoformat(timespec="seconds"),
                              "command": "python -m bench " + " ".join(sys.argv[2:] if sys.argv[1:2] == ["intake"]
                                                                      else sys.argv[1:])}

    def run(self) -> int:
        self.flush_redis()
        self.create_database()
        os.environ.update(self.env())
        from store.db import engine_for

        engine_for(self.db_url)  # schema via Alembic, before the workers race for it
        path = self.data_dir / "events.jsonl"
        started = time.monotonic()
        customers = write_events(path, self.args.events, self.args.repeat_share)
        log(f"wrote {self.args.events:,} events ({path.stat().st_size / 2**20:,.0f} MiB, {customers:,} customers) "
            f"in {time.monotonic() - started:.1f}s")
        self.start_pipeline()
        self.measure(path)
        return self.verify(customers)

    def measure(self, path: Path) -> None:
        n = self.args.events
        encore = str(Path(sys.executable).with_name("encore"))
        load_before = machine_load()
        profilers = self.start_profilers()
        cpu_before = cpu_by_role(self.roots())
        out = open(self.data_dir / "emit.log", "wb")
        started = time.time()
        emit = subprocess.Popen([encore, "emit", str(path)], cwd=PROJECT_DIR, env=self.env(), stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
        out.close()
        self.processes.append(("emit", emit))
        emit_usage = None
        worker_peak: dict[int, int] = {}
        samples: list[tuple[float, int, int, int]] = []  # (seconds, applied, emit rss, largest worker rss) KiB
        last_change, last_applied, next_print = time.monotonic(), -1, time.monotonic() + 10
        while True:
            if emit_usage is None:
                pid, status, usage = os.wait4(emit.pid, os.WNOHANG)
                if pid:
                    emit.returncode = os.waitstatus_to_exitcode(status)
                    emit_usage = usage
                    self.processes.remove(("emit", emit))
                    self.figures["emit_seconds"] = round(time.time() - started, 2)
                    log(f"  encore emit exited {emit.returncode} after {self.figures['emit_seconds']}s: "
                        f"{(self.data_dir / 'emit.log').read_text().strip()[-300:]}")
                    if emit.returncode not in (0,):
                        raise RuntimeError("encore emit failed")
            unapplied = self.scalar("select count(*) from events where processed_at is null")
            stored = self.scalar("select count(*) from events") if emit_usage is None else n
            applied = stored - unapplied
            workers = self.process_tree("worker")
            for pid in workers:
                worker_peak[pid] = max(worker_peak.get(pid, 0), vm_kib(pid, "VmHWM"))
            samples.append((time.time() - started, applied, vm_kib(emit.pid, "VmRSS") if emit_usage is None else 0,
                            max((vm_kib(pid, "VmRSS") for pid in workers), default=0)))
            if emit_usage is not None and unapplied == 0:
                break
            if applied != last_applied:
                last_change, last_applied = time.monotonic(), applied
            elif time.monotonic() - last_change > STALL_SECONDS:
                raise RuntimeError(f"stalled at {applied} applied of {n}")
            if time.monotonic() >= next_print:
                next_print = time.monotonic() + 10
                elapsed = time.time() - started
                log(f"  +{elapsed:6.1f}s stored {stored:>9,} applied {applied:>9,} ({applied / elapsed:,.0f}/s) "
                    f"load {machine_load()}")
            self.check_alive(ignore=("emit",))  # emit is reaped by wait4 above, for its rusage
            time.sleep(0.5 if n > 100_000 else 0.2)
        window = time.time() - started
        cpu_after = cpu_by_role(self.roots())
        self.stop_profilers(profilers)
        f = self.figures
        f["end_to_end_seconds"] = round(window, 2)
        f["events_per_second"] = round(n / window)
        f["emit_events_per_second"] = round(n / f["emit_seconds"])
        f["emit_cpu_seconds"] = round(emit_usage.ru_utime + emit_usage.ru_stime, 2)
        f["emit_peak_rss_mib"] = round(emit_usage.ru_maxrss / 1024, 1)
        peaks = sorted(worker_peak.values())
        f["worker_processes"] = len(peaks)
        f["worker_peak_rss_mib"] = [round(kib / 1024, 1) for kib in peaks]
        quarter = [s for s in samples if s[1] <= n / 4] or samples[:1]
        f["worker_rss_mib_first_quarter"] = round(max(s[3] for s in quarter) / 1024, 1)
        f["worker_rss_mib_at_end"] = round(samples[-1][3] / 1024, 1)
        emit_samples = [s[2] for s in samples if s[2]]
        f["emit_rss_mib_samples"] = [round(emit_samples[int(k * (len(emit_samples) - 1) / 4)] / 1024, 1)
                                     for k in range(5)] if emit_samples else []
        f["cpu_cores"] = {role: round((cpu_after.get(role, 0.0) - spent) / window, 2)
                          for role, spent in cpu_before.items() if role != "emit"}
        f["cpu_cores"]["emit"] = round(f["emit_cpu_seconds"] / window, 2)
        tasks = task_times(sorted(self.data_dir.glob("worker-*.log")), started, time.time())
        f["worker_tasks"] = {name: {"count": count, "seconds": round(seconds, 2)}
                             for name, (count, seconds, _) in tasks.items()}
        f["load_average_before"] = load_before
        f["load_average_after"] = machine_load()

    def verify(self, customers: int) -> int:
        n = self.args.events
        orders = self.scalar("select count(*) from orders")
        stored_customers = self.scalar("select count(*) from customers")
        letters = self.scalar("select count(*) from dead_letters")
        unapplied = self.scalar("select count(*) from events where processed_at is null")
        checks = {
            f"orders = {n} (got {orders})": orders == n,
            f"every event applied (unapplied {unapplied})": unapplied == 0,
            f"customers = {customers} (got {stored_customers})": stored_customers == customers,
            f"no dead letter (got {letters})": letters == 0,
        }
        f = self.figures
        f["checks"] = {text: ok for text, ok in checks.items()}
        print()
        print(f"intake: {n:,} order.paid events, `encore emit FILE` -> `encore worker --concurrency "
              f"{self.args.workers}` + `encore beat`; PostgreSQL, Redis broker")
        print(f"  end to end               {f['events_per_second']:,} events/s ({f['end_to_end_seconds']}s, "
              f"emit start -> last event applied)   target 2,000")
        print(f"  encore emit alone        {f['emit_events_per_second']:,} events/s stored and enqueued "
              f"({f['emit_seconds']}s, {f['emit_cpu_seconds']} CPU s)")
        print(f"  peak RSS                 emit {f['emit_peak_rss_mib']} MiB; worker processes "
              f"{', '.join(str(m) for m in f['worker_peak_rss_mib'])} MiB")
        print(f"  RSS over the run         largest worker {f['worker_rss_mib_first_quarter']} MiB in the first "
              f"quarter, {f['worker_rss_mib_at_end']} MiB at the end; emit "
              f"{' / '.join(str(m) for m in f['emit_rss_mib_samples'])} MiB at 0/25/50/75/100% of its run")
        print("  CPU over the window      " + ", ".join(f"{role} {cores:.2f}" for role, cores in f["cpu_cores"].items())
              + f" cores (of {os.cpu_count()})")
        print("  worker task time         " + ", ".join(f"{name} {v['count']}x {v['seconds']}s"
                                                     for name, v in f["worker_tasks"].items()))
        print(f"  machine load             {f['load_average_before']} before, {f['load_average_after']} after "
              f"(1/5/15 min)")
        for text, ok in checks.items():
            print(f"  check {'ok  ' if ok else 'FAIL'}               {text}")
        self.write_json(f)
        ok = all(checks.values())
        print(f"intake events={n} rate={f['events_per_second']} events/s emit={f['emit_events_per_second']} events/s "
              f"emit_rss={f['emit_peak_rss_mib']}MiB worker_rss={max(f['worker_peak_rss_mib'], default=0)}MiB "
              f"load={f['load_average_after'].split()[0]} checks={'ok' if ok else 'FAILED'}")
        return 0 if ok else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench intake",
                                     description="Events/s from `encore emit FILE` to applied orders, and peak memory.")
    parser.add_argument("--events", type=int, default=10_000, help="order.paid events in the file (default 10000)")
    parser.add_argument("--workers", type=int, default=2, help="`encore worker --concurrency W` (default 2)")
    parser.add_argument("--repeat-share", type=float, default=0.1,
                        help="share of orders by a customer seen before in the file (default 0.1)")
    parser.add_argument("--json-out", metavar="PATH", help="write the figures here (default: a file under "
                                                          "$TMPDIR/encore-bench/, printed at the end)")
    parser.add_argument("--keep", action="store_true", help="keep the database and data dir (logs) afterwards")
    parser.add_argument("--py-spy", metavar="DIR", help="record the workers with py-spy into DIR")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.events < 1 or args.workers < 1 or not 0 <= args.repeat_share < 1:
        print("--events and --workers must be >= 1, --repeat-share in [0, 1)", file=sys.stderr)
        return 2
    return run_bench(IntakeBench(args))


if __name__ == "__main__":
    sys.exit(main())
