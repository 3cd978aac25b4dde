"""Insert many rows in one statement, skipping the ones whose key exists, and say which went in.

On PostgreSQL the rows travel as one array per column (`INSERT … SELECT * FROM
unnest(:ids, :names, …)`), in psycopg's binary format: one short statement with a
handful of parameters, the same text every time. SQLAlchemy's executemany form (insertmanyvalues) sends a statement with
one placeholder per value instead -- 10,000 for 1,000 customers -- and psycopg rewrites a
statement of more than 50 parameters from scratch on every call (a regular-expression
pass over the whole text): a third of the intake worker's time in `python -m bench
intake` (py-spy), where the array form costs nothing. SQLite keeps the executemany form.
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import JSON, DateTime, Integer, String, Text, TypeDecorator
from sqlalchemy.dialects import sqlite
from sqlalchemy.orm import Session


def _array_type(column) -> str:
    kind = column.type.impl if isinstance(column.type, TypeDecorator) else column.type
    if isinstance(kind, JSON):
        return "json[]"
    if isinstance(kind, DateTime):
        return "timestamptz[]" if kind.timezone else "timestamp[]"
    if isinstance(kind, Integer):
        return "bigint[]"
    if isinstance(kind, (String, Text)):
        return "text[]"
    raise TypeError(f"{column}: no array form for {column.type!r}")


def _bind(column, value: Any, dialect) -> Any:
    if value is None:
        return None
    if isinstance(column.type, JSON):
        return json.dumps(value)
    processor = column.type.bind_processor(dialect)
    return processor(value) if processor is not None else value


def insert_new(session: Session, model, rows: list[dict], key: list[str], returning: str) -> list:
    """INSERT every row (all with the same keys) unless `key` exists already; returns the
    `returning` column of the rows inserted (ON CONFLICT DO NOTHING … RETURNING)."""
    if not rows:
        return []
    dialect = session.get_bind().dialect
    table = model.__table__
    if dialect.name != "postgresql":
        statement = sqlite.insert(table).on_conflict_do_nothing(index_elements=key).returning(table.c[returning])
        return list(session.execute(statement, rows).scalars())
    columns = list(rows[0])
    table_of_rows, params = unnest({name: table.c[name] for name in columns}, rows, dialect)
    statement = (
        f'INSERT INTO {table.name} ({", ".join(f"{chr(34)}{name}{chr(34)}" for name in columns)}) '
        f"SELECT * FROM {table_of_rows} ON CONFLICT ({', '.join(key)}) DO NOTHING RETURNING {returning}"
    )
    return list(session.connection().exec_driver_sql(statement, params).scalars())


def unnest(columns: dict[str, Any], rows: list[dict], dialect) -> tuple[str, dict[str, Any]]:
    """PostgreSQL: `unnest(…)` of one array per parameter name (typed as its column in
    `columns`), and the parameters: `rows` as a table in a statement of constant text."""
    # %(name)b: psycopg sends each array in binary; its text form escapes every element
    # with a regular expression (a third of `encore emit`'s time for the payload column).
    arrays = ", ".join(f"CAST(%({name})b AS {_array_type(column)})" for name, column in columns.items())
    params = {name: [_bind(column, row[name], dialect) for row in rows] for name, column in columns.items()}
    return f"unnest({arrays})", params
