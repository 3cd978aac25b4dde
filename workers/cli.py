"""The `encore` command line (SPEC section 4)."""

from __future__ import annotations

import argparse
import json
import os
import select
import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any, TextIO

from sqlalchemy.orm import Session

from coupons.errors import ConfigError, EncoreError
from coupons.shops import Shops, UnknownShopError
from services.ports import Doorbell

from . import stream_commands


def _lines(paths: list[str]) -> Iterator[tuple[str, int, bytes]]:
    """Raw bytes per line (stdin and files alike): each line is decoded on its own, so
    one undecodable line is rejected and the rest are kept. A line longer than an event
    may be is cut (it is rejected as too large) without holding all of it in memory."""
    from coupons.events import MAX_EVENT_BYTES

    for path in paths or ["-"]:
        stream = sys.stdin.buffer if path == "-" else open(path, "rb")
        try:
            number = 0
            while line := stream.readline(MAX_EVENT_BYTES + 2):
                number += 1
                if len(line) > MAX_EVENT_BYTES + 1 and not line.endswith(b"\n"):
                    while (rest := stream.readline(1 << 20)) and not rest.endswith(b"\n"):
                        pass
                yield path, number, line
        finally:
            if stream is not sys.stdin.buffer:
                stream.close()


def cmd_emit(args: argparse.Namespace) -> int:
    from services.emit import emit_lines
    from tasks.app import runtime

    for path in args.files:
        if path != "-" and (not Path(path).exists() or Path(path).is_dir()):  # a pipe (`<(...)`) is read too
            print(f"encore emit: {path}: no such file", file=sys.stderr)
            return 2
    several = len(args.files) > 1

    def on_reject(source: str, number: int, reason: str) -> None:
        where = f"{source}: line {number}" if several else f"line {number}"
        print(f"{where}: {reason}", file=sys.stderr)

    doorbell = QuietDoorbell(runtime().doorbell)
    report = emit_lines(replace(runtime(), doorbell=doorbell), _lines(args.files), on_reject)
    print(f"accepted {report.accepted}, rejected {report.rejected}")
    if doorbell.failure:
        print(f"encore emit: the broker did not answer ({doorbell.failure}); the {report.accepted} accepted events "
              "are stored, and the relay (encore beat) enqueues them once the broker is back", file=sys.stderr)
    # SPEC section 4: 0 when no line was rejected. Lines the broker did not take are still
    # accepted: stored, and enqueued by the relay (the line above says so).
    return 1 if report.rejected else 0


class QuietDoorbell:
    """Rings through `doorbell` until a ring fails once, then stays quiet: what it
    announces is already stored in the database, and the relay enqueues it once the broker
    is back. Trying again for every batch would only make the user wait for each failure.
    `failure` is the first error's message, for the one line the user sees."""

    def __init__(self, doorbell: Doorbell) -> None:
        self.doorbell = doorbell
        self.failure: str | None = None

    def ring(self, task: str, *args: Any) -> None:
        if self.failure is not None:
            return
        try:
            self.doorbell.ring(task, *args)
        except Exception as exc:  # noqa: BLE001 - whatever the transport raises, the rows are stored
            self.failure = (str(exc).splitlines() or [type(exc).__name__])[0]

    def ring_after_commit(self, session: Session, task: str, *args: Any) -> None:
        from store.db import on_commit

        on_commit(session, lambda: self.ring(task, *args))

    def waiting(self, task: str) -> int | None:
        return self.doorbell.waiting(task)


def cmd_worker(args: argparse.Namespace, extra: list[str]) -> int:
    from tasks.app import app, runtime
    from tasks.doorbell import QUEUES

    runtime()  # fail fast on bad settings, and point the app at them, before Celery starts (its pool inherits both)

    argv = ["worker", "-Q", ",".join(QUEUES), "--loglevel", "INFO", *extra]
    app.worker_main(argv)
    return 0


