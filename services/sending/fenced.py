"""Fenced result writes: the SQL that applies a result only while the row is still ours.

A worker writes a delivery's result (and its attempt row) only while the row is still
`sending` under its own claim token, so a worker that stalled past its lease never
overwrites the new owner's result. On PostgreSQL a write is one statement, for one row
or for a group of rows of one shape, the attempt added only to the rows the update
applied; on SQLite the update, then the attempt, in the caller's transaction.
`group_commit.GroupWriter` runs these for a batch's sending threads.
"""

from __future__ import annotations

from collections import defaultdict
from functools import lru_cache

from sqlalchemy import Connection, String, bindparam, select
from sqlalchemy.orm import Session

from store.bulk import unnest
from store.db import rows_changed, table_of
from store.models import SENDING, Attempt, Delivery, UTCDateTime

_DELIVERIES = table_of(Delivery)
_ATTEMPTS = table_of(Attempt)

_ATTEMPT_COLUMNS = ("at", "channel", "outcome", "reason", "detail")
_ATTEMPT_TYPES = {"at": UTCDateTime(), "channel": String(), "outcome": String(), "reason": String(),
                  "detail": String()}


@lru_cache(maxsize=32)
def fenced_update(columns: tuple[str, ...]):
    """UPDATE one delivery only while it is `sending` under the writer's claim token."""
    return (_DELIVERIES.update()
            .where(_DELIVERIES.c.id == bindparam("delivery_id"),
                   _DELIVERIES.c.claim_token == bindparam("owner_token"),
                   _DELIVERIES.c.state == SENDING)
            .values({c: bindparam(f"new_{c}") for c in columns}))


_INSERT_ATTEMPT = _ATTEMPTS.insert().values(
    delivery_id=bindparam("delivery_id"), **{c: bindparam(f"attempt_{c}") for c in _ATTEMPT_COLUMNS})


@lru_cache(maxsize=32)
def _lone_write_postgresql(columns: tuple[str, ...], with_attempt: bool):
    """PostgreSQL, one row: the fenced update and, only if it applied, the attempt row,
    in one statement with scalar parameters. Returns the id if applied."""
    applied = fenced_update(columns).returning(_DELIVERIES.c.id)
    if not with_attempt:
        return applied
    applied_cte = applied.cte("applied")
    values = select(applied_cte.c.id,
                    *(bindparam(f"attempt_{c}", type_=_ATTEMPT_TYPES[c]) for c in _ATTEMPT_COLUMNS))
    return (_ATTEMPTS.insert().from_select(["delivery_id", *_ATTEMPT_COLUMNS], values)
            .add_cte(applied_cte).returning(_ATTEMPTS.c.delivery_id))


def _clean_detail(detail: str) -> str:
    # PostgreSQL text cannot hold NUL; a provider's answer may.
    return detail.replace("\x00", "")[:2000]


Write = tuple[dict, dict | None]
"""One result to write: the delivery's new columns (with its `delivery_id`), and the
attempt row to add if the row is still ours (None: no attempt, e.g. a reschedule)."""


def write_fenced(connection: Connection | Session, values: dict, attempt: dict | None) -> bool:
    """Apply `values` (and record `attempt`) if the row is still ours; True if it was."""
    return write_fenced_group(connection, values["claim_token"], [(values, attempt)])[0]


