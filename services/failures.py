"""Dead letters and failure reasons, shared by intake, planning and replay.

A reason is what an operator reads in `encore dead-letters` and in the logs: the
error's type and the first line of its message, never SQL, bound parameters or
DETAIL lines, which may hold customer data (emails, phones)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select, text
from sqlalchemy.exc import StatementError
from sqlalchemy.orm import Session

from coupons.privacy import mask_personal_data
from coupons.shops import DEFAULT_SHOP
from store.models import DeadLetter


def storable_text(value: str) -> str:
    """Text any database accepts: NUL and unpaired surrogates shown as escapes."""
    if "\x00" in value:
        value = value.replace("\x00", "\\u0000")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        value = value.encode("utf-8", "backslashreplace").decode("utf-8")
    return value


def failure_reason(exc: BaseException) -> str:
    """A dead letter's or log line's reason: the error's type and the first line of its
    message, without SQL, bound parameters or DETAIL lines (they may hold customer data)."""
    inner = exc.orig if isinstance(exc, StatementError) and exc.orig is not None else exc
    lines = str(inner).strip().splitlines()
    first = lines[0] if lines else ""
    first = mask_personal_data(first)
    return storable_text(f"{type(inner).__name__}: {first[:200]}")


def _source_column(source: str) -> str:
    """`source` as the String(64) column holds it (the middle left out)."""
    return source if len(source) <= 64 else source[:20] + "…" + source[-43:]


def store_dead_letter(session: Session, source: str, raw: str, reason: str, now: datetime,
                      shop: str = DEFAULT_SHOP) -> int:
    """`shop`: the event's or trigger's shop when it is known (`default` when not)."""
    letter = DeadLetter(source=_source_column(source), raw=storable_text(raw), reason=storable_text(reason),
                        received_at=now, shop=shop)
    session.add(letter)
    session.flush()
    return letter.id


def store_dead_letter_once(session: Session, source: str, raw: str, reason: str, now: datetime,
                           shop: str = DEFAULT_SHOP) -> int | None:
    """A dead letter for a delivery a sender repeats (a webhook retried under the same id):
    stored the first time only, so retries do not pile up copies. `source` names the
    delivery; None when it is already kept. On PostgreSQL a transaction lock on it makes
    two copies arriving at once store one letter."""
    source = _source_column(source)
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(7151, hashtext(:source))"), {"source": source})
    if session.scalar(select(DeadLetter.id).where(DeadLetter.source == source).limit(1)) is not None:
        return None
    return store_dead_letter(session, source, raw, reason, now, shop)
