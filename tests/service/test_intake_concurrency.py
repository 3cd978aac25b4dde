"""Issue 7 items 3 and 14 on PostgreSQL: concurrent first events of one customer both
land (upserts, not read-then-insert), and the relay's backlog scan uses an index."""

from __future__ import annotations

import threading
from datetime import timedelta

import psycopg
import pytest
from sqlalchemy import func, select

from services.emit import emit_lines
from services.intake import apply_events
from store.db import session_factory, session_scope
from store.models import Customer, DeadLetter, Order
from tests.support import iso, order_paid, wait_until

pytestmark = pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)


def opt_out(event_id: str, customer_id: str, at) -> dict:
    return {"id": event_id, "type": "customer.opted_out", "occurred_at": iso(at),
            "data": {"customer_id": customer_id, "channels": ["sms"]}}


def store(services, *events: dict) -> None:
    import json

    lines = [("test", n, json.dumps(e)) for n, e in enumerate(events, 1)]
    emit_lines(services.runtime, lines, services.clock, lambda ids: None, lambda *reject: pytest.fail(str(reject)))


def waiting_on_a_lock(url: str) -> bool:
    with psycopg.connect(url) as connection:
        return connection.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                                  "AND wait_event_type = 'Lock'").fetchone()[0] > 0


@pytest.mark.parametrize("first, second", [("order", "order"), ("opt_out", "order"), ("opt_out", "opt_out"),
                                           ("order", "opt_out")])
def test_two_first_events_of_a_new_customer_applied_at_once_both_land(services, first, second):
    # Given two stored events of a customer never seen before
    now = services.clock()
    make = {"order": lambda n: order_paid(f"e-{n}", customer_id="new", occurred_at=now - timedelta(minutes=n),
                                          consent=["email", "sms"], timezone="UTC"),
            "opt_out": lambda n: opt_out(f"e-{n}", "new", now)}  # newer than the orders: it holds
    store(services, make[first](1), make[second](2))
    url = services.runtime.database_url
    # When worker A applies the first and holds its transaction open after inserting the customer,
    session_a = session_factory(url)()
    apply_events(session_a, services.runtime, ["e-1"], now)
    # and worker B applies the second meanwhile (it waits on A's row), then A commits
    errors: list[BaseException] = []

    def worker_b() -> None:
        try:
            with session_scope(url) as session_b:
                apply_events(session_b, services.runtime, ["e-2"], now)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    thread = threading.Thread(target=worker_b)
    thread.start()
    wait_until(lambda: waiting_on_a_lock(url) or not thread.is_alive(), timeout=30)
    session_a.commit()
    session_a.close()
    thread.join(30)
    # Then both events are applied: no dead letter, every order stored, the opt-out kept
    assert errors == []
    with session_scope(url) as session:
        assert session.scalars(select(DeadLetter.reason)).all() == []
        orders = session.scalar(select(func.count()).select_from(Order).where(Order.customer_id == "new"))
        assert orders == [first, second].count("order")
        customer = session.get(Customer, "new")
        if "opt_out" in (first, second):
            assert "sms" not in customer.consent
        if "order" in (first, second):
            assert customer.country == "US"


def test_the_relay_finds_unapplied_events_through_an_index_not_a_sort_of_the_backlog(services):
    from sqlalchemy import event as sa_event
    from sqlalchemy import text

    from services.relay import claim_unapplied_events
    from store.db import engine_for

    # Given a large applied history and a few unapplied events
    engine = engine_for(services.runtime.database_url)
    with engine.begin() as connection:
        connection.execute(text(
            "INSERT INTO events (id, type, occurred_at, received_at, payload, processed_at) "
            "SELECT 'done-' || n, 'order.paid', now(), now() - n * interval '1 second', '{}', now() "
            "FROM generate_series(1, 50000) AS n"))
        connection.execute(text(
            "INSERT INTO events (id, type, occurred_at, received_at, payload) "
            "SELECT 'todo-' || n, 'order.paid', now(), now(), '{}' FROM generate_series(1, 20) AS n"))
        connection.execute(text("ANALYZE events"))
    # When the relay's claim statement is explained
    captured: list[tuple[str, object]] = []

    def capture(conn, cursor, statement, parameters, context, executemany):
        captured.append((statement, parameters))

    sa_event.listen(engine, "before_cursor_execute", capture)
    try:
        with services.session() as session:
            claimed = claim_unapplied_events(session, services.clock() + timedelta(days=1), timedelta(seconds=300))
            session.rollback()
    finally:
        sa_event.remove(engine, "before_cursor_execute", capture)
    assert len(claimed) == 20
    [(statement, parameters)] = [c for c in captured if "events" in c[0]]
    with engine.connect() as connection:
        plan = "\n".join(row[0] for row in connection.exec_driver_sql("EXPLAIN " + statement, parameters))
    # Then it reads the partial index of unapplied rows, in claim order, with no sort and no table scan
    assert "ix_events_unapplied" in plan, plan
    assert "Sort" not in plan and "Seq Scan on events" not in plan, plan
