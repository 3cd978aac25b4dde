"""Rules 7–12 as pure decisions: what happens to a delivery now.

`plan_delivery` runs once when a coupon is created; `decide_send` runs each time
a claimed delivery is about to go out (consent, refunds, quiet hours and the cap
can all change in between); `after_attempt` turns a provider's answer into the
delivery's next state.
"""

from __future__ import annotations

import random
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from .markets import Market
from .model import Customer
from .timing import FREQUENCY_CAP, deadline_for, outside_quiet_hours, retry_due_at


@dataclass(frozen=True)
class Plan:
    state: str  # scheduled | expired | suppressed
    reason: str | None
    due_at: datetime
    deadline_at: datetime


def usable_channels(customer: Customer, market: Market, configured: Collection[str],
                    opted_out: Collection[str] = (), failed: Collection[str] = ()) -> list[str]:
    """Rule 7: the market's order, keeping consented, addressed, configured, untried channels."""
    return [
        channel
        for channel in market.channels
        if channel in customer.consent
        and channel not in opted_out
        and channel in configured
        and channel not in failed
        and customer.address(channel)
    ]


def plan_delivery(*, trigger_at: datetime, now: datetime, customer: Customer, market: Market,
                  configured: Collection[str], opted_out: Collection[str] = (),
                  capped: bool = False) -> Plan:
    """State, due time and deadline for a new coupon's delivery (rules 8–10).

    `capped` says another coupon message for this customer falls within 24 h.
    """
    deadline_at = deadline_for(trigger_at)
    timezone = customer.timezone or market.timezone_for(customer.country)
    due_at = outside_quiet_hours(trigger_at, timezone, market.quiet_start, market.quiet_end)
    if now >= deadline_at or due_at >= deadline_at:
        return Plan("expired", "late_event" if now >= deadline_at else "deadline", due_at, deadline_at)
    if capped:
        return Plan("suppressed", "frequency_cap", due_at, deadline_at)
    if not usable_channels(customer, market, configured, opted_out):
        return Plan("suppressed", "no_channel", due_at, deadline_at)
    return Plan("scheduled", None, due_at, deadline_at)


@dataclass(frozen=True)
class SendDecision:
    """`action` is send | reschedule | sent_elsewhere | end; `state`/`reason` for end."""

    action: str
    channel: str | None = None
    due_at: datetime | None = None
    state: str | None = None
    reason: str | None = None


def decide_send(*, now: datetime, deadline_at: datetime, customer: Customer, market: Market,
                configured: Collection[str], opted_out: Collection[str], failed_channels: Sequence[str],
                last_reason: str | None, all_orders_refunded: bool,
                last_sent_to_customer_at: datetime | None) -> SendDecision:
    """What a sender does with a claimed delivery right now."""
    if all_orders_refunded:
        return SendDecision("end", state="cancelled", reason="refunded")
    if now >= deadline_at:
        return SendDecision("end", state="expired", reason="deadline")
    if last_sent_to_customer_at is not None and now - last_sent_to_customer_at < FREQUENCY_CAP:
        return SendDecision("end", state="suppressed", reason="frequency_cap")
    channels = usable_channels(customer, market, configured, opted_out, failed_channels)
    if not channels:
        if failed_channels:
            return SendDecision("end", state="failed", reason=last_reason or "channels_exhausted")
        return SendDecision("end", state="suppressed", reason="no_channel")
    timezone = customer.timezone or market.timezone_for(customer.country)
    window = send_window(now=now, deadline_at=deadline_at, timezone=timezone, market=market,
                         margin=timedelta(0))
    if window.action != "send":
        return window
    return SendDecision("send", channel=channels[0])


ATTEMPT_MARGIN = timedelta(seconds=1)
"""An attempt does not start later than this before the deadline: a provider answers
local stand-ins in milliseconds and real ones in well under a second, so an attempt
started in time is accepted in time. The same margin bounds retries (`after_attempt`)."""


def send_window(*, now: datetime, deadline_at: datetime, timezone: str, market: Market,
                margin: timedelta = ATTEMPT_MARGIN) -> SendDecision:
    """Rule 8 at the moment of an attempt: send, wait for the end of quiet hours
    (`reschedule` with `due_at`), or end `expired`. Checked again right before every
    attempt, in-call retries included: a slow batch must not carry a decision taken
    minutes earlier past the deadline or into the night."""
    if now >= deadline_at - margin:
        return SendDecision("end", state="expired", reason="deadline")
    allowed_at = outside_quiet_hours(now, timezone, market.quiet_start, market.quiet_end)
    if allowed_at > now:
        if allowed_at >= deadline_at - margin:
            return SendDecision("end", state="expired", reason="quiet_hours")
        return SendDecision("reschedule", due_at=allowed_at)
    return SendDecision("send")


@dataclass(frozen=True)
class AttemptOutcome:
    """The delivery's next state after one attempt on `channel`."""

    state: str  # sent | scheduled | failed
    reason: str | None
    due_at: datetime | None = None
    failed_channels: list[str] = field(default_factory=list)
    channel_attempts: int = 0


def after_attempt(*, now: datetime, deadline_at: datetime, channel: str, ok: bool, transient: bool,
                  reason: str, retry_after: float | None, channel_attempts: int, max_attempts: int,
                  failed_channels: Sequence[str], retry_base_seconds: float, timezone: str,
                  market: Market, rng: random.Random | None = None) -> AttemptOutcome:
    """Rule 12: retry a transient failure on the same channel within the deadline,
    otherwise move to the next channel at once (the sender finds out whether one is left)."""
    if ok:
        return AttemptOutcome("sent", None, channel_attempts=channel_attempts, failed_channels=list(failed_channels))
    if transient and channel_attempts < max_attempts:
        retry_at = retry_due_at(now, channel_attempts, retry_base_seconds, rng, retry_after)
        retry_at = outside_quiet_hours(retry_at, timezone, market.quiet_start, market.quiet_end)
        if retry_at < deadline_at - ATTEMPT_MARGIN:
            return AttemptOutcome("scheduled", reason, retry_at, list(failed_channels), channel_attempts)
    # Permanent, out of attempts, or no retry fits before the deadline: next channel now.
    return AttemptOutcome("scheduled", reason, now, [*failed_channels, channel], 0)
