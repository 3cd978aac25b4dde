"""The text forms of `encore deliveries` and `encore review`: a held-out customer's row
has no code to print, and the review reads as the seller's summary."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta

from coupons.review import Buyer, DeliveryRow, StreamFacts, stream_review
from workers.cli import write_delivery_table
from workers.stream_commands import write_review

END = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)


def test_a_held_out_delivery_prints_without_a_code():
    row = {"shop": "default", "customer_id": "c1", "state": "suppressed", "reason": "holdout", "channel": None, "code": None,
           "offer": {"type": "percent_off", "percent": "10", "currency": "USD"}, "due_at": "2026-03-10T12:00:00Z",
           "sent_at": None}
    out = io.StringIO()
    write_delivery_table([row], 2, out)
    assert "holdout" in out.getvalue() and " - " in out.getvalue()


def test_the_review_reads_as_a_summary_with_its_groups():
    def delivery(customer: str, variant: str, sent: bool) -> DeliveryRow:
        return DeliveryRow(customer_id=customer, market="north_america", channel="email" if sent else None,
                           state="sent" if sent else "suppressed", reason=None if sent else "holdout",
                           trigger_at=END, deadline_at=END + timedelta(hours=24),
                           sent_at=END + timedelta(minutes=3) if sent else None, valid_until=END + timedelta(days=7),
                           experiment_id="market:north_america@abc", variant=variant)

    facts = StreamFacts(shop="default", stream="live-1", ended_at=END,
                        buyers=[Buyer("a", "north_america"), Buyer("b", "north_america")],
                        deliveries=[delivery("a", "treatment", True), delivery("b", "control", False)], orders=[])
    out = io.StringIO()
    write_review(stream_review(facts), out)
    text = out.getvalue()
    assert "stream live-1 (shop default)" in text
    assert "held out (control group: no message, no code): 1" in text
    assert "last message 0.1 h after the stream ended" in text
    assert "treatment" in text and "previous stream: none" in text