def cmd_beat(args: argparse.Namespace, extra: list[str]) -> int:
    from services.campaigns import load_all
    from tasks.app import app, runtime

    campaigns, errors = load_all(runtime())
    print(f"encore beat: {len(campaigns)} campaign(s) loaded", file=sys.stderr)
    for error in errors:
        print(f"encore beat: campaign file skipped: {error}", file=sys.stderr)

    app.start(["beat", "--loglevel", "INFO", *extra])
    return 0


class UnknownShopOption(ConfigError):
    """`--shop` names no shop of the install."""


def chosen_shop(args: argparse.Namespace, shops: Shops) -> str | None:
    """The shop `--shop` names (None: every shop); UnknownShopOption names the option."""
    if getattr(args, "shop", None) is None:
        return None
    if args.shop not in shops.by_name:
        try:
            shops.get(args.shop)
        except UnknownShopError as exc:
            raise UnknownShopOption(f"--shop: {exc}") from None
    return args.shop


def cmd_status(args: argparse.Namespace) -> int:
    from services.reports import late_events, status
    from services.bootstrap import bootstrap
    from store.db import session_scope

    runtime = bootstrap()
    shop = chosen_shop(args, runtime.settings.shops)
    with session_scope(runtime.database_url) as session:
        report = status(session, shop)
        backfills = late_events(session, shop)
    if args.json:
        print(json.dumps(report))
        return 0
    print(f"events      accepted {report['events']['accepted']}, rejected {report['events']['rejected']}")
    print("deliveries  " + ", ".join(f"{state} {count}" for state, count in report["deliveries"].items()))
    print(f"on time     {report['on_time_rate']:.1%} of finished deliveries sent before their deadline"
          + (f" ({backfills} late events, backfills, not counted)" if backfills else ""))
    latency = report["latency_seconds"]
    print(f"latency     p50 {latency['p50']:.1f}s, p95 {latency['p95']:.1f}s, p99 {latency['p99']:.1f}s (due → sent)")
    return 0


def cmd_deliveries(args: argparse.Namespace) -> int:
    from services.reports import customer_id_width, iter_deliveries
    from services.bootstrap import bootstrap
    from store.db import session_scope

    runtime = bootstrap()
    shops = runtime.settings.shops
    shop = chosen_shop(args, shops)
    with session_scope(runtime.database_url) as session:
        rows = iter_deliveries(session, args.customer, shop=shop, shops=shops)
        if args.json:
            write_json_array(rows, sys.stdout)
            return 0
        write_delivery_table(rows, customer_id_width(session, args.customer, shop=shop, shops=shops), sys.stdout,
                             shop_width=max(map(len, shops.by_name)) if len(shops.by_name) > 1 else 0)
    return 0


def write_json_array(rows: Iterable[dict], out: TextIO) -> None:
    """A JSON array written element by element, so a million rows never sit in memory at once."""
    out.write("[")
    for index, row in enumerate(rows):
        out.write(",\n" if index else "\n")
        out.write(json.dumps(row, ensure_ascii=False))
    out.write("\n]\n")


def write_delivery_table(rows: Iterable[dict], customer_width: int, out: TextIO, shop_width: int = 0) -> None:
    """One line per delivery; with `shop_width` (an install with several shops), a first
    column names each delivery's shop."""
    width = max(8, customer_width)
    shop_column = (lambda shop: f"{shop:<{max(4, shop_width)}} ") if shop_width else (lambda shop: "")
    out.write(f"{shop_column('shop')}{'customer':<{width}} {'state':<10} {'reason':<14} {'channel':<9} {'offer':<30} {'code':<18} "
              f"{'due_at':<21} sent_at\n")
    for row in rows:
        offer = row["offer"]
        what = f"{offer['type']} {offer.get('price') or str(offer.get('percent')) + '%'} {offer['currency']}"
        out.write(f"{shop_column(row['shop'])}{row['customer_id']:<{width}} {row['state']:<10} {row['reason'] or '':<14} "
                  f"{row['channel'] or '':<9} {what:<30} {row['code'] or '-':<18} {row['due_at']:<21} "
                  f"{row['sent_at'] or ''}\n")


