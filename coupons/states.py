"""The words a delivery's life is told in, defined once: its states (SPEC section 4),
the reasons Encore itself gives, what a sender does with a claimed delivery, how a
redemption ends and where a campaign run stands.

`StrEnum`s whose values are the strings stored in the database and shown by
`encore status`, `encore deliveries` and the HTTP service: a member equals its string,
formats as it and serialises to JSON as it, so rows and outputs are unchanged.
Reasons a provider gives (`smtp_550`, `http_503`, ...) are its own words and stay strings.
"""

from __future__ import annotations

from enum import StrEnum


class DeliveryState(StrEnum):
    SCHEDULED = "scheduled"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"
    EXPIRED = "expired"
    SUPPRESSED = "suppressed"
    CANCELLED = "cancelled"


class Reason(StrEnum):
    """Why a delivery is where it is, when Encore decided it (not a provider)."""

    LATE_EVENT = "late_event"  # expired on arrival: the event was older than its deadline
    DEADLINE = "deadline"  # the deadline passed before it could go out
    QUIET_HOURS = "quiet_hours"  # quiet hours last until the deadline
    SMS_HOURS = "sms_hours"  # SMS only, and the SMS hours of the customer's state (rule 17) open after the deadline
    EMAIL_SUPPRESSED = "email_suppressed"  # the address complained or bounced for good (rule 18)
    FREQUENCY_CAP = "frequency_cap"  # another coupon message within 24 h
    NO_CHANNEL = "no_channel"  # no consented, addressed, configured channel
    CHANNELS_EXHAUSTED = "channels_exhausted"  # every channel failed permanently
    REFUNDED = "refunded"  # every order behind it was refunded
    RENDER_ERROR = "render_error"  # the message could not be decided or written
    RATE_LIMITED = "rate_limited"  # the provider's rate is spent: handed back to the relay
    HOLDOUT = "holdout"  # a held-out customer of an experiment (state suppressed)


class SendAction(StrEnum):
    """What a sender does with a claimed delivery right now."""

    SEND = "send"
    RESCHEDULE = "reschedule"  # wait (quiet hours): back to scheduled with a new due time
    END = "end"  # a final state, with its reason


class RedemptionStatus(StrEnum):
    REDEEMED = "redeemed"
    ALREADY_REDEEMED = "already_redeemed"
    EXPIRED = "expired"
    VOID = "void"  # every order behind it was refunded after it was sent
    UNKNOWN = "unknown"  # no such code (in the order's shop)
    OTHER_CUSTOMER = "other_customer"  # the order's customer is not the coupon's


class RunState(StrEnum):
    """A campaign run's row."""

    RUNNING = "running"
    DONE = "done"
    MISSED = "missed"  # its 24 h window passed before it started: recorded, nothing sent
