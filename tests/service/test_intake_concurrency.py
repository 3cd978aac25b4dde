"""On PostgreSQL: concurrent first events of one customer both land (upserts, not
read-then-insert, which loses one of them), and the relay's backlog scan uses an index
(a scan of the whole events table every 5 s grows with every order ever received)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select

from store.db import session_scope
from store.models import Customer, DeadLetter, Order
from tests.service.conftest import apply_while_another_batch_is_open, executed_statements, store_only
from tests.support import iso, order_paid

pytestmark = pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)


def opt_out(event_id: str, customer_id: str, at) -> dict:
    return {"id": event_id, "type": "customer.opted_out", "occurred_at": iso(at),
            "data": {"customer_id": customer_id, "channels": ["sms"]}}


@pytest.mark.parametrize("first, second", [("order", "order"), ("opt_out", "order"), ("opt_out", "opt_out"),
                                           ("order", "opt_out")])
def test_two_first_events_of_a_new_customer_applied_at_once_both_land(services, first, second):
    # Given two stored events of a customer never seen before
    now = services.clock()
    make = {"order": lambda n: order_paid(f"e-{n}", customer_id="new", occurred_at=now - timedelta(minutes=n),
                                          consent=["email", "sms"], timezone="UTC"),
            "opt_out": lambda n: opt_out(f"e-{n}", "new", now)}  # newer than the orders: it holds
    store_only(services, make[first](1), make[second](2))
    url = services.runtime.database_url
    # When worker A applies the first and holds its transaction open after inserting the customer,
    # and worker B applies the second meanwhile (it waits on A's row), then A commits
    errors = apply_while_another_batch_is_open(services, ["e-1"], ["e-2"])
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
    with executed_statements(services.runtime.database_url) as captured, services.session() as session:
        claimed = claim_unapplied_events(session, services.clock() + timedelta(days=1), timedelta(seconds=300))
        session.rollback()
    assert len(claimed) == 20
    [(statement, parameters)] = [c for c in captured if "events" in c[0]]
    with engine.connect() as connection:
        plan = "\n".join(row[0] for row in connection.exec_driver_sql("EXPLAIN " + statement, parameters))
    # Then it reads the partial index of unapplied rows, in claim order, with no sort and no table scan
    assert "ix_events_unapplied" in plan, plan
    assert "Sort" not in plan and "Seq Scan on events" not in plan, plan
