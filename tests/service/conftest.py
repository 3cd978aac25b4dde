"""The service tier: use cases called in-process on real SQLite and PostgreSQL,
with a fake clock and the local SMTP/HTTP stand-ins. Seconds per scenario, where
a worker subprocess costs tens of seconds; the subprocess tier keeps what only a
real worker shows (crashes, brokers, concurrency between processes)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest

from channels.sinks import HttpSink, SmtpSink
from tests.support import FakeClock, RecordingDoorbell


@pytest.fixture()
def clock() -> FakeClock:
    # A fixed Tuesday noon UTC: daytime in the Americas and Europe, evening in Asia.
    return FakeClock(datetime(2026, 3, 10, 12, 0, tzinfo=UTC))


@pytest.fixture()
def sinks() -> Iterator[tuple[SmtpSink, HttpSink]]:
    smtp, http = SmtpSink(), HttpSink()
    smtp.start()
    http.start()
    yield smtp, http
    smtp.stop()
    http.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'encore.db'}"
    return request.getfixturevalue("postgres_url")


@dataclass
class Services:
    """One in-process Encore on a real database: store, apply, relay and send by hand.
    Its doorbell records rings (`tests.support.RecordingDoorbell`); `emit` answers the
    intake and planner rings as their workers would, the relay's are left to the test."""

    runtime: object
    clock: FakeClock
    smtp: SmtpSink
    http: HttpSink

    @property
    def doorbell(self) -> RecordingDoorbell:
        return self.runtime.doorbell

    def session(self):
        from store.db import session_scope

        return session_scope(self.runtime.database_url)

    def emit(self, *events: dict | str) -> list[tuple[int, str]]:
        """Store and apply events as `encore emit` + the intake and plan tasks would; returns rejections."""
        from services.emit import emit_lines

        rejected: list[tuple[int, str]] = []
        lines = [("test", n, e if isinstance(e, str) else json.dumps(e)) for n, e in enumerate(events, 1)]
        emit_lines(self.runtime, lines, lambda _s, n, why: rejected.append((n, why)))
        self.answer_intake()
        return rejected

    def answer_intake(self) -> None:
        """Answer the rings for intake and the planner, as their workers would, until none is left."""
        from services.intake import apply_events
        from services.ports import APPLY_EVENTS, PLAN_STREAM

        while rings := self.doorbell.take(APPLY_EVENTS, PLAN_STREAM):
            for task, args in rings:
                if task == APPLY_EVENTS:
                    with self.session() as session:
                        apply_events(session, self.runtime, *args, self.clock())
                else:
                    self.plan_stream(*args)

    def plan_stream(self, stream_id: str) -> None:
        from services.stream_planning import plan_stream

        plan_stream(self.runtime, stream_id)

    def relay_and_send(self) -> int:
        """One relay pass and the send of everything it found due; returns how many ids."""
        from services.relay import claim_due_deliveries, release_expired_leases
        from services.sender import send_deliveries

        lease = timedelta(seconds=self.runtime.settings.lease_seconds)
        with self.session() as session:
            release_expired_leases(session, self.clock())
            ids = claim_due_deliveries(session, self.clock(), lease)
        if ids:
            send_deliveries(self.runtime, ids, self.clock)
        return len(ids)

    def deliveries(self, customer_id: str | None = None) -> list[dict]:
        from services.reports import deliveries

        with self.session() as session:
            return deliveries(session, customer_id)

    def status(self) -> dict:
        from services.reports import status

        with self.session() as session:
            return status(session)


@pytest.fixture()
def make_services(database_url, clock, sinks, tmp_path):
    """Build an in-process Encore; keyword arguments override ENCORE_* settings."""
    from config.settings import load_settings
    from services.bootstrap import bootstrap

    smtp, http = sinks

    def make(**env: str) -> Services:
        settings_env = {
            "ENCORE_DATA_DIR": str(tmp_path / "var"),
            "ENCORE_DATABASE_URL": database_url,
            "ENCORE_CHANNEL_EMAIL": f"mailto://127.0.0.1:{smtp.port}?from=shop@example.com&to={{email}}",
            "ENCORE_CHANNEL_SMS": f"json://127.0.0.1:{http.port}/sms/{{phone}}",
            "ENCORE_CHANNEL_WHATSAPP": f"json://127.0.0.1:{http.port}/whatsapp/{{whatsapp}}",
            "ENCORE_RETRY_BASE_SECONDS": "60",
            "ENCORE_LEASE_SECONDS": "300",
            **env,
        }
        runtime = bootstrap(load_settings({k: v for k, v in settings_env.items() if v is not None}), clock=clock,
                            doorbell=RecordingDoorbell())
        return Services(runtime, clock, smtp, http)

    return make


@pytest.fixture()
def services(make_services) -> Services:
    return make_services()


