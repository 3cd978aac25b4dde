"""Engines, sessions and the schema: upgraded by Alembic on first use, no manual step."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import lru_cache
from typing import Any, cast
from pathlib import Path

from sqlalchemy import Connection, CursorResult, Engine, Result, Table, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
_upgrade_lock = threading.Lock()

POOL_SIZE = 2
POOL_OVERFLOW = 2
"""PostgreSQL connections per process: at most 4. A task uses one at a time (a send
batch holds one for its results, shared by all its sending threads), the second
covers a claim or relay pass beside it, the overflow what tests and `encore serve` do
at once. So one `encore worker --concurrency 2` (the Procfile) holds at most 8, and
ten of them 80, inside PostgreSQL's default max_connections of 100 with room for
beat (4) and a few admin sessions (README, "Database connections")."""
_upgraded: set[str] = set()


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    """WAL lets readers run beside the one writer; busy_timeout makes writers queue, not fail.

    The driver's own transaction handling is switched off so `_begin_immediate` decides."""
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _begin_immediate(connection) -> None:
    """Take SQLite's write lock when a transaction starts. A transaction that reads
    first and writes later gets "database is locked" at once when another process
    writes in between (SQLite refuses to wait there, to avoid a deadlock); taking the
    lock up front makes it wait its turn under busy_timeout instead."""
    connection.exec_driver_sql("BEGIN IMMEDIATE")


def make_engine(url: str) -> Engine:
    """An engine whose error texts never include bound parameters (customer data)."""
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 30}, hide_parameters=True)
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "begin", _begin_immediate)
        return engine
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    # psycopg prepares a statement after 5 runs, and PostgreSQL then may switch to a
    # generic plan that ignores the `IN (...)` lists of the hot path and scans whole
    # tables (seen in `python -m bench fanout` runs: PostgreSQL busier than the workers).
    # hide_parameters: error texts (logs, dead letters) must not carry customer emails or phones.
    return create_engine(url, pool_pre_ping=True, pool_size=POOL_SIZE, max_overflow=POOL_OVERFLOW,
                         hide_parameters=True,
                         connect_args={"options": "-c plan_cache_mode=force_custom_plan",
                                       # A failover or a dead host must not hang a worker for minutes.
                                       "connect_timeout": 10})


def upgrade_schema(engine: Engine) -> None:
    """Bring the database to the newest migration (idempotent, safe from several processes)."""
    from alembic import command
    from alembic.config import Config

    key = str(engine.url)
    with _upgrade_lock:
        if key in _upgraded:
            return
        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS_DIR))
        sqlite = engine.dialect.name == "sqlite"
        with engine.connect() as connection:
            if sqlite:
                # A migration that alters a table on SQLite copies it, drops it and renames the
                # copy (Alembic's batch mode); dropping a table that other rows refer to fails
                # while foreign keys are enforced. Alembic's documentation ("Dealing with
                # Referencing Foreign Keys") says to turn them off meanwhile, which SQLite only
                # takes outside a transaction; they are checked before the commit instead.
                _driver(connection).execute("PRAGMA foreign_keys=OFF")
            try:
                with connection.begin():
                    if engine.dialect.name == "postgresql":
                        # Several workers may start at once: one migrates, the others wait.
                        connection.exec_driver_sql("SELECT pg_advisory_xact_lock(715517)")
                    config.attributes["connection"] = connection
                    command.upgrade(config, "head")
                    if sqlite and connection.exec_driver_sql("PRAGMA foreign_key_check").first() is not None:
                        raise RuntimeError("the upgraded database has rows whose references are broken")
            finally:
                if sqlite:
                    _driver(connection).execute("PRAGMA foreign_keys=ON")
        _upgraded.add(key)


@lru_cache(maxsize=8)
def engine_for(url: str) -> Engine:
    engine = make_engine(url)
    upgrade_schema(engine)
    return engine


@lru_cache(maxsize=8)
def session_factory(url: str) -> sessionmaker[Session]:
    return sessionmaker(engine_for(url), expire_on_commit=False)


@contextmanager
def session_scope(url: str) -> Iterator[Session]:
    """A unit of work: commit on success, roll back on any error."""
    session = session_factory(url)()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def on_commit(session: Session, callback: Callable[[], None]) -> None:
    """Run `callback` right after `session`'s outermost transaction commits; drop it if
    that transaction rolls back. What it announces is then in the database before anyone
    hears of it (a doorbell rung inside the transaction could be answered before the
    commit, or for rows a rollback removed). Savepoints neither run nor drop it."""
    pending: list[Callable[[], None]] | None = session.info.get(_ON_COMMIT)
    if pending is None:
        pending = session.info[_ON_COMMIT] = []
        event.listen(session, "after_commit", _run_on_commit)
        event.listen(session, "after_transaction_end", _drop_on_rollback)
    pending.append(callback)


_ON_COMMIT = "encore_on_commit"


def _run_on_commit(session: Session) -> None:
    if session.in_nested_transaction():
        return  # a savepoint released: the outer transaction may still roll back
    pending = session.info[_ON_COMMIT]
    callbacks, pending[:] = list(pending), []
    for callback in callbacks:
        callback()


def _drop_on_rollback(session: Session, transaction) -> None:
    if transaction.parent is None:
        session.info[_ON_COMMIT].clear()  # after a commit it is empty already


def rows_changed(result: Result[Any]) -> int:
    """How many rows an UPDATE or DELETE changed: what `Session.execute` returns for one
    is a `CursorResult`, which its signature does not say."""
    return cast(CursorResult[Any], result).rowcount


def table_of(model: Any) -> Table:
    """A model's `Table`, for Core statements (the ORM declares `__table__` as a
    `FromClause`, which has no `update()` or `insert()` in its signature)."""
    return cast(Table, model.__table__)


def _driver(connection: Connection) -> Any:
    """The DB-API connection under `connection`: statements on it bypass SQLAlchemy's
    transaction (SQLite takes `PRAGMA foreign_keys` only outside one)."""
    driver = connection.connection.driver_connection
    if driver is None:
        raise RuntimeError("the database connection is closed")
    return driver
