"""Channels passed over before they were tried (SPEC rules 16-18), in-process on SQLite and
PostgreSQL: a suppressed email address (rule 18) and SMS hours that open only after the
deadline (rule 17) leave one attempt row each, outcome `skipped`, not counted in
`attempts`, and `encore deliveries --json` lists them in `skipped`, as WhatsApp's."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import select

from services.email_feedback import record_feedback
from store.models import Attempt, Delivery
from tests.support import order_paid

SHIPPED = Path(__file__).resolve().parents[2] / "coupons" / "markets.toml"
MIAMI = dict(country="US", region="US-FL", timezone="America/New_York")


def attempts_of(services, customer_id: str) -> list[tuple]:
    with services.session() as session:
        return [tuple(row) for row in session.execute(
            select(Attempt.channel, Attempt.outcome, Attempt.reason).join(Delivery, Delivery.id == Attempt.delivery_id)
            .where(Delivery.customer_id == customer_id).order_by(Attempt.id)).all()]


def complaint(services, email: str) -> None:
    at = services.clock().isoformat()
    assert record_feedback(services.runtime, {"type": "complaint", "email": email, "occurred_at": at},
                           services.clock()) == {"suppressed": 1, "transient": 0}


def sms_paths(services) -> list[str]:
    return [request.path for request in services.http.requests if request.path.startswith("/sms/")]


# -- a suppressed email address (rule 18) ---------------------------------------------------------------------------

def test_a_suppressed_address_at_planning_sends_by_sms_and_lists_email_as_skipped(services):
    # Given a Miami customer (08:00 there: inside Florida's SMS hours) whose address complained before
    complaint(services, "ana@example.com")
    # When they order, agreeing to email and texts (email comes first in north_america)
    services.emit(order_paid("e1", customer_id="ana", occurred_at=services.clock(), consent=["email", "sms"],
                             email="ana@example.com", phone="+13055550100", **MIAMI))
    services.relay_and_send()
    # Then the coupon goes by SMS, and email shows as passed over, once, not as an attempt
    [row] = services.deliveries()
    assert (row["state"], row["channel"], row["attempts"]) == ("sent", "sms", 1)
    assert row["skipped"] == [{"channel": "email", "reason": "email_suppressed"}]
    assert attempts_of(services, "ana") == [("email", "skipped", "email_suppressed"), ("sms", "sent", "sent")]
    assert services.smtp.messages == [] and sms_paths(services) == ["/sms/+13055550100"]


def test_an_address_suppressed_after_planning_is_passed_over_at_send_time(services):
    # Given a delivery planned for email while the address was still good
    services.emit(order_paid("e1", customer_id="ana", occurred_at=services.clock(), consent=["email", "sms"],
                             email="ana@example.com", phone="+13055550100", **MIAMI))
    assert attempts_of(services, "ana") == []
    # When a complaint comes in before it is sent
    complaint(services, "Ana@Example.com")
    services.relay_and_send()
    # Then the sender passes email over for SMS, with the same one row
    [row] = services.deliveries()
    assert (row["state"], row["channel"], row["attempts"]) == ("sent", "sms", 1)
    assert row["skipped"] == [{"channel": "email", "reason": "email_suppressed"}]
    assert attempts_of(services, "ana") == [("email", "skipped", "email_suppressed"), ("sms", "sent", "sent")]


def test_a_stream_of_suppressed_and_good_addresses_records_one_skip_per_suppressed_delivery(services):
    # Given two suppressed addresses among five buyers planned in one chunk
    complaint(services, "b1@example.com")
    complaint(services, "b3@example.com")
    services.emit(*(order_paid(f"e{n}", customer_id=f"b{n}", occurred_at=services.clock(), consent=["email", "sms"],
                               email=f"b{n}@example.com", phone=f"+1305555010{n}", **MIAMI) for n in range(5)))
    services.relay_and_send()
    rows = {row["customer_id"]: row for row in services.deliveries()}
    assert {c: (r["channel"], r["skipped"]) for c, r in rows.items()} == {
        "b0": ("email", []), "b2": ("email", []), "b4": ("email", []),
        "b1": ("sms", [{"channel": "email", "reason": "email_suppressed"}]),
        "b3": ("sms", [{"channel": "email", "reason": "email_suppressed"}]),
    }
    assert all(row["state"] == "sent" and row["attempts"] == 1 for row in rows.values())


# -- SMS hours that open after the deadline (rule 17) ---------------------------------------------------------------

def test_a_florida_text_late_in_the_evening_before_the_deadline_moves_to_email(make_services, clock, tmp_path):
    # Given a seller who texts first in north_america
    shipped = SHIPPED.read_text()
    north_america = shipped.index("[north_america]")
    texts_first = (shipped[:north_america]
                   + shipped[north_america:].replace('channels = ["email", "sms"]', 'channels = ["sms", "email"]', 1))
    assert texts_first != shipped
    markets = tmp_path / "markets.toml"
    markets.write_text(texts_first)
    services = make_services(ENCORE_MARKETS_FILE=str(markets))
    # And a Miami order from 21:00 yesterday that arrives at 20:30 today: Florida's SMS hours
    # ended at 20:00 and open again at 08:00 tomorrow, after the 21:00 deadline
    clock.now = datetime(2026, 3, 11, 0, 30, tzinfo=UTC)  # 20:30 EDT on the 10th
    services.emit(order_paid("e1", customer_id="fl", occurred_at=datetime(2026, 3, 10, 1, 0, tzinfo=UTC),
                             consent=["sms", "email"], email="fl@example.com", phone="+13055550100", **MIAMI))
    services.relay_and_send()
    # Then the coupon goes by email before quiet hours, and SMS shows as passed over
    [row] = services.deliveries()
    assert (row["state"], row["channel"], row["attempts"]) == ("sent", "email", 1)
    assert row["skipped"] == [{"channel": "sms", "reason": "sms_hours"}]
    assert attempts_of(services, "fl") == [("sms", "skipped", "sms_hours"), ("email", "sent", "sent")]
    assert len(services.smtp.messages) == 1 and sms_paths(services) == []


def test_sms_hours_past_the_deadline_at_planning_leave_one_row_though_the_sender_sees_them_too(make_services, clock,
                                                                                             tmp_path):
    # Given a seller who texts first, and Mississippi's statute read strictly: no texts on Sundays
    shipped = SHIPPED.read_text()
    north_america = shipped.index("[north_america]")
    strict = (shipped[:north_america] + shipped[north_america:]
              .replace('channels = ["email", "sms"]', 'channels = ["sms", "email"]', 1)
              .replace('US-MS = ["08:00", "20:00"]', 'US-MS = { every_day = ["08:00", "20:00"], sunday = "none" }', 1))
    assert strict.count('sunday = "none"') == 1
    markets = tmp_path / "markets.toml"
    markets.write_text(strict)
    services = make_services(ENCORE_MARKETS_FILE=str(markets))
    # When a customer in Jackson orders at 20:30 on a Saturday: no text before Monday 08:00,
    # after the deadline (Sunday 20:30), so the planner passes SMS over for email
    clock.now = datetime(2026, 3, 15, 1, 30, tzinfo=UTC)  # 20:30 CDT, Saturday the 14th
    services.emit(order_paid("e1", customer_id="ms", occurred_at=clock(), consent=["sms", "email"],
                             email="ms@example.com", phone="+16015550100", country="US", region="US-MS",
                             timezone="America/Chicago"))
    assert attempts_of(services, "ms") == [("sms", "skipped", "sms_hours")]  # written with the delivery
    services.relay_and_send()
    # Then the email goes at once, and the sender, which passes SMS over too, adds no second row
    [row] = services.deliveries()
    assert (row["state"], row["channel"], row["attempts"]) == ("sent", "email", 1)
    assert row["skipped"] == [{"channel": "sms", "reason": "sms_hours"}]
    assert attempts_of(services, "ms") == [("sms", "skipped", "sms_hours"), ("email", "sent", "sent")]