def write_campaign(folder, file: str, **fields) -> None:
    """A campaign file in `folder` from keyword fields (strings are quoted, lists and
    numbers written as TOML); `raw=` writes the text as given."""
    folder.mkdir(parents=True, exist_ok=True)
    if "raw" in fields:
        (folder / file).write_text(fields["raw"])
        return
    lines = []
    for key, value in fields.items():
        if isinstance(value, bool):
            lines.append(f"{key} = {'true' if value else 'false'}")
        elif isinstance(value, str) and not value.startswith("{"):
            lines.append(f'{key} = "{value}"')
        elif isinstance(value, list):
            lines.append(f"{key} = [{', '.join(chr(34) + v + chr(34) for v in value)}]")
        else:
            lines.append(f"{key} = {value}")
    (folder / file).write_text("\n".join(lines) + "\n")


class CampaignServices(Services):
    """`Services` plus what beat's campaign runner and `encore campaigns run` do."""

    def campaign(self, name: str):
        from services.campaigns import find_campaign

        campaign, problem = find_campaign(self.runtime, name)
        assert campaign is not None, problem
        return campaign

    def run_campaign(self, name: str) -> str:
        """`encore campaigns run NAME`: the latest occurrence, enabled or not."""
        from coupons.campaigns import latest_run_at
        from services.campaigns import run_campaign

        campaign = self.campaign(name)
        return run_campaign(self.runtime, campaign, latest_run_at(campaign, self.clock()))

    def campaign_tick(self) -> list[str]:
        """One tick of beat's campaign runner, and the runs it starts; returns their outcomes."""
        from services.campaigns import due_runs, load_all, run_campaign

        campaigns, _ = load_all(self.runtime)
        with self.session() as session:
            due = due_runs(session, campaigns, self.clock())
        return [run_campaign(self.runtime, run.campaign, run.scheduled_at) for run in due]

    def campaign_deliveries(self) -> list[dict]:
        return [row for row in self.deliveries() if row["trigger"] == "campaign"]


@pytest.fixture()
def campaigns_dir(tmp_path):
    return tmp_path / "campaigns"


@pytest.fixture()
def campaign_services(make_services, campaigns_dir) -> CampaignServices:
    campaigns_dir.mkdir(parents=True, exist_ok=True)
    base = make_services(ENCORE_CAMPAIGNS_DIR=str(campaigns_dir))
    return CampaignServices(base.runtime, base.clock, base.smtp, base.http)


# --- intake helpers shared by the intake test modules ------------------------------------

def store_only(services: Services, *events: dict) -> None:
    """Store events in the inbox as `encore emit` does, without applying them (their ring
    to intake is dropped, as a lost message would be)."""
    from services.emit import emit_lines
    from services.ports import APPLY_EVENTS

    lines = [("test", n, json.dumps(e)) for n, e in enumerate(events, 1)]
    emit_lines(services.runtime, lines, lambda *reject: pytest.fail(str(reject)))
    services.doorbell.take(APPLY_EVENTS)


def allow_connections(database_url: str, allowed: bool) -> None:
    """Open or close a PostgreSQL test database to connections; closing also ends the
    ones it has: a database outage as a worker sees it."""
    import psycopg

    dbname = database_url.rsplit("/", 1)[1]
    admin = database_url.rsplit("/", 1)[0] + "/test"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'ALTER DATABASE "{dbname}" ALLOW_CONNECTIONS {str(allowed).lower()}')
        if not allowed:
            conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                         "WHERE datname = %s AND pid <> pg_backend_pid()", (dbname,))


def waiting_on_a_lock(url: str) -> bool:
    """True when a session of this PostgreSQL database waits on a lock."""
    import psycopg

    with psycopg.connect(url) as connection:
        return connection.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                                  "AND wait_event_type = 'Lock'").fetchone()[0] > 0


def apply_while_another_batch_is_open(services: Services, first: list[str], second: list[str]) -> list[BaseException]:
    """Worker A applies `first` and keeps its transaction open; worker B applies `second`
    meanwhile (it must wait on A's rows or locks); then A commits and B finishes.
    Returns what B raised."""
    import threading

    from services.intake import apply_events
    from store.db import session_factory, session_scope
    from tests.support import wait_until

    url = services.runtime.database_url
    now = services.clock()
    session_a = session_factory(url)()
    apply_events(session_a, services.runtime, first, now)
    errors: list[BaseException] = []

    def worker_b() -> None:
        try:
            with session_scope(url) as session_b:
                apply_events(session_b, services.runtime, second, now)
        except BaseException as exc:  # noqa: BLE001 - reported to the test
            errors.append(exc)

    thread = threading.Thread(target=worker_b)
    thread.start()
    wait_until(lambda: waiting_on_a_lock(url) or not thread.is_alive(), timeout=30)
    session_a.commit()
    session_a.close()
    thread.join(30)
    return errors


@contextmanager
def executed_statements(database_url: str) -> Iterator[list[tuple[str, object]]]:
    """The (statement, parameters) the engine of `database_url` runs inside the block."""
    from sqlalchemy import event

    from store.db import engine_for

    executed: list[tuple[str, object]] = []
    engine = engine_for(database_url)

    def capture(conn, cursor, statement, parameters, context, executemany):
        executed.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", capture)
    try:
        yield executed
    finally:
        event.remove(engine, "before_cursor_execute", capture)
