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
from .sms_hours import NoSmsTime, SmsWindows, next_allowed_sms, sms_window_for
from .states import DeliveryState, Reason, SendAction
from .timing import (
    FREQUENCY_CAP,
    customer_zone,
    customer_zone_is_own,
    deadline_for,
    outside_quiet_hours,
    retry_due_at,
    state_zones,
)

SMS = "sms"

Skip = tuple[str, str]
"""A channel passed over before it was tried, and why: (channel, reason)."""

SKIP_DETAIL: dict[str, str] = {
    Reason.EMAIL_SUPPRESSED: "not sent: the address complained or bounced for good",
    Reason.SMS_HOURS: "not sent: the SMS hours of the customer's state open only after the deadline",
}
"""The detail of a passed-over channel's attempt row, by its reason."""


@dataclass(frozen=True)
class Plan:
    state: DeliveryState  # scheduled | expired | suppressed
    reason: Reason | None
    due_at: datetime
    deadline_at: datetime
    # Channels passed over for the first one (rules 17, 18), market order: each gets an attempt row (rule 16's `skipped`).
    skipped: tuple[Skip, ...] = ()


def usable_channels(customer: Customer, market: Market, configured: Collection[str],
                    opted_out: Collection[str] = (), failed: Collection[str] = (),
                    suppressed: Collection[str] = ()) -> list[str]:
    """Rule 7: the market's order, keeping consented, addressed, configured channels that
    did not fail permanently (`failed`) and whose address is not suppressed (`suppressed`:
    email after a complaint or a permanent bounce, rule 18)."""
    return [
        channel
        for channel in market.channels
        if channel in customer.consent
        and channel not in opted_out
        and channel in configured
        and channel not in failed
        and channel not in suppressed
        and customer.address(channel)
    ]


def _no_channel_reason(customer: Customer, market: Market, configured: Collection[str], opted_out: Collection[str],
                       suppressed: Collection[str]) -> Reason:
    """`email_suppressed` when only a suppressed address kept the delivery from a channel."""
    if suppressed and usable_channels(customer, market, configured, opted_out):
        return Reason.EMAIL_SUPPRESSED
    return Reason.NO_CHANNEL


def _suppressed_before(channel: str, customer: Customer, market: Market, configured: Collection[str],
                       opted_out: Collection[str], failed: Collection[str], suppressed: Collection[str]) -> list[Skip]:
    """The channels ahead of `channel` in the market's order that only a suppressed
    address (rule 18) kept from carrying the coupon: passed over, `email_suppressed`."""
    if not suppressed:
        return []
    position = market.channels.index(channel)
    return [(other, Reason.EMAIL_SUPPRESSED.value)
            for other in usable_channels(customer, market, configured, opted_out, failed)
            if other in suppressed and market.channels.index(other) < position]


def _in_market_order(skipped: list[Skip], market: Market) -> tuple[Skip, ...]:
    return tuple(sorted(skipped, key=lambda skip: market.channels.index(skip[0])))


@dataclass(frozen=True)
class SmsRule:
    """The SMS hours that apply to one customer (rule 17): their state's windows, and the
    zones a text must find them open in. `zones` is empty when the customer's own zone
    (the one the caller passes) is known; it lists every zone of their state when their
    zone was only inferred from a state that spans several (`region_timezones.toml`):
    the law counts the recipient's clock, which Encore cannot tell then."""

    windows: SmsWindows
    zones: tuple[str, ...] = ()


_ZONE_ROUNDS = 16
"""Rounds of `_next_allowed_everywhere`: windows hours wide in zones an hour or two apart
agree within two or three rounds."""


def sms_rule_for(customer: Customer, market: Market) -> SmsRule | None:
    """The SMS hours that apply to `customer` (rule 17): their state's, else their
    country's; None where the market sets none (quiet hours alone)."""
    windows = sms_window_for(market, customer.country, customer.region)
    if windows is None:
        return None
    zones = () if customer_zone_is_own(customer) else state_zones(customer)
    return SmsRule(windows, zones if len(zones) > 1 else ())


def channel_allowed_at(channel: str, when: datetime, timezone: str, market: Market,
                       windows: SmsRule | None) -> datetime:
    """The first instant at or after `when` at which `channel` may carry a coupon: the end
    of quiet hours, and for SMS also inside the SMS hours (rule 17: they narrow quiet
    hours for SMS only), in every zone of `windows.zones` when it names several."""
    if channel == SMS and windows is not None:
        return _next_allowed_everywhere(when, windows.zones or (timezone,), windows.windows, market)
    return outside_quiet_hours(when, timezone, market.quiet_start, market.quiet_end)


