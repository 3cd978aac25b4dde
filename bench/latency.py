"""Latency: single orders at a steady rate; how long from emit to the message at the endpoint?

    python -m bench latency                      # 20 orders/s for 30 s
    python -m bench latency --rate 50 --seconds 20

One run (every process it starts is stopped at the end, also on Ctrl-C):

1. a fresh PostgreSQL database, Redis db 12 as the broker, the SMTP stand-in
   (bench.smtpsink, recording each recipient's arrival time) as the email channel;
2. the production layout: `encore worker --concurrency W` and `encore beat`;
3. the measured part: one plain `order.paid` (no stream: it triggers at once) every
   1/rate seconds, each from a different US customer in a zone where it is 13:00 now
   (no quiet hours, no frequency cap), each emitted on its own through
   `services.emit.emit_lines` -- the code `encore emit` runs (validation, the inbox
   commit, the enqueue) -- in this one long-lived process;
4. per order: latency = arrival at the SMTP sink - the moment its emit began; and,
   from the rows, where the time went: emit -> the intake task began, and from there to
   the recorded send (planning, the relay kick, the send task).

Why in-process and not one `encore emit` per order: each `encore emit` process spends
about a second starting Python and importing its libraries, and 20 of them per second
would take the machine's two cores before any order reached a worker. A shop feeds
Encore from a long-lived client (`encore serve`, or a queue consumer) that pays the start
once; the per-order path measured here (validate, store, commit, enqueue) is the same.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from datetime import UTC, datetime

from bench.harness import Stack, iso, log, machine_load, run_bench, task_times

WAIT_AFTER_LAST = 60.0
"""Seconds to wait for the last messages after the last order before giving up."""


def percentile(values: list[float], share: float) -> float:
    """Nearest-rank percentile (as `encore status` computes it)."""
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, int(-(-share * len(ordered) // 1)) - 1))]


class LatencyBench(Stack):
    name = "latency"

    def run(self) -> int:
        args = self.args
        self.load_before = machine_load()
        self.flush_redis()
        self.create_database()
        self.start_sink(args.latency_ms, "smtp")
        self.channels = {
            "ENCORE_CHANNEL_EMAIL": f"mailto://127.0.0.1:{self.sink_port}?from=shop@example.com&to={{email}}"}
        os.environ.update(self.env())
        from store.db import engine_for

        engine_for(self.db_url)
        self.start_pipeline()
        emitted = self.emit_orders()
        arrivals = self.collect(emitted)
        return self.report(emitted, arrivals)

    def emit_orders(self) -> dict[str, float]:
        from coupons.timing import zone_at_local_hour
        from services.emit import emit_lines
        from tasks.app import compose

        runtime = compose()
        zone = zone_at_local_hour(13, datetime.now(UTC))
        total = int(self.args.rate * self.args.seconds)
        log(f"emitting {total} orders at {self.args.rate:g}/s for {self.args.seconds:g}s (customer zone {zone})")
        emitted: dict[str, float] = {}
        self.behind = 0.0
        self.started = time.time()
        for k in range(total):
            due = self.started + k / self.args.rate
            pause = due - time.time()
            if pause > 0:
                time.sleep(pause)
            else:
                self.behind = max(self.behind, -pause)
            event = {"id": f"lat-{k}", "type": "order.paid", "occurred_at": iso(datetime.now(UTC)),
                     "data": {"order_id": f"lat-order-{k}", "currency": "USD",
                              "customer": {"id": f"lat-c-{k}", "name": f"Buyer {k}", "country": "US",
                                           "timezone": zone, "email": f"lat{k}@example.com", "consent": ["email"]},
                              "items": [{"sku": "shampoo", "name": "Shampoo", "unit_price": "20.00", "quantity": 1,
                                         "refill_sku": "shampoo-refill"}]}}
            began = time.time()
            report = emit_lines(runtime, [("bench", 1, json.dumps(event))], lambda *reject: None)
            if report.accepted != 1:
                raise RuntimeError(f"order {k} not accepted: {report}")
            emitted[f"lat{k}@example.com"] = began
        self.emit_seconds = time.time() - self.started
        return emitted

    def collect(self, emitted: dict[str, float]) -> dict[str, float]:
        arrivals: dict[str, float] = {}
        deadline = time.time() + WAIT_AFTER_LAST
        while len(arrivals) < len(emitted) and time.time() < deadline:
            for recipient, at in self.sink("arrivals"):
                arrivals.setdefault(recipient, at)
            self.check_alive()
            time.sleep(0.2)
        self.sink_status = self.sink()
        return arrivals

    def stages(self, emitted: dict[str, float]) -> dict[str, float]:
        """Median seconds per stage, from the rows (one machine, one clock): emit -> the
        intake task began (events.processed_at is its `now`), and from there -> the
        result recorded (deliveries.sent_at: apply + plan, relay task, send task, SMTP)."""
        rows = self.sql(
            "select c.customer_id, extract(epoch from e.processed_at), extract(epoch from d.sent_at) "
            "from events e join orders o on o.event_id = e.id "
            "join coupons c on c.trigger_key = 'order:' || o.id join deliveries d on d.coupon_id = c.id "
            "where d.sent_at is not null")
        parts: dict[str, list[float]] = {"emit -> intake task": [], "intake task -> sent": []}
        for customer_id, processed, sent in rows:
            began = emitted.get(f"lat{customer_id.removeprefix('lat-c-')}@example.com")
            if began is None:
                continue
            parts["emit -> intake task"].append(float(processed) - began)
            parts["intake task -> sent"].append(float(sent) - float(processed))
        return {name: round(statistics.median(values), 3) for name, values in parts.items() if values}

    def report(self, emitted: dict[str, float], arrivals: dict[str, float]) -> int:
        latencies = [arrivals[r] - began for r, began in emitted.items() if r in arrivals]
        n = len(emitted)
        figures = {
            "scenario": "latency", "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "command": "python -m bench latency " + " ".join(self.argv), "rate": self.args.rate,
            "seconds": self.args.seconds, "workers": self.args.workers, "latency_ms": self.args.latency_ms,
            "orders": n, "arrived": len(latencies), "emit_behind_schedule_max_s": round(self.behind, 3),
        }
        if latencies:
            figures.update({f"p{int(q * 100)}": round(percentile(latencies, q), 3) for q in (0.5, 0.95, 0.99)})
            figures["max"] = round(max(latencies), 3)
            figures["mean"] = round(statistics.fmean(latencies), 3)
        figures["stages_median_s"] = self.stages(emitted)
        tasks = task_times(sorted(self.data_dir.glob("worker-*.log")), self.started, time.time())
        figures["worker_tasks"] = {name: {"count": count, "seconds": round(seconds, 2)}
                                   for name, (count, seconds, _) in tasks.items()}
        figures["load_average_before"], figures["load_average_after"] = self.load_before, machine_load()
        checks = {f"every order's message arrived ({len(latencies)} of {n})": len(latencies) == n,
                  f"exactly {n} messages at the sink (got {self.sink_status['count']})": self.sink_status["count"] == n}
        figures["checks"] = checks
        print()
        print(f"latency: {n} single orders at {self.args.rate:g}/s, each emitted alone (services.emit in one "
              f"process) -> `encore worker --concurrency {self.args.workers}` + `encore beat` -> SMTP sink")
        if latencies:
            print(f"  emit -> message at sink  p50 {figures['p50']:.3f}s  p95 {figures['p95']:.3f}s  "
                  f"p99 {figures['p99']:.3f}s  max {figures['max']:.3f}s   targets p50 < 0.5 s, p99 < 2 s")
        print("  median per stage         " + ", ".join(f"{k} {v:.3f}s" for k, v in figures["stages_median_s"].items()))
        print(f"  emitting                 at most {self.behind:.3f}s behind schedule")
        print("  worker task time         " + ", ".join(f"{name} {v['count']}x {v['seconds']}s"
                                                     for name, v in figures["worker_tasks"].items()))
        print(f"  machine load             {self.load_before} before, {figures['load_average_after']} after")
        for text, ok in checks.items():
            print(f"  check {'ok  ' if ok else 'FAIL'}               {text}")
        self.write_json(figures)
        ok = all(checks.values())
        print(f"latency orders={n} rate={self.args.rate:g}/s p50={figures.get('p50')}s p95={figures.get('p95')}s "
              f"p99={figures.get('p99')}s load={figures['load_average_after'].split()[0]} "
              f"checks={'ok' if ok else 'FAILED'}")
        return 0 if ok else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench latency",
                                     description="Single orders at a steady rate: emit to message, p50/p95/p99.")
    parser.add_argument("--rate", type=float, default=20.0, help="orders per second (default 20)")
    parser.add_argument("--seconds", type=float, default=30.0, help="how long to emit (default 30)")
    parser.add_argument("--workers", type=int, default=2, help="`encore worker --concurrency W` (default 2)")
    parser.add_argument("--latency-ms", type=float, default=0.0, help="the SMTP sink answers after this delay")
    parser.add_argument("--json-out", metavar="PATH",
                        help="write the figures here (default: a file under $TMPDIR/encore-bench/, printed)")
    parser.add_argument("--keep", action="store_true", help="keep the database and data dir (logs) afterwards")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.rate <= 0 or args.seconds <= 0 or args.workers < 1:
        print("--rate, --seconds and --workers must be > 0", file=sys.stderr)
        return 2
    bench = LatencyBench(args)
    bench.argv = list(argv if argv is not None else sys.argv[2:])
    return run_bench(bench)


if __name__ == "__main__":
    sys.exit(main())
