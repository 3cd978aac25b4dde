"""`encore emit`: JSON Lines in, events stored and enqueued, rejects reported.

Input is streamed in batches, so a file of a million lines never sits in memory;
each batch is committed to the inbox before its ids go to the broker. Lines may
come as bytes: each is decoded as UTF-8 on its own, so one undecodable line is
rejected and the others go on.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from coupons.event_arrays import split_array
from coupons.events import Event, EventError, load_json, parse_event
from coupons.shops import DEFAULT_SHOP, Shops
from store.db import session_scope

from .bootstrap import Runtime
from .failures import store_dead_letter
from .intake import store_events
from .ports import APPLY_EVENTS

log = logging.getLogger(__name__)

EMIT_BATCH = 1000


@dataclass
class EmitReport:
    accepted: int = 0
    rejected: int = 0
    enqueue_errors: int = 0


def emit_lines(runtime: Runtime, lines: Iterable[tuple[str, int, str | bytes]],
               on_reject: Callable[[str, int, str], None], *,
               on_accept: Callable[[str, int, str], None] | None = None,
               bom_on_first_line: bool = True) -> EmitReport:
    """`lines` yields (source, line number, text or bytes). Valid events are stored, then
    intake is rung with their ids (`runtime.doorbell`), and each is reported to
    `on_accept` (source, number, event id); each rejected one is dead-lettered and
    reported to `on_reject` (source, number, reason).

    `POST /events` passes the elements of its array as lines: one path for both, so the
    same text gets the same verdict and the same dead letter. A file's first line may
    start with a byte order mark (editors write one); an array element may not
    (`bom_on_first_line=False`)."""
    report = EmitReport()
    now = runtime.clock
    batch: list[tuple[str, int, Event]] = []
    rejects: list[tuple[str, int, str, str]] = []
    received_at = now()

    def flush() -> None:
        with session_scope(runtime.database_url) as session:
            new_ids = store_events(session, [event for _, _, event in batch], now())
            for source, number, text, reason in rejects:
                store_dead_letter(session, f"emit:{source}:{number}", text, reason, now(),
                                  claimed_shop(text, runtime.settings.shops))
        report.accepted += len(batch)
        report.rejected += len(rejects)
        if on_accept is not None:
            for source, number, event in batch:
                on_accept(source, number, event.id)
        for source, number, _, reason in rejects:
            on_reject(source, number, reason)
        if new_ids:
            try:
                runtime.doorbell.ring(APPLY_EVENTS, new_ids)
            except Exception:  # stored already: the relay re-enqueues after the lease
                log.warning("enqueueing %d stored events failed; the relay will retry", len(new_ids), exc_info=True)
                report.enqueue_errors += 1
        batch.clear()
        rejects.clear()
        nonlocal received_at
        received_at = now()

    for source, number, text in lines:
        if bom_on_first_line and number == 1 and text[:1] in ("\ufeff", b"\xef"):
            text = text.removeprefix("\ufeff") if isinstance(text, str) else text.removeprefix(b"\xef\xbb\xbf")
        if not text.strip():
            continue
        try:
            batch.append((source, number, parse_event(text, received_at, shops=runtime.settings.shops)))
        except EventError as exc:
            raw = text.decode("utf-8", "backslashreplace") if isinstance(text, bytes) else text
            rejects.append((source, number, raw, str(exc)))
        if len(batch) + len(rejects) >= EMIT_BATCH:
            flush()
    if batch or rejects:
        flush()
    return report


def claimed_shop(text: str, shops: Shops) -> str:
    """The shop a rejected event names, when it is one of the install's (its dead letter is
    listed under it); `default` when it names none, or none that exists."""
    try:
        shop = load_json(text).get("shop", DEFAULT_SHOP)
    except (EventError, AttributeError):
        return DEFAULT_SHOP
    return shop if isinstance(shop, str) and shop in shops.by_name else DEFAULT_SHOP


@dataclass(frozen=True)
class BodyOutcome:
    """What became of a `POST /events` body."""

    accepted: list[str] = field(default_factory=list)
    rejected: list[tuple[int, str]] = field(default_factory=list)  # (index in the request, reason)
    refused: str | None = None  # set when the body as a whole was refused: nothing of it was stored


def take_events_body(runtime: Runtime, body: bytes) -> BodyOutcome:
    """One event or a JSON array of events, as bytes: each element goes through the path of
    one `encore emit` line (`emit_lines`), its bytes never decoded and encoded again. A body
    that is empty, or an array whose elements cannot be told apart, is kept whole as a dead
    letter (source `http`); a single event that is not valid refuses the body."""
    try:
        elements = split_array(body)
    except EventError as exc:  # an array whose elements cannot be told apart: kept whole
        return _refuse_whole(runtime, body, str(exc))
    if elements is None and not body.strip(b" \t\n\r"):
        return _refuse_whole(runtime, body, "body: empty; send one event or a JSON array of events")
    outcome = BodyOutcome()
    lines = (("http", index, element) for index, element in enumerate([body] if elements is None else elements))
    emit_lines(runtime, lines, lambda _source, index, reason: outcome.rejected.append((index, reason)),
               on_accept=lambda _source, _index, event_id: outcome.accepted.append(event_id), bom_on_first_line=False)
    if elements is None and outcome.rejected:  # one event, not valid: the body is
        return BodyOutcome(refused=outcome.rejected[0][1])
    return outcome


def _refuse_whole(runtime: Runtime, body: bytes, reason: str) -> BodyOutcome:
    with session_scope(runtime.database_url) as session:
        store_dead_letter(session, "http", body.decode("utf-8", "backslashreplace"), reason, runtime.clock())
    return BodyOutcome(refused=reason)