def cmd_dead_letters(args: argparse.Namespace) -> int:
    from services.dead_letters import list_dead_letters
    from services.bootstrap import bootstrap
    from store.db import session_scope

    runtime = bootstrap()
    shops = runtime.settings.shops
    shop = chosen_shop(args, shops)
    with session_scope(runtime.database_url) as session:
        rows = list_dead_letters(session, include_replayed=args.all, shop=shop)
    if args.json:
        print(json.dumps(rows, ensure_ascii=False))
        return 0
    if not rows:
        print("no dead letters")
    several = len(shops.by_name) > 1
    for row in rows:
        print(f"{row['id']:<8} {row['kind']:<9} " + (f"{row['shop']:<16} " if several else "") +
              f"{row['at'] or '':<21} {row['source'][:24]:<24} {row['reason']}")
    return 0


def cmd_replay(args: argparse.Namespace) -> int:
    from services.dead_letters import replay
    from services.ports import APPLY_EVENTS, RELAY, SYNC_CODES
    from store.db import session_scope
    from tasks.app import runtime

    fixed = Path(args.file).read_bytes() if args.file else None
    if fixed is not None and len(args.ids) != 1:
        print("encore replay: --file takes exactly one id", file=sys.stderr)
        return 2
    failures = 0
    process = runtime()
    doorbell = QuietDoorbell(process.doorbell)
    for item_id in args.ids:
        with session_scope(process.database_url) as session:
            result = replay(session, item_id, process.clock(), fixed, process)
        print(f"{item_id}: {result.message}")
        failures += not result.ok
        if result.event_id:
            doorbell.ring(APPLY_EVENTS, [result.event_id])
        if result.code_sync:
            doorbell.ring(SYNC_CODES)
        if result.delivery_id:
            doorbell.ring(RELAY)
    if doorbell.failure:
        print(f"encore replay: the broker did not answer ({doorbell.failure}); what was "
              "replayed is stored, and the relay (encore beat) picks it up once the broker is back", file=sys.stderr)
    return 1 if failures else 0


def _counts_line(counts: dict) -> str:
    audience = ", ".join(f"{market} {n}" for market, n in sorted(counts["audience"].items())) or "none"
    suppressed = ", ".join(f"{reason} {n}" for reason, n in sorted(counts["suppressed"].items())) or "0"
    return (f"audience {audience}; planned {counts['planned']}; suppressed {suppressed}; "
            f"sent {counts['sent']}, failed {counts['failed']}, expired {counts['expired']}, "
            f"waiting {counts['scheduled'] + counts['sending']}")


def cmd_campaigns(args: argparse.Namespace) -> int:
    from services.bootstrap import bootstrap
    from services.campaigns import load_all, overview
    from store.db import session_scope

    if args.action == "run":
        return cmd_campaigns_run(args)
    runtime = bootstrap()
    shop = chosen_shop(args, runtime.settings.shops)
    campaigns, errors = load_all(runtime)
    with session_scope(runtime.database_url) as session:
        report = overview(session, campaigns, errors, runtime.clock(), shop)
    if args.json:
        print(json.dumps(report, ensure_ascii=False))
        return 0
    if not report["campaigns"] and not report["errors"]:
        print("no campaigns")
    for item in report["campaigns"]:
        markets = ", ".join(item["markets"]) or "every market"
        print(f"{item['name']}  {'enabled' if item['enabled'] else 'disabled'}  {item['schedule']} ({item['timezone']})"
              f"  {item['audience']} {item['days']} days  {markets}  [{item['file']}]")
        print(f"  next run  {item['next_run']['local']}  =  {item['next_run']['utc']}")
        last = item["last_run"]
        if last is None:
            print("  last run  never")
        else:
            print(f"  last run  {last['scheduled_at']} {last['state']}: {_counts_line(last['counts'])}")
    for error in report["errors"]:
        print(f"broken  {error['error']}")
    return 0