def _next_allowed_everywhere(when: datetime, zones: Sequence[str], windows: SmsWindows, market: Market) -> datetime:
    """The first instant at or after `when` allowed in each of `zones` at once: each zone
    moves the candidate forward to its own next allowed instant until none moves it."""
    at = when
    for _ in range(_ZONE_ROUNDS):
        moved = at
        for zone in zones:
            moved = next_allowed_sms(moved, zone, windows, market.quiet_start, market.quiet_end)
        if moved == at:
            return at
        at = moved
    raise NoSmsTime(f"the SMS windows of {windows.where} are never open in all of {', '.join(zones)} at once")


def plan_delivery(*, trigger_at: datetime, now: datetime, customer: Customer, market: Market,
                  configured: Collection[str], opted_out: Collection[str] = (),
                  capped: bool = False, suppressed: Collection[str] = ()) -> Plan:
    """State, due time and deadline for a new coupon's delivery (rules 8–10, 17).

    `capped` says another coupon message for this customer falls within 24 h;
    `suppressed`: channels whose address is suppressed (rule 18). The due time is when
    the first channel may carry it: an SMS-first delivery to a US number waits for the
    SMS hours of the customer's state; when those open only after the deadline, a later
    channel goes at the end of quiet hours instead, and with none the delivery expires
    (`sms_hours`). The channels passed over for the first one are the plan's `skipped`."""
    deadline_at = deadline_for(trigger_at)
    timezone = customer_zone(customer, market)
    due_at = outside_quiet_hours(trigger_at, timezone, market.quiet_start, market.quiet_end)
    if now >= deadline_at or due_at >= deadline_at:
        return Plan(DeliveryState.EXPIRED, Reason.LATE_EVENT if now >= deadline_at else Reason.DEADLINE, due_at,
                    deadline_at)
    if capped:
        return Plan(DeliveryState.SUPPRESSED, Reason.FREQUENCY_CAP, due_at, deadline_at)
    channels = usable_channels(customer, market, configured, opted_out, suppressed=suppressed)
    if not channels:
        return Plan(DeliveryState.SUPPRESSED, _no_channel_reason(customer, market, configured, opted_out, suppressed),
                    due_at, deadline_at)
    first, skipped = channels[0], []
    if first == SMS:
        sms_at = channel_allowed_at(SMS, trigger_at, timezone, market, sms_rule_for(customer, market))
        if sms_at < deadline_at - ATTEMPT_MARGIN:
            due_at = sms_at
        elif len(channels) == 1:
            return Plan(DeliveryState.EXPIRED, Reason.SMS_HOURS, sms_at, deadline_at)
        else:
            first, skipped = channels[1], [(SMS, Reason.SMS_HOURS.value)]
    skipped += _suppressed_before(first, customer, market, configured, opted_out, (), suppressed)
    return Plan(DeliveryState.SCHEDULED, None, due_at, deadline_at, _in_market_order(skipped, market))


@dataclass(frozen=True)
class SendDecision:
    """`action` is send | reschedule | end; `state`/`reason` for end.

    For send: `channel`, the attempts already made in its turn (`channel_attempts`, 0 for
    a channel not tried yet) and every channel usable now (`channels`, market order), which
    `after_attempt` needs to know what follows a failure."""

    action: SendAction
    channel: str | None = None
    due_at: datetime | None = None
    state: DeliveryState | None = None
    reason: str | None = None  # a Reason, or the last provider's reason
    channel_attempts: int = 0
    channels: tuple[str, ...] = ()
    # For send: channels passed over on the way to `channel` (rules 17, 18), market order.
    # The same ones come back at every claim: the caller records each once.
    skipped: tuple[Skip, ...] = ()


@dataclass(frozen=True)
class Turn:
    """The channel of the next attempt, and the attempts its turn already counts (0: a
    channel not tried yet, which goes at once; otherwise the next attempt waits the backoff
    of that count)."""

    channel: str
    attempts: int


def next_turn(channels: Sequence[str], order: Sequence[str], current: str | None, channel_attempts: int,
              max_attempts: int) -> Turn | None:
    """Rule 12: which channel the next attempt uses. None when no channel is left.

    `channels` are those usable now, in the market's `order`, without the ones that failed
    permanently (never tried again); `current` is the channel of the last attempt and
    `channel_attempts` the attempts counted in its turn.

    Each channel in turn gets up to `max_attempts` attempts; a permanent failure or the
    last of them moves to the next channel in the order at once. Once every channel has
    had its turn, the delivery goes round the channels left (those whose last failure was
    transient) one attempt each, and the count goes on, so the backoff keeps growing (to
    its cap): a provider that recovers after an hour still gets the message, and one that
    stays down is not hammered."""
    if not channels:
        return None
    if current is None:
        return Turn(channels[0], 0)
    if current in channels and channel_attempts < max_attempts:
        return Turn(current, channel_attempts)
    position = order.index(current) if current in order else -1
    later = [channel for channel in channels if order.index(channel) > position]
    if later and channel_attempts <= max_attempts:
        return Turn(later[0], 0)  # still the first round: a channel not tried yet
    # Every channel has had its turn: round and round those left.
    return Turn((later or channels)[0], max(channel_attempts, max_attempts))


