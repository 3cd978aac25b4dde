"""Campaign run at scale: audience selection + planning for N stored customers.

    python -m bench campaign --customers 100000

What one run does:

1. a fresh PostgreSQL database `encore_bench_<random>` (dropped unless --keep), the
   schema by Alembic as in production;
2. loading, not measured: N customers across the six markets, each with one order
   40-100 days old holding a consumable (shampoo, refill_sku) and a mug; every tenth
   customer also bought the refill 10 days ago (not due). Bulk COPY into customers,
   orders and order_items, then ANALYZE;
3. the measured part, in a child process of its own so its peak RSS is the work's
   alone: a 30-day `replenishment_due` campaign over every market, run as beat's
   runner runs it (`services.campaigns.run_campaign`: claim, keyset chunks of 1,000,
   bulk planning). Email is the configured channel; nothing is sent (no relay);
4. prints the time, customers planned per second, the child's peak RSS, and checks
   that exactly the due customers (N - N/10) got one coupon and one delivery each.

Exit status 0 when the check passed and peak RSS stayed under 300 MB.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import secrets
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta

ADMIN_DSN = "postgresql://postgres@127.0.0.1:5432/test"
PG_BASE = "postgresql://postgres@127.0.0.1:5432"
RSS_LIMIT_MB = 300
COUNTRIES = ["US", "CA", "GB", "DE", "FR", "ID", "TH", "VN", "PH", "BR", "MX", "SA", "AE", "JP", "NG"]
LOCALES = {"US": "en-US", "DE": "de-DE", "FR": "fr-FR", "ID": "id-ID", "TH": "th-TH", "VN": "vi-VN",
           "BR": "pt-BR", "MX": "es-MX", "SA": "ar-SA", "AE": "ar-AE"}
CAMPAIGN = """name = "bench-refill"
schedule = "0 * * * *"
timezone = "UTC"
audience = "replenishment_due"
days = 30
"""


def log(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", flush=True)


def load(url: str, customers: int, now: datetime) -> int:
    """COPY N customers, their orders and order items; returns how many are due."""
    import psycopg

    dsn = url
    shampoo = {"sku": "shampoo", "name": "Shampoo", "unit_price": "20.00", "quantity": 1,
               "refill_sku": "shampoo-refill"}
    mug = {"sku": "mug", "name": "Mug", "unit_price": "12.00", "quantity": 1, "refill_sku": None}
    refill = {"sku": "shampoo-refill", "name": "Shampoo refill", "unit_price": "14.00", "quantity": 1,
              "refill_sku": None}
    items_json = json.dumps([shampoo, mug])
    refill_json = json.dumps([refill])
    due = 0
    with psycopg.connect(dsn) as conn, conn.cursor() as cur:
        with cur.copy("COPY customers (id, name, country, locale, timezone, email, consent, opted_out, updated_at)"
                      " FROM STDIN") as copy:
            for n in range(customers):
                country = COUNTRIES[n % len(COUNTRIES)]
                copy.write_row((f"cust-{n:08d}", f"Customer {n}", country, LOCALES.get(country), None,
                                f"cust-{n}@example.com", '["email"]', "[]", now))
        with cur.copy("COPY orders (id, event_id, customer_id, currency, occurred_at, items) FROM STDIN") as copy:
            for n in range(customers):
                at = now - timedelta(days=40 + n % 60, minutes=n % 1440)
                copy.write_row((f"order-{n:08d}", f"ev-{n}", f"cust-{n:08d}", "USD", at, items_json))
                if n % 10 == 0:
                    copy.write_row((f"order-{n:08d}-r", f"ev-{n}-r", f"cust-{n:08d}", "USD",
                                    now - timedelta(days=10), refill_json))
                else:
                    due += 1
        with cur.copy("COPY order_items (order_id, customer_id, line_key, sku, refill_sku, name, unit_price,"
                      " quantity, currency, occurred_at) FROM STDIN") as copy:
            for n in range(customers):
                at = now - timedelta(days=40 + n % 60, minutes=n % 1440)
                customer, order = f"cust-{n:08d}", f"order-{n:08d}"
                copy.write_row((order, customer, "shampoo-refill", "shampoo", "shampoo-refill", "Shampoo", "20.00",
                                1, "USD", at))
                copy.write_row((order, customer, "mug", "mug", None, "Mug", "12.00", 1, "USD", at))
                if n % 10 == 0:
                    copy.write_row((f"{order}-r", customer, "shampoo-refill", "shampoo-refill", None,
                                    "Shampoo refill", "14.00", 1, "USD", now - timedelta(days=10)))
        conn.commit()
        conn.autocommit = True
        for table in ("customers", "orders", "order_items"):
            cur.execute(f"ANALYZE {table}")
    return due


def child(url: str, campaigns_dir: str, now_iso: str) -> int:
    """The measured work, alone in this process: one campaign run."""
    from coupons.campaigns import latest_run_at
    from config.settings import load_settings
    from services.bootstrap import bootstrap
    from services.campaigns import load_all, run_campaign
    from services.ports import RELAY

    class CountsChunks:
        """The relay rings of the run: one per chunk that scheduled deliveries."""

        chunks = 0

        def ring(self, task: str, *args) -> None:
            self.chunks += task == RELAY

        def ring_after_commit(self, session, task: str, *args) -> None:
            from store.db import on_commit

            on_commit(session, lambda: self.ring(task, *args))

        def waiting(self, task: str) -> int | None:
            return None

    doorbell = CountsChunks()
    runtime = bootstrap(load_settings({
        "ENCORE_DATABASE_URL": url, "ENCORE_CAMPAIGNS_DIR": campaigns_dir,
        "ENCORE_CHANNEL_EMAIL": "mailto://127.0.0.1:2525?from=shop@example.com&to={email}",
        "ENCORE_DATA_DIR": campaigns_dir,
    }), doorbell=doorbell)
    [campaign], errors = load_all(runtime)
    assert not errors, errors
    scheduled_at = latest_run_at(campaign, datetime.fromisoformat(now_iso))
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    started = time.perf_counter()
    outcome = run_campaign(runtime, campaign, scheduled_at)
    elapsed = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"outcome": outcome, "seconds": elapsed, "peak_rss_mb": peak, "rss_at_start_mb": rss_before,
                      "chunks": doorbell.chunks, "scheduled_at": scheduled_at.isoformat()}), flush=True)
    return 0


def count(url: str, scheduled_at: str) -> tuple[int, int, int]:
    import psycopg

    key = f"campaign:bench-refill@{datetime.fromisoformat(scheduled_at).astimezone(UTC):%Y-%m-%dT%H:%M:%SZ}"
    with psycopg.connect(url) as conn:
        coupons = conn.execute("SELECT count(*), count(DISTINCT customer_id) FROM coupons WHERE trigger_key = %s",
                               (key,)).fetchone()
        scheduled = conn.execute("SELECT count(*) FROM deliveries d JOIN coupons c ON c.id = d.coupon_id "
                                 "WHERE c.trigger_key = %s AND d.state = 'scheduled'", (key,)).fetchone()
    assert coupons is not None and scheduled is not None  # count(*) always answers one row
    deliveries = scheduled[0]
    return coupons[0], coupons[1], deliveries


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench campaign", description=__doc__.split("\n")[0])
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    parser.add_argument("--child", nargs=3, metavar=("URL", "DIR", "NOW"), help=argparse.SUPPRESS)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.child:
        return child(*args.child)
    import tempfile

    import psycopg

    from store.db import engine_for

    name = f"encore_bench_{secrets.token_hex(4)}"
    url = f"{PG_BASE}/{name}"
    with psycopg.connect(ADMIN_DSN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        engine_for(url).dispose()
        now = datetime.now(UTC)
        log(f"loading {args.customers:,} customers into {name} (COPY)")
        started = time.perf_counter()
        due = load(url, args.customers, now)
        log(f"loaded in {time.perf_counter() - started:.1f}s; {due:,} due for a refill")
        with tempfile.TemporaryDirectory() as folder:
            with open(os.path.join(folder, "bench.toml"), "w") as f:
                f.write(CAMPAIGN)
            log("running the campaign in a child process (audience selection + planning)")
            result = subprocess.run([sys.executable, "-m", "bench", "campaign", "--child", url, folder, now.isoformat()],
                                    capture_output=True, text=True)
        if result.returncode != 0:
            print(result.stdout + result.stderr, file=sys.stderr)
            return 1
        report = json.loads(result.stdout.strip().splitlines()[-1])
        coupons, distinct, scheduled = count(url, report["scheduled_at"])
        ok = coupons == distinct == scheduled == due and report["outcome"] == "done"
        rate = due / report["seconds"] if report["seconds"] else 0.0
        print(f"customers stored      {args.customers:,} ({due:,} due)")
        print(f"run                   {report['seconds']:.1f}s, {rate:,.0f} customers planned/s, "
              f"{report['chunks']} chunks")
        print(f"peak RSS (run)        {report['peak_rss_mb']:.0f} MB (at start {report['rss_at_start_mb']:.0f} MB; "
              f"limit {RSS_LIMIT_MB} MB)")
        print(f"checks                {coupons:,} coupons, {distinct:,} customers, {scheduled:,} scheduled"
              f" -> {'ok' if ok else 'FAILED'}")
        print(f"campaign customers={args.customers} seconds={report['seconds']:.1f} rate={rate:.0f}/s "
              f"peak_rss_mb={report['peak_rss_mb']:.0f} checks={'ok' if ok else 'failed'}")
        return 0 if ok and report["peak_rss_mb"] < RSS_LIMIT_MB else 1
    finally:
        if not args.keep:
            from store.db import engine_for as cached

            cached.cache_clear()
            with psycopg.connect(ADMIN_DSN, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        else:
            log(f"kept database {name}")