def cmd_campaigns_run(args: argparse.Namespace) -> int:
    from coupons.campaigns import iso_utc, latest_run_at
    from services.campaigns import find_campaign, find_run, preview, run_campaign, run_counts
    from store.db import session_scope
    from tasks.app import runtime as process_runtime

    runtime = process_runtime()
    campaign, problem = find_campaign(runtime, args.name)
    if campaign is None:
        print(f"encore campaigns run: {problem}", file=sys.stderr)
        return 2
    scheduled_at = latest_run_at(campaign, runtime.clock())
    when = iso_utc(scheduled_at)
    if args.dry_run:
        with session_scope(runtime.database_url) as session:
            result = preview(session, runtime, campaign, scheduled_at)
            session.rollback()
        total = sum(result.audience.values())
        per_market = ", ".join(f"{market} {n}" for market, n in sorted(result.audience.items()))
        print(f"dry run of {campaign.name} at {when}: audience {total}" + (f" ({per_market})" if total else ""))
        for customer_id, language, channel, message in result.samples:
            print(f"\n--- {customer_id} ({language}, {channel})")
            if message.subject:
                print(f"Subject: {message.subject}")
            print(message.text.rstrip())
        print("\nnothing was sent or stored")
        return 0
    doorbell = QuietDoorbell(runtime.doorbell)
    outcome = run_campaign(replace(runtime, doorbell=doorbell), campaign, scheduled_at)
    if doorbell.failure:
        print("warning: the broker did not answer; beat's relay tick will send the planned deliveries",
              file=sys.stderr)
    with session_scope(runtime.database_url) as session:
        run = find_run(session, campaign.name, scheduled_at)
        counts = run_counts(session, campaign.name, scheduled_at, run.planned if run else 0)
    messages = {
        "done": f"{campaign.name} run of {when}: done",
        "missed": f"{campaign.name} run of {when}: missed — its 24 h window has passed, nothing sent",
        "busy": f"{campaign.name} run of {when}: already running elsewhere",
        "already_done": f"{campaign.name} run of {when}: already done (a run happens once)",
    }
    print(messages.get(outcome, f"{campaign.name} run of {when}: {outcome}"))
    print(f"  {_counts_line(counts)}")
    return 1 if outcome == "missed" else 0


def cmd_check(args: argparse.Namespace) -> int:
    from services.bootstrap import utcnow
    from services.check import check_all

    failed = 0
    for line in check_all(utcnow()):
        print(line, flush=True)
        failed += not line.ok
    print("all parts usable" if not failed else f"{failed} part(s) not usable")
    return 1 if failed else 0


def cmd_demo(args: argparse.Namespace) -> int:
    from workers.demo import run_demo

    return run_demo(buyers=args.buyers)


def cmd_procfile(args: argparse.Namespace) -> int:
    """The Procfile: the one the wheel ships (`workers/Procfile`), else, in a source
    checkout, the repository's own. `encore procfile > Procfile` gives a wheel's user one."""
    sys.stdout.write(procfile_text())
    return 0


def procfile_text() -> str:
    from importlib import resources

    shipped = resources.files("workers") / "Procfile"
    if shipped.is_file():
        return shipped.read_text(encoding="utf-8")
    return (Path(__file__).resolve().parents[1] / "Procfile").read_text(encoding="utf-8")