def decide_send(*, now: datetime, deadline_at: datetime, customer: Customer, market: Market,
                configured: Collection[str], opted_out: Collection[str], failed_channels: Sequence[str],
                last_reason: str | None, all_orders_refunded: bool,
                last_sent_to_customer_at: datetime | None, max_attempts: int,
                current_channel: str | None = None, channel_attempts: int = 0,
                last_transient_reason: str | None = None, suppressed: Collection[str] = ()) -> SendDecision:
    """What a sender does with a claimed delivery right now.

    `failed_channels` failed permanently; `current_channel` and `channel_attempts` are
    where the last attempt stands (`next_turn`); `last_transient_reason` is the reason of
    the delivery's last transient failure, which an expiry keeps (rule 12); `suppressed`:
    channels whose address is suppressed (rule 18), passed over like a channel that cannot
    be used. An SMS turn outside the SMS hours of the customer's state (rule 17) waits for
    them; when they open only after the deadline, the turn passes to the next channel.
    Either way a passed-over channel is in the send decision's `skipped`."""
    if all_orders_refunded:
        return SendDecision(SendAction.END, state=DeliveryState.CANCELLED, reason=Reason.REFUNDED)
    if now >= deadline_at:
        return SendDecision(SendAction.END, state=DeliveryState.EXPIRED, reason=last_transient_reason or Reason.DEADLINE)
    if last_sent_to_customer_at is not None and now - last_sent_to_customer_at < FREQUENCY_CAP:
        return SendDecision(SendAction.END, state=DeliveryState.SUPPRESSED, reason=Reason.FREQUENCY_CAP)
    channels = usable_channels(customer, market, configured, opted_out, failed_channels, suppressed)
    turn = next_turn(channels, market.channels, current_channel, channel_attempts, max_attempts)
    if turn is None:
        if failed_channels:
            return SendDecision(SendAction.END, state=DeliveryState.FAILED,
                                reason=last_reason or Reason.CHANNELS_EXHAUSTED)
        reason = _no_channel_reason(customer, market, configured, opted_out, suppressed)
        # The last channel left, passed over for its suppressed address, is listed too.
        return SendDecision(SendAction.END, state=DeliveryState.SUPPRESSED, reason=reason,
                            skipped=(("email", reason.value),) if reason == Reason.EMAIL_SUPPRESSED else ())
    timezone = customer_zone(customer, market)
    skipped: list[Skip] = []
    if turn.channel == SMS:
        sms_at = channel_allowed_at(SMS, now, timezone, market, sms_rule_for(customer, market))
        if now < sms_at < deadline_at - ATTEMPT_MARGIN:
            return SendDecision(SendAction.RESCHEDULE, due_at=sms_at)
        if sms_at >= deadline_at - ATTEMPT_MARGIN:
            # The SMS hours open too late: the turn passes to the next channel, if any.
            others = [channel for channel in channels if channel != SMS]
            turn = next_turn(others, market.channels, SMS, max(channel_attempts, max_attempts), max_attempts)
            if turn is None:
                return SendDecision(SendAction.END, state=DeliveryState.EXPIRED,
                                    reason=last_transient_reason or Reason.SMS_HOURS)
            skipped.append((SMS, Reason.SMS_HOURS.value))
    skipped += _suppressed_before(turn.channel, customer, market, configured, opted_out, failed_channels, suppressed)
    window = send_window(now=now, deadline_at=deadline_at, timezone=timezone, market=market,
                         margin=timedelta(0), last_transient_reason=last_transient_reason)
    if window.action != SendAction.SEND:
        return window
    return SendDecision(SendAction.SEND, channel=turn.channel, channel_attempts=turn.attempts, channels=tuple(channels),
                        skipped=_in_market_order(skipped, market))


ATTEMPT_MARGIN = timedelta(seconds=1)
"""An attempt does not start later than this before the deadline: a provider answers
local stand-ins in milliseconds and real ones in well under a second, so an attempt
started in time is accepted in time. The same margin bounds retries (`after_attempt`)."""


