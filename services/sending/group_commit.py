"""Group commit on a batch's one database connection, and patience through an outage.

A batch's sending threads share one connection, so a batch holds one connection
however many sends are in flight. A result that arrives while the connection is busy
is queued, and the next thread to get the connection writes everything queued by then
(`fenced.write_fenced_group`: one statement per shape on PostgreSQL). Nothing waits
for more results to arrive, so the crash window does not grow. A database outage is
waited out while the lease holds: the provider has accepted the message, and giving
up would mean sending it again after the lease.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import partial
from datetime import datetime, timedelta
from typing import TypeVar

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import InterfaceError, OperationalError

from .fenced import Write, by_shape, write_fenced_group

log = logging.getLogger(__name__)

T = TypeVar("T")

RECORD_SAFETY_FRACTION = 10
"""A write that meets a database outage is retried until the lease is this fraction
from running out; the fence keeps a later write harmless anyway."""
MIN_RECORD_PATIENCE_SECONDS = 1.0
MAX_RECORD_WAIT_SECONDS = 2.0


def write_patience(verified_at: datetime, lease: timedelta, now: datetime) -> float:
    """Seconds a write may keep retrying: while the lease still holds, less a margin."""
    left = verified_at + lease - now - lease / RECORD_SAFETY_FRACTION
    return max(left.total_seconds(), MIN_RECORD_PATIENCE_SECONDS)


@dataclass(eq=False)
class _Ticket:
    """One thread's results waiting for the batch's connection (group commit)."""

    writes: list[Write]
    signal: threading.Event = field(default_factory=threading.Event)
    lead: bool = False  # this thread writes the next group (it was signalled to, or found no writer)
    applied: list[bool] = field(default_factory=list)
    error: BaseException | None = None


class GroupWriter:
    """One batch's database connection, shared by its sending threads. `lock` serialises
    everything that uses it (a write or a renewal is one round trip), so a database
    outage being waited out by one thread also holds every other thread before its next
    send: nothing new goes out while results cannot be recorded.

    On PostgreSQL the connection runs in autocommit with synchronous_commit off and
    generic plans, and a result (or a group of results) is one statement: a killed
    worker cannot lose a result PostgreSQL received. A write retries through a
    database outage (reconnect, back off) for `patience()` seconds.

    `on_written(ids)` is called with the ids of every write of a group (applied or not),
    under `lock`, once the group is written."""

    def __init__(self, engine: Engine, token: str, *, patience: Callable[[], float],
                 on_written: Callable[[Iterable[int]], None], sleep: Callable[[float], None] = time.sleep):
        self.engine = engine
        self.token = token
        self.patience = patience
        self.on_written = on_written
        self.sleep = sleep
        self.connection: Connection | None = None
        self.lock = threading.RLock()
        self._queue_lock = threading.Lock()
        self._queued: list[_Ticket] = []
        self._writing = False  # a thread is writing a group (it hands the lead on when done)

    def queued(self) -> int:
        """How many threads' results wait for the connection."""
        with self._queue_lock:
            return len(self._queued)

    def write_all(self, writes: list[Write]) -> list[bool]:
        """Queue the writes; if no group is being written, write the queue now, else wait
        until the writer has written them or hands this thread the lead. Raises what the
        write of their group raised (a database outage outlasting the lease's patience)."""
        if not writes:
            return []
        ticket = _Ticket(writes)
        with self._queue_lock:
            self._queued.append(ticket)
            ticket.lead = not self._writing
            self._writing = True
        if not ticket.lead:
            ticket.signal.wait()
        if ticket.lead:
            self._write_group()
        if ticket.error is not None:
            raise ticket.error
        return ticket.applied

    def _write_group(self) -> None:
        """Write every queued result in one go, tell their threads, and hand the lead to
        the first result queued meanwhile (its thread writes the next group at once)."""
        group: list[_Ticket] = []
        try:
            with self.lock:  # the connection is free: take all that is queued by now
                with self._queue_lock:
                    group, self._queued = self._queued, []
                writes = [write for ticket in group for write in ticket.writes]
                applied: set[int] = set()
                # One retried round trip per shape (rarely more than one), so a retry
                # after an outage never re-runs a statement that had already applied.
                for shape in by_shape(writes).values():
                    done: list[bool] = self.execute(partial(write_fenced_group, token=self.token, writes=shape))
                    applied.update(values["delivery_id"] for (values, _), ok in zip(shape, done, strict=True) if ok)
                self.on_written(values["delivery_id"] for values, _ in writes)
            for ticket in group:
                ticket.applied = [values["delivery_id"] in applied for values, _ in ticket.writes]
        except BaseException as error:  # noqa: BLE001 - raised in each waiting thread instead
            for ticket in group:
                ticket.error = error
        finally:
            with self._queue_lock:
                following = self._queued[0] if self._queued else None
                if following is not None:
                    following.lead = True
                self._writing = following is not None
            for ticket in group:
                ticket.signal.set()
            if following is not None:
                following.signal.set()

    def execute(self, work: Callable[[Connection], T]) -> T:
        """Run `work` on the connection (in a transaction on SQLite), reconnecting and
        retrying through a database outage for up to `patience()` seconds."""
        give_up_at = time.monotonic() + self.patience()
        wait = 0.05
        while True:
            try:
                connection = self._open()
                if self.engine.dialect.name == "postgresql":
                    return work(connection)
                with connection.begin():
                    return work(connection)
            except (OperationalError, InterfaceError) as error:
                self.close(broken=True)
                if time.monotonic() + wait > give_up_at:
                    raise
                log.warning("database unavailable for claim %s (%s); retrying in %.2fs", self.token[:8],
                            type(error.orig).__name__ if error.orig is not None else type(error).__name__, wait)
                self.sleep(wait)
                wait = min(wait * 2, MAX_RECORD_WAIT_SECONDS)

    def _open(self) -> Connection:
        if self.connection is None:
            connection = self.engine.connect()
            try:
                if self.engine.dialect.name == "postgresql":
                    connection = connection.execution_options(isolation_level="AUTOCOMMIT")
                    connection.exec_driver_sql("SET synchronous_commit TO OFF")
                    # Its statements are few and fixed (fenced writes by id, the renewal by
                    # ids): their generic plans are the custom ones, without planning each
                    # run (a third of PostgreSQL's CPU per result write).
                    connection.exec_driver_sql("SET plan_cache_mode TO force_generic_plan")
            except BaseException:
                connection.invalidate()
                connection.close()
                raise
            self.connection = connection
        return self.connection

    def close(self, broken: bool = False) -> None:
        with self.lock:
            self._close(broken)

    def _close(self, broken: bool) -> None:
        if self.connection is None:
            return
        connection, self.connection = self.connection, None
        try:
            if broken:
                connection.invalidate()
            elif self.engine.dialect.name == "postgresql":
                connection.exec_driver_sql("RESET synchronous_commit")
                connection.exec_driver_sql("RESET plan_cache_mode")
        finally:
            connection.close()
