"""The states, reasons and actions are enums now; what the database stores and what
`encore status`, `encore deliveries --json` and the HTTP service print must not change."""

from __future__ import annotations

import json

from coupons.states import DeliveryState, Reason, RedemptionStatus, RunState, SendAction


def test_the_stored_and_shown_words_are_the_spec_s():
    assert [str(state) for state in DeliveryState] == [
        "scheduled", "sending", "sent", "failed", "expired", "suppressed", "cancelled"]
    assert {str(reason) for reason in Reason} >= {"frequency_cap", "no_channel", "deadline", "late_event",
                                                    "quiet_hours", "render_error", "refunded", "rate_limited"}
    assert [str(action) for action in SendAction] == ["send", "reschedule", "end"]
    assert [str(status) for status in RedemptionStatus] == ["redeemed", "already_redeemed", "expired", "void",
                                                            "unknown", "other_customer"]
    assert [str(state) for state in RunState] == ["running", "done", "missed"]


def test_a_member_reads_writes_and_prints_as_its_string():
    # A row read back from the database holds the plain string: it must match the member
    assert DeliveryState.SENT == "sent" and {"sent": 1}[DeliveryState.SENT] == 1
    # JSON output and text formatting show the value, never the member's name
    assert json.dumps({DeliveryState.EXPIRED: Reason.LATE_EVENT}) == '{"expired": "late_event"}'
    assert f"{DeliveryState.SCHEDULED:<10}|{Reason.NO_CHANNEL}" == "scheduled |no_channel"
