"""`encore review` and `encore preview` (SPEC section 9): the seller's workflow before
and after a livestream. The use cases are services/review.py and services/preview.py;
this module only reads the arguments and prints."""

from __future__ import annotations

import argparse
import json
import sys
from typing import TextIO


def add_parsers(commands: argparse._SubParsersAction) -> None:
    review = commands.add_parser("review", help="a stream's review: buyers, coupons, on time, redemptions, "
                                 "revenue, experiment groups, beside the shop's previous stream")
    review.add_argument("stream", help="the stream's id as the shop sent it")
    review.add_argument("--shop", default="default")
    review.add_argument("--json", action="store_true")
    preview = commands.add_parser("preview", help="each market's messages as the customer sees them, with "
                                  "sample data; --send-to sends them to yourself marked [TEST]")
    preview.add_argument("--shop", default="default")
    preview.add_argument("--market", help="one market's name (default: every market)")
    preview.add_argument("--locale", help="one language or locale, such as pt or pt-BR (default: each market's)")
    preview.add_argument("--offer", choices=("percent_off", "second_half_price", "refill"),
                         help="one offer type (default: every type)")
    preview.add_argument("--channel", help="one channel (default: every channel of the market)")
    preview.add_argument("--html", metavar="DIR", help="write each email's HTML part to a file in DIR")
    preview.add_argument("--send-to", metavar="ADDRESS",
                         help="send the previews to this email address or E.164 number through the configured "
                              "channels, marked [TEST], with a sample code no shop knows")


# ------------------------------------------------------------------ review


def cmd_review(args: argparse.Namespace) -> int:
    from services.bootstrap import bootstrap
    from services.review import UnknownStream, review
    from store.db import session_scope

    runtime = bootstrap()
    try:
        with session_scope(runtime.database_url) as session:
            report = review(session, runtime.markets, args.stream, args.shop)
    except UnknownStream as exc:
        print(f"encore review: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(report, ensure_ascii=False))
    else:
        write_review(report, sys.stdout)
    return 0


def _money(revenue: dict[str, str]) -> str:
    return ", ".join(f"{currency} {amount}" for currency, amount in revenue.items()) or "-"


def _figures_line(figures: dict) -> str:
    return (f"coupons {figures['coupons']:>6}  sent {figures['sent']:>6}  on time {figures['on_time_rate']:>7.1%}"
            f"  redeemed {figures['redeemed']:>5}  revenue {_money(figures['revenue'])}")


def write_review(report: dict, out: TextIO) -> None:
    """The review as text: totals, then per market and per channel, groups, and the previous stream."""
    out.write(f"stream {report['stream']} (shop {report['shop']}), ended {report['ended_at'] or 'not yet'}\n")
    held = sum(group["customers"] for group in report["groups"] if group["variant"] == "control")
    out.write(f"buyers {report['buyers']}  {_figures_line(report)}\n")
    if held:
        out.write(f"held out (control group: no message, no code): {held}\n")
    if report["late_events"]:
        out.write(f"late events (backfill, not counted in on time): {report['late_events']}\n")
    if report["last_message_seconds"] is not None:
        out.write(f"last message {report['last_message_seconds'] / 3600:.1f} h after the stream ended\n")
    out.write("per market\n")
    for row in report["markets"]:
        out.write(f"  {row['market']:<16} buyers {row['buyers']:>6}  {_figures_line(row)}\n")
    out.write("per channel\n")
    for row in report["channels"]:
        out.write(f"  {row['channel'] or '(none)':<16} {_figures_line(row)}\n")
    if report["groups"]:
        out.write("experiment groups (repurchase within the coupon's validity; 95% CI of the difference vs control)\n")
        for group in report["groups"]:
            rate = "-" if group["repurchase_rate"] is None else f"{group['repurchase_rate']:.1%}"
            ci = "" if group["ci95"] is None else f"  diff CI [{group['ci95'][0]:+.1%}, {group['ci95'][1]:+.1%}]"
            out.write(f"  {group['variant']:<16} customers {group['customers']:>6}  repurchased "
                      f"{group['repurchased']:>5}  rate {rate}{ci}\n")
    previous = report["previous"]
    if previous is None:
        out.write("previous stream: none\n")
    else:
        out.write(f"previous stream {previous['stream']}, ended {previous['ended_at']}\n")
        out.write(f"  buyers {previous['buyers']}  {_figures_line(previous)}\n")


# ------------------------------------------------------------------ preview


def cmd_preview(args: argparse.Namespace) -> int:
    from services.bootstrap import bootstrap
    from services.preview import PreviewError, preview_messages, send_previews, write_html

    runtime = bootstrap()
    try:
        previews = preview_messages(runtime, shop=args.shop, market=args.market, locale=args.locale,
                                    offer_type=args.offer, channel=args.channel)
    except PreviewError as exc:
        print(f"encore preview: {exc}", file=sys.stderr)
        return 2
    for item in previews:
        sys.stdout.write(item.text_block())
    if args.html:
        for path in write_html(previews, args.html):
            print(f"wrote {path}")
    if args.send_to:
        results = send_previews(runtime, previews, args.send_to)
        failed = [result for result in results if not result.ok]
        for result in results:
            print(f"sent {result.what} to {args.send_to} by {result.channel}: "
                  f"{'ok' if result.ok else 'failed (' + result.reason + ')'}")
        if not results:
            print(f"encore preview: no configured channel can reach {args.send_to!r}", file=sys.stderr)
            return 1
        return 1 if failed else 0
    return 0
