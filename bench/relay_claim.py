"""`python -m bench.relay_claim [--rows N]`: the relay's claim on a big deliveries table.

Fills a scratch PostgreSQL database with N deliveries — `--backlog` of them
`scheduled` and waiting in the broker, 3,000 due and not enqueued, 2,000 due later,
the rest `sent` — and prints the plan and time of exactly the statements the relay
runs (`claim_due_deliveries`, `release_expired_leases`), each in a transaction that is
rolled back. The claim must read the rows it picks, not the table.
"""

from __future__ import annotations

import argparse
import time
import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import event

FILL = """
INSERT INTO coupons (code, trigger_key, customer_id, market, offer_type, sku, product_name, currency,
                     created_at, expires_at)
SELECT 'C' || g, 't' || g, 'c' || g, 'north_america', 'percent_off', 'sku', 'Product', 'USD',
       %(now)s, %(now)s + interval '7 days'
FROM generate_series(1, %(rows)s) AS g;
INSERT INTO deliveries (coupon_id, customer_id, state, failed_channels, trigger_at, due_at, deadline_at,
                        attempts, channel_attempts, updated_at, next_attempt_at, enqueued_at, sent_at)
SELECT g, 'c' || g,
       CASE WHEN g <= %(rows)s - %(backlog)s - 5000 THEN 'sent' ELSE 'scheduled' END,
       '[]', t, t, t + interval '24 hours', 1, 1, t,
       CASE WHEN g > %(rows)s - 2000 THEN %(now)s + interval '1 hour' ELSE t END,
       CASE WHEN g > %(rows)s - %(backlog)s - 5000 AND g <= %(rows)s - 5000 THEN %(now)s - interval '1 minute' END,
       CASE WHEN g <= %(rows)s - %(backlog)s - 5000 THEN t END
FROM generate_series(1, %(rows)s) AS g,
     LATERAL (SELECT %(now)s - (g %% 86400) * interval '1 second' AS t) AS times;
ANALYZE deliveries; ANALYZE coupons;
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.relay_claim")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--backlog", type=int, default=5_000, help="scheduled rows waiting in the broker")
    parser.add_argument("--admin-url", default="postgresql://postgres@127.0.0.1:5432/test")
    args = parser.parse_args(argv)

    import psycopg

    from services.relay import claim_due_deliveries, release_expired_leases
    from store.db import engine_for

    name = f"encore_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(args.admin_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    url = args.admin_url.rsplit("/", 1)[0] + f"/{name}"
    try:
        engine = engine_for(url)
        now = datetime.now(UTC)
        started = time.perf_counter()
        with engine.begin() as connection:
            for statement in FILL.split(";"):
                if statement.strip():
                    connection.exec_driver_sql(statement, {"rows": args.rows, "backlog": args.backlog, "now": now})
        print(f"filled {args.rows:,} deliveries ({args.backlog:,} waiting in the broker) in"
              f" {time.perf_counter() - started:.1f}s")
        lease = timedelta(seconds=300)
        for title, run in (
            ("claim, backlog waiting in the broker", lambda c: claim_due_deliveries(c, now, lease,
                                                                                    broker_holds_none=False)),
            ("claim, broker queue empty (stale stamps too)", lambda c: claim_due_deliveries(c, now, lease)),
            ("release expired leases", lambda c: release_expired_leases(c, now)),
        ):
            _measure(engine, title, run)
    finally:
        with psycopg.connect(args.admin_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    return 0


def _measure(engine, title: str, run) -> None:
    """Time `run` on the real statements, then EXPLAIN ANALYZE each UPDATE it ran; all rolled back."""
    from sqlalchemy.orm import Session

    executed: list[tuple[str, object]] = []

    def capture(conn, cursor, statement, parameters, context, executemany):
        if statement.lstrip().upper().startswith("UPDATE"):
            executed.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", capture)
    try:
        with Session(engine) as session:
            started = time.perf_counter()
            result = run(session)
            elapsed = time.perf_counter() - started
            session.rollback()
    finally:
        event.remove(engine, "before_cursor_execute", capture)
    picked = len(result) if isinstance(result, list) else result
    print(f"\n== {title}: {picked:,} rows in {elapsed * 1000:.1f} ms")
    for statement, parameters in executed:
        with engine.connect() as connection:
            plan = connection.exec_driver_sql("EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) " + statement, parameters)
            for (line,) in plan:
                print("   ", line)
            connection.rollback()


if __name__ == "__main__":
    raise SystemExit(main())