def write_fenced_group(connection: Connection | Session, token: str, writes: list[Write]) -> list[bool]:
    """Apply each write whose row is still `sending` under `token`, and add its attempt;
    True for each that applied. The fence is per row: a row another worker took over is
    left alone (and gets no attempt) while the others in the group apply. On PostgreSQL
    the writes of one shape (same columns, with or without an attempt) are one statement,
    so a group costs one round trip; SQLite runs them in the caller's transaction."""
    postgresql = (connection.get_bind() if isinstance(connection, Session) else connection).dialect.name == "postgresql"
    applied: set[int] = set()
    for (columns, with_attempt), group in by_shape(writes).items():
        if postgresql and len(group) > 1:
            driver = connection.connection() if isinstance(connection, Session) else connection
            applied.update(_write_group_postgresql(driver, token, columns, with_attempt, group))
            continue
        for values, attempt in group:
            params = {"delivery_id": values["delivery_id"], "owner_token": token,
                      **{f"new_{c}": values[c] for c in columns}, **_attempt_params(attempt)}
            if postgresql:
                # Scalar parameters: for one row, cheaper to send and to plan than arrays.
                if connection.execute(_lone_write_postgresql(columns, with_attempt), params).first() is not None:
                    applied.add(values["delivery_id"])
            elif rows_changed(connection.execute(fenced_update(columns), params)) == 1:
                applied.add(values["delivery_id"])
                if attempt is not None:
                    connection.execute(_INSERT_ATTEMPT, params)
    return [values["delivery_id"] in applied for values, _ in writes]


def by_shape(writes: list[Write]) -> dict[tuple[tuple[str, ...], bool], list[Write]]:
    """The writes by their columns and whether they add an attempt: one statement each."""
    shapes: dict[tuple[tuple[str, ...], bool], list[Write]] = defaultdict(list)
    for values, attempt in writes:
        columns = tuple(sorted(c for c in values if c not in ("delivery_id", "claim_token")))
        shapes[(columns, attempt is not None)].append((values, attempt))
    return shapes


def _attempt_params(attempt: dict | None) -> dict:
    if attempt is None:
        return {}
    return {**{f"attempt_{c}": attempt[c] for c in _ATTEMPT_COLUMNS}, "attempt_detail": _clean_detail(attempt["detail"])}


def _write_group_postgresql(connection: Connection, token: str, columns: tuple[str, ...], with_attempt: bool,
                            group: list[Write]) -> list[int]:
    """One statement for several rows: the fenced UPDATE joined to the rows (one binary
    array per column, store.bulk) and, in a CTE, the attempts of only the rows it
    updated; returns their ids. Rows go in id order, so that two statements lock rows
    they share in the same order."""
    types = {"delivery_id": _DELIVERIES.c.id, **{c: _DELIVERIES.c[c] for c in columns}}
    if with_attempt:
        types.update({f"attempt_{c}": _ATTEMPTS.c[c] for c in _ATTEMPT_COLUMNS})
    rows = [{**values, **_attempt_params(attempt)} for values, attempt in sorted(group, key=lambda w: w[0]["delivery_id"])]
    table_of_rows, params = unnest(types, rows, connection.dialect)
    params["owner_token"] = token
    return list(connection.exec_driver_sql(_group_statement(columns, with_attempt, table_of_rows), params).scalars())


@lru_cache(maxsize=32)
def _group_statement(columns: tuple[str, ...], with_attempt: bool, table_of_rows: str) -> str:
    """The text of `_write_group_postgresql`'s statement: the same for every group of a shape."""
    update = (f"UPDATE deliveries SET {', '.join(f'{chr(34)}{c}{chr(34)} = v.{c}' for c in columns)} "
              f"FROM {table_of_rows} AS v(delivery_id, {', '.join(columns)}"
              f"{''.join(f', attempt_{c}' for c in _ATTEMPT_COLUMNS) if with_attempt else ''}) "
              f"WHERE deliveries.id = v.delivery_id AND deliveries.claim_token = %(owner_token)s "
              f"AND deliveries.state = '{SENDING}' RETURNING v.delivery_id")
    if not with_attempt:
        return update
    return (f"WITH applied AS ({update}{''.join(f', v.attempt_{c}' for c in _ATTEMPT_COLUMNS)}) "
            f"INSERT INTO attempts (delivery_id, {', '.join(f'{chr(34)}{c}{chr(34)}' for c in _ATTEMPT_COLUMNS)}) "
            f"SELECT * FROM applied RETURNING delivery_id")
