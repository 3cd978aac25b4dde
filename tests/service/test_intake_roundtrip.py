"""Property: any event intake accepts is stored and applied on the real databases.
An event accepted at the edge and refused later by the driver or the planner is an
event the shop was told we have, and then lost."""

from __future__ import annotations

import copy
import itertools
import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from store.models import DeadLetter, InboxEvent, Order
from tests.support import iso
from tests.unit.test_events_fuzz import ALL_PATHS, VALID, edge_values

ROUND_TRIP = settings(max_examples=60, deadline=None, database=None,
                      suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
_serial = itertools.count()


def _event_with(path: tuple, value: object, now) -> str:
    n = next(_serial)
    event = copy.deepcopy(VALID)
    event["id"], event["occurred_at"] = f"rt-{n}", iso(now)
    event["data"]["order_id"], event["data"]["customer"]["id"] = f"rt-order-{n}", f"rt-customer-{n}"
    event["data"]["stream_id"] = None if n % 2 else f"rt-stream-{n}"
    if event["data"]["stream_id"] is None:
        del event["data"]["stream_id"]
    parent = event
    for part in path[:-1]:
        parent = parent.get(part) if isinstance(parent, dict) else parent[part]
        if parent is None:
            break
    else:
        parent[path[-1]] = "__VALUE__"
        if path in (("id",), ("data", "order_id")) and isinstance(value, str):
            value = f"{n}{value}"  # keep ids unique across examples
    text = json.dumps(event)
    literal = value if isinstance(value, str) and value.isdigit() else json.dumps(value)
    return text.replace('"__VALUE__"', literal)


@ROUND_TRIP
@given(path=st.sampled_from(ALL_PATHS), value=edge_values)
def test_any_accepted_event_is_stored_and_applied_without_a_dead_letter(services, path, value):
    # Given an order with one field replaced by an edge value
    text = _event_with(path, value, services.clock())
    # When it is emitted and applied
    rejected = services.emit(text)
    # Then either the edge rejected it, or it was stored, applied and its order kept
    with services.session() as session:
        if rejected:
            return
        event_id = json.loads(text)["id"]
        stored = session.get(InboxEvent, event_id)
        failures = session.scalar(select(func.count()).select_from(DeadLetter)
                                  .where(DeadLetter.source.in_(("apply", "plan"))))
        assert stored is not None and stored.processed_at is not None
        assert failures == 0, session.scalars(select(DeadLetter.reason)).all()
        assert session.scalar(select(func.count()).select_from(Order).where(Order.event_id == event_id)) == 1
