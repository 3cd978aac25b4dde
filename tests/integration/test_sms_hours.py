"""Rule 17 on real parts: a Celery worker on PostgreSQL and Redis keeps a Florida
customer's text for the morning while the same evening's email goes out.

The worker reads the real clock, so, as the other quiet-hour tests do, a customer is put
at a local hour by a fixed-offset zone (`zone_where_local_hour_is`), and "the next
morning comes" by moving that customer's zone to the morning and their delivery's next
attempt to now. Rule 17 reads local time in the customer's zone and the window of their
state (`region`), so a customer in zone X with region US-FL keeps Florida's 08:00-20:00.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import update

from store.db import session_scope
from store.models import Customer, Delivery
from tests.support import order_paid, wait_until, zone_where_local_hour_is


def _evening_zone() -> str:
    """A zone where it is 20:xx now: after Florida's 20:00, before the federal 21:00 and
    the market's quiet hours. Waits out the last two minutes of an hour, so the test
    does not run into 21:00."""
    wait_until(lambda: datetime.now(UTC).minute < 58, timeout=150)
    return zone_where_local_hour_is(20)


def test_a_florida_text_after_eight_in_the_evening_waits_for_the_morning_while_email_goes_now(stack):
    evening = _evening_zone()
    # Given, at 20:xx local, a Florida customer reachable by SMS only, and a Florida customer
    # who also gave an email: the market's order (email, sms) makes email their channel
    stack.emit(
        order_paid("e-fl-sms", customer_id="fl-sms", timezone=evening, region="US-FL", consent=["sms"],
                   phone="+13055550100"),
        order_paid("e-fl-both", customer_id="fl-both", timezone=evening, region="US-FL", consent=["email", "sms"],
                   email="both@example.com", phone="+13055550101"),
    )
    # Then the email goes out now
    assert stack.smtp.wait_for(1, timeout=30)
    assert stack.smtp.messages[0]["To"] == "both@example.com"
    wait_until(lambda: {r["customer_id"]: r["state"] for r in stack.deliveries()} ==
               {"fl-sms": "scheduled", "fl-both": "sent"})
    # and the text waits for 08:00 the next morning, local time, with nothing sent by SMS
    [text] = stack.deliveries("fl-sms")
    due = datetime.fromisoformat(text["due_at"].replace("Z", "+00:00")).astimezone(ZoneInfo(evening))
    now = datetime.now(UTC).astimezone(ZoneInfo(evening))
    assert (due.date(), due.hour, due.minute) == ((now + timedelta(days=1)).date(), 8, 0)
    assert stack.http.count == 0
    # When the morning comes
    with session_scope(stack.runtime.database_url) as session:
        session.execute(update(Customer).where(Customer.id == "fl-sms")
                        .values(timezone=zone_where_local_hour_is(9)))
        session.execute(update(Delivery).where(Delivery.customer_id == "fl-sms")
                        .values(next_attempt_at=datetime.now(UTC) - timedelta(seconds=1)))
    # Then the text goes out
    wait_until(lambda: stack.http.count == 1, timeout=30)
    assert stack.http.requests[0].path == "/sms/+13055550100"
    wait_until(lambda: stack.deliveries("fl-sms")[0]["state"] == "sent")


def test_a_text_the_relay_picks_in_the_evening_is_handed_back_not_sent(stack):
    # Given a Florida text planned for the morning
    evening = _evening_zone()
    stack.emit(order_paid("e-fl", customer_id="fl", timezone=evening, region="US-FL", consent=["sms"],
                          phone="+13055550102"))
    wait_until(lambda: [r["state"] for r in stack.deliveries()] == ["scheduled"])
    # When something makes it due now, in the evening (a hand edit, an older row)
    with session_scope(stack.runtime.database_url) as session:
        session.execute(update(Delivery).values(next_attempt_at=datetime.now(UTC) - timedelta(seconds=1)))
    # Then the worker's check before the attempt sends it back to the morning, unsent
    def moved_to_morning() -> bool:
        rows = stack.query(Delivery.__table__.select())
        return bool(rows) and rows[0].next_attempt_at > datetime.now(UTC) + timedelta(hours=10)
    wait_until(moved_to_morning, timeout=30)
    assert stack.http.count == 0
    assert stack.deliveries()[0]["state"] == "scheduled"
