"""A worker asked to stop (SIGTERM at a deploy, `Runtime.stopping`) finishes the sends it
has in flight, records them, and hands the rest back to the relay as they were: the next
worker sends each exactly once (SPEC rule 19)."""

from __future__ import annotations

from tests.support import order_paid


def test_a_stop_mid_batch_finishes_the_send_in_flight_and_hands_back_the_rest(make_services):
    services = make_services(ENCORE_SEND_CONCURRENCY="1")
    services.emit(*[order_paid(f"e{i}", customer_id=f"c{i}", consent=["sms"], phone=f"+1415555010{i}",
                               timezone="UTC", occurred_at=services.clock()) for i in range(5)])

    def stop_during_the_first_send(_path: str) -> None:
        services.runtime.stopping.set()  # the signal arrives while the provider answers

    services.http.before_answer = stop_during_the_first_send
    services.relay_and_send()
    # Then the one in flight is sent and recorded; the others are due again, untouched
    rows = services.deliveries()
    assert services.http.count == 1
    assert sorted(row["state"] for row in rows) == ["scheduled"] * 4 + ["sent"]
    assert all(row["attempts"] == 0 and row["reason"] is None for row in rows if row["state"] == "scheduled")
    # ...and the next worker sends each of them once
    services.http.before_answer = None
    services.runtime.stopping.clear()
    services.relay_and_send()
    assert services.http.count == 5
    assert {row["state"] for row in services.deliveries()} == {"sent"}
