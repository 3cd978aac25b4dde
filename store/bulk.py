"""Many rows in one statement: insert them, skipping the ones whose key exists, and say
which went in (`insert_new`, `insert_new_rows`); fill a column by key (`fill_where_null`);
select by a list of keys (`one_of`); INSERT … ON CONFLICT on either database (`dialect_insert`).

On PostgreSQL the rows travel as one array per column (`INSERT … SELECT * FROM
unnest(:ids, :names, …)`), in psycopg's binary format: one short statement with a
handful of parameters, the same text every time. SQLAlchemy's executemany form (insertmanyvalues) sends a statement with
one placeholder per value instead -- 10,000 for 1,000 customers -- and psycopg rewrites a
statement of more than 50 parameters from scratch on every call (a regular-expression
pass over the whole text): a third of the intake worker's time in `python -m bench
intake` (py-spy), where the array form costs nothing; the same pass made planning's
INSERTs and IN lists a third of `plan_stream`'s time in `python -m bench fanout`.
SQLite keeps the executemany and IN forms.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Iterable
from typing import Any

from sqlalchemy import JSON, ColumnElement, DateTime, Integer, Row, String, Text, TypeDecorator, any_, bindparam, literal
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session


def dialect_insert(session: Session):
    """INSERT with ON CONFLICT for whichever database we are on."""
    return postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert


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


def _binder(column, dialect) -> Callable[[Any], Any]:
    """The column's bind conversion, looked up once per column (not once per value)."""
    if isinstance(column.type, JSON):
        return json.dumps
    processor = column.type.bind_processor(dialect)
    return processor if processor is not None else _unchanged


def _unchanged(value: Any) -> Any:
    return value


def _array(column, values: Iterable, dialect) -> list:
    """One column's values as psycopg sends them in an array parameter."""
    bind = _binder(column, dialect)
    return [None if value is None else bind(value) for value in values]


def insert_new(session: Session, model, rows: list[dict], key: list[str], returning: str) -> list:
    """INSERT every row (all with the same keys) unless `key` exists already; returns the
    `returning` column of the rows inserted (ON CONFLICT DO NOTHING … RETURNING)."""
    return [row[0] for row in insert_new_rows(session, model, rows, key, (returning,))]


def insert_new_rows(session: Session, model, rows: list[dict], key: list[str],
                    returning: tuple[str, ...]) -> list[Row]:
    """`insert_new`, returning the named columns of each inserted row."""
    if not rows:
        return []
    dialect = session.get_bind().dialect
    table = model.__table__
    if dialect.name != "postgresql":
        sqlite_statement = (sqlite.insert(table).on_conflict_do_nothing(index_elements=key)
                            .returning(*(table.c[name] for name in returning)))
        return list(session.execute(sqlite_statement, rows))
    columns = list(rows[0])
    table_of_rows, params = unnest({name: table.c[name] for name in columns}, rows, dialect)
    statement = (
        f'INSERT INTO {table.name} ({", ".join(f"{chr(34)}{name}{chr(34)}" for name in columns)}) '
        f"SELECT * FROM {table_of_rows} ON CONFLICT ({', '.join(key)}) DO NOTHING "
        f"RETURNING {', '.join(returning)}"
    )
    return list(session.connection().exec_driver_sql(statement, params))


def fill_where_null(session: Session, model, key: str, column: str, values: dict) -> None:
    """Set `column` to `values[key]` on each row whose `column` is still NULL: on
    PostgreSQL one UPDATE … FROM unnest(keys, values), not one UPDATE per row."""
    if not values:
        return
    dialect = session.get_bind().dialect
    table = model.__table__
    if dialect.name != "postgresql":
        session.execute(
            table.update().where(table.c[key] == bindparam("_key"), table.c[column].is_(None))
            .values({column: bindparam("_value")}),
            [{"_key": k, "_value": v} for k, v in values.items()],
        )
        return
    session.connection().exec_driver_sql(
        f'UPDATE {table.name} SET "{column}" = given.value '
        f"FROM unnest(CAST(%(keys)b AS {_array_type(table.c[key])}), "
        f"CAST(%(values)b AS {_array_type(table.c[column])})) AS given(key, value) "
        f'WHERE {table.name}."{key}" = given.key AND {table.name}."{column}" IS NULL',
        {"keys": _array(table.c[key], values.keys(), dialect),
         "values": _array(table.c[column], values.values(), dialect)},
    )


def one_of(session: Session, column, values: Collection) -> ColumnElement[bool]:
    """`column IN values`; on PostgreSQL as `= ANY(array)`, one parameter: an IN list
    of 1,000 placeholders costs psycopg a regular-expression pass over the whole
    statement on every call (see above), and PostgreSQL a parse of 1,000 literals."""
    if session.get_bind().dialect.name != "postgresql":
        return column.in_(values)
    return column == any_(literal(list(values), postgresql.ARRAY(column.type)))


def unnest(columns: dict[str, Any], rows: list[dict], dialect) -> tuple[str, dict[str, Any]]:
    """PostgreSQL: `unnest(…)` of one array per parameter name (typed as its column in
    `columns`), and the parameters: `rows` as a table in a statement of constant text."""
    # %(name)b: psycopg sends each array in binary; its text form escapes every element
    # with a regular expression (a third of `encore emit`'s time for the payload column).
    arrays = ", ".join(f"CAST(%({name})b AS {_array_type(column)})" for name, column in columns.items())
    params = {name: _array(column, (row[name] for row in rows), dialect) for name, column in columns.items()}
    return f"unnest({arrays})", params