def cmd_serve(args: argparse.Namespace) -> int:
    from config.settings import load_settings

    if not load_settings().webhook_secret:
        print("encore serve: ENCORE_WEBHOOK_SECRET is not set; every request that changes something is signed "
              "with it (SPEC section 6). Set it to a long random string shared with the shop.", file=sys.stderr)
        return 2
    from web.app import serve

    return serve(args.host, args.port)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="encore", description="Shop events to repurchase coupons within 24 hours.")
    commands = parser.add_subparsers(dest="command", required=True)
    emit = commands.add_parser("emit", help="store and enqueue JSON Lines events")
    emit.add_argument("files", nargs="*", default=["-"], help="JSON Lines files, or - for standard input")
    commands.add_parser("worker", help="run a Celery worker on every queue (extra args go to Celery)")
    commands.add_parser("beat", help="run the scheduler (extra args go to Celery)")
    status = commands.add_parser("status", help="counts and timings")
    status.add_argument("--json", action="store_true")
    deliveries = commands.add_parser("deliveries", help="one row per delivery")
    deliveries.add_argument("--customer", help="a customer id as the shop sent it (in every shop, unless --shop)")
    deliveries.add_argument("--json", action="store_true")
    dead = commands.add_parser("dead-letters", help="rejected events and failed deliveries, with reasons")
    dead.add_argument("--json", action="store_true")
    dead.add_argument("--all", action="store_true", help="include dead letters already replayed")
    replay = commands.add_parser("replay", help="re-submit rejected events (L<n>) or re-queue failed deliveries (D<n>)")
    replay.add_argument("ids", nargs="+")
    replay.add_argument("--file", help="the fixed event text to use instead of the stored one (one id only)")
    campaigns = commands.add_parser("campaigns", help="scheduled campaigns: next runs and last runs' counts")
    campaigns.add_argument("--json", action="store_true")
    for parser_with_shop in (status, deliveries, dead, campaigns):
        parser_with_shop.add_argument("--shop", help="only this shop's (a shop of ENCORE_SHOPS_FILE); default: every shop")
    campaign_actions = campaigns.add_subparsers(dest="action")
    campaign_run = campaign_actions.add_parser("run", help="run a campaign's latest occurrence now, if not run yet")
    campaign_run.add_argument("name")
    campaign_run.add_argument("--dry-run", action="store_true",
                              help="print the audience per market and three sample messages; send and store nothing")
    commands.add_parser("check", help="check settings, database, broker channel templates and campaign files; exit 1 if any fails")
    demo = commands.add_parser("demo", help="the whole pipeline on embedded defaults")
    demo.add_argument("--buyers", type=int, default=40, help="buyers in the sample livestream")
    commands.add_parser("procfile", help="print the Procfile (one line per process to run in production)")
    serve = commands.add_parser("serve", help="the HTTP service: signed events, Shopify, redemption, "
                                "unsubscribe, metrics, dashboard")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8000, help="port to listen on (default 8000)")
    stream_commands.add_parsers(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command. A reader that goes away (`encore deliveries | head`) ends it
    quietly with exit 1, as Python's documentation advises ("Note on SIGPIPE", signal
    module): flush inside the try, then point stdout at devnull so the flush at exit
    cannot fail again. SIGPIPE itself keeps Python's default (ignored): restoring the
    system default would also kill a worker whose broker or database socket breaks."""
    try:
        code = _run(argv)
        sys.stdout.flush()
        return code
    except BrokenPipeError:
        if not _stdout_reader_gone():
            raise  # a socket's broken pipe (broker, database) is a real error
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1


def _stdout_reader_gone() -> bool:
    """True when standard output is a pipe or socket whose reader has closed it
    (POSIX poll reports POLLERR on the write end of such a pipe)."""
    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        return any(events & (select.POLLERR | select.POLLHUP) for _, events in poller.poll(0))
    except (AttributeError, OSError, ValueError):  # no poll() on this platform, or no real stdout
        return True


def _run(argv: list[str] | None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    if argv and argv[0] in ("worker", "beat"):
        args, extra = parser.parse_known_args(argv)
        runner = cmd_worker if argv[0] == "worker" else cmd_beat
        return _refusals_reported(lambda: runner(args, extra))
    args = parser.parse_args(argv)
    handlers = {"emit": cmd_emit, "status": cmd_status, "deliveries": cmd_deliveries, "demo": cmd_demo,
                "dead-letters": cmd_dead_letters, "replay": cmd_replay, "check": cmd_check,
                "campaigns": cmd_campaigns, "serve": cmd_serve, "procfile": cmd_procfile,
                "review": stream_commands.cmd_review, "preview": stream_commands.cmd_preview}
    return _refusals_reported(lambda: handlers[args.command](args))


def _refusals_reported(command: Callable[[], int]) -> int:
    """Run `command`; what Encore refuses on purpose is one line naming the field or
    setting at fault, not a traceback: exit 2 for configuration the operator must fix,
    1 for anything else refused."""
    try:
        return command()
    except ConfigError as exc:
        print(f"encore: {exc}", file=sys.stderr)
        return 2
    except EncoreError as exc:
        print(f"encore: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