def send_window(*, now: datetime, deadline_at: datetime, timezone: str, market: Market,
                margin: timedelta = ATTEMPT_MARGIN, last_transient_reason: str | None = None,
                channel: str | None = None, windows: SmsRule | None = None) -> SendDecision:
    """Rules 8 and 17 at the moment of an attempt: send, wait for the end of quiet hours
    (`reschedule` with `due_at`), or end `expired` (with the last transient failure's
    reason when there was one: what kept it from going out). Checked again right before
    every attempt, in-call retries included: a slow batch must not carry a decision taken
    minutes earlier past the deadline or into the night.

    For an SMS (`channel`) with SMS hours (`windows`), outside them: wait for them, or,
    when they open only after the deadline, go back to the relay now (`due_at` now), where
    `decide_send` passes the turn to the next channel."""
    if now >= deadline_at - margin:
        return SendDecision(SendAction.END, state=DeliveryState.EXPIRED, reason=last_transient_reason or Reason.DEADLINE)
    allowed_at = outside_quiet_hours(now, timezone, market.quiet_start, market.quiet_end)
    if allowed_at > now:
        if allowed_at >= deadline_at - margin:
            return SendDecision(SendAction.END, state=DeliveryState.EXPIRED,
                                reason=last_transient_reason or Reason.QUIET_HOURS)
        return SendDecision(SendAction.RESCHEDULE, due_at=allowed_at)
    if channel == SMS and windows is not None:
        sms_at = channel_allowed_at(SMS, now, timezone, market, windows)
        if sms_at > now:
            return SendDecision(SendAction.RESCHEDULE, due_at=sms_at if sms_at < deadline_at - margin else now)
    return SendDecision(SendAction.SEND)


@dataclass(frozen=True)
class AttemptOutcome:
    """The delivery's next state after one attempt on `channel`."""

    state: DeliveryState  # sent | scheduled | failed
    reason: str | None  # the provider's reason
    due_at: datetime | None = None
    failed_channels: list[str] = field(default_factory=list)
    channel_attempts: int = 0


def after_attempt(*, now: datetime, deadline_at: datetime, channel: str, ok: bool, transient: bool,
                  reason: str, retry_after: float | None, channel_attempts: int, max_attempts: int,
                  channels: Sequence[str], failed_channels: Sequence[str], retry_base_seconds: float,
                  timezone: str, market: Market, rng: random.Random | None = None,
                  windows: SmsRule | None = None) -> AttemptOutcome:
    """Rule 12 after one attempt on `channel` (`channel_attempts` counts it in its turn;
    `channels`: those usable when it was claimed, market order; `failed_channels`: those
    that failed permanently before it; `windows`: the customer's SMS hours, rule 17).

    A transient failure is retried (`next_turn`: this channel, or the next one once its
    turn is over) after the backoff; a permanent one moves to the next channel at once and
    is never tried again. The delivery ends `failed` only when every channel failed
    permanently. When no retry fits before the deadline, an untried channel is tried at
    once; with none, the delivery waits for its deadline and ends `expired` there, with
    the reason of its last transient failure (the sender and the expiry sweep do that)."""
    if ok:
        return AttemptOutcome(DeliveryState.SENT, None, channel_attempts=channel_attempts, failed_channels=list(failed_channels))
    failed = list(failed_channels) if transient else [*failed_channels, channel]
    left = [c for c in channels if c not in failed]
    turn = next_turn(left, market.channels, channel, channel_attempts, max_attempts)
    if turn is None:
        return AttemptOutcome(DeliveryState.FAILED, reason, None, failed, channel_attempts)
    if turn.attempts == 0:
        return AttemptOutcome(DeliveryState.SCHEDULED, reason, now, failed, channel_attempts)
    # A provider's Retry-After speaks for its own channel only.
    hint = retry_after if transient and turn.channel == channel else None
    retry_at = retry_due_at(now, turn.attempts, retry_base_seconds, rng, hint)
    retry_at = channel_allowed_at(turn.channel, retry_at, timezone, market, windows)
    if retry_at < deadline_at - ATTEMPT_MARGIN:
        return AttemptOutcome(DeliveryState.SCHEDULED, reason, retry_at, failed, channel_attempts)
    turn_over = max(channel_attempts, max_attempts)
    untried = next_turn(left, market.channels, channel, turn_over, max_attempts)
    if untried is not None and untried.attempts == 0:
        return AttemptOutcome(DeliveryState.SCHEDULED, reason, now, failed, turn_over)
    return AttemptOutcome(DeliveryState.SCHEDULED, reason, deadline_at, failed, channel_attempts)
