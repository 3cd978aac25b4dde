"""Rules 7–12 as pure decisions: plan a delivery, decide at send time, react to a provider."""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from coupons.delivery_rules import after_attempt, decide_send, plan_delivery, usable_channels
from coupons.markets import load_markets
from coupons.model import CHANNELS, Customer

MARKETS = load_markets()
NA = MARKETS.by_name["north_america"]
SEA = MARKETS.by_name["southeast_asia"]
ALL = frozenset(CHANNELS)

# 15:00 UTC is 11:00 in New York (EDT) in May: outside quiet hours
DAY = datetime(2026, 5, 10, 15, 0, tzinfo=UTC)
# 03:00 UTC is 23:00 EDT the evening before: inside quiet hours (21:00–08:00)
NIGHT = datetime(2026, 5, 11, 3, 0, tzinfo=UTC)
NY_MORNING = datetime(2026, 5, 11, 12, 0, tzinfo=UTC)  # 08:00 EDT

ANN = Customer(id="c-ann", country="US", name="Ann", email="ann@example.com", phone="+15551234567",
               consent=frozenset({"email", "sms"}))
SITI = Customer(id="c-siti", country="ID", email="siti@example.com", phone="+6281234567890",
                whatsapp="+6281234567890", line_id="siti", telegram_id="siti_tg",
                consent=frozenset({"email", "sms", "whatsapp", "line", "telegram"}))


def plan(**overrides):
    args = dict(trigger_at=DAY, now=DAY, customer=ANN, market=NA, configured=ALL)
    args.update(overrides)
    return plan_delivery(**args)


def decide(**overrides):
    args = dict(now=DAY, deadline_at=DAY + timedelta(hours=20), customer=ANN, market=NA, configured=ALL,
                opted_out=(), failed_channels=(), last_reason=None, all_orders_refunded=False,
                last_sent_to_customer_at=None)
    args.update(overrides)
    return decide_send(**args)


def attempt(**overrides):
    args = dict(now=DAY, deadline_at=DAY + timedelta(hours=20), channel="email", ok=False, transient=True,
                reason="timeout", retry_after=None, channel_attempts=1, max_attempts=5, failed_channels=[],
                retry_base_seconds=60, timezone="America/New_York", market=NA, rng=random.Random(1))
    args.update(overrides)
    return after_attempt(**args)


# --- usable_channels (rule 7) -----------------------------------------------


def test_usable_channels_follow_the_market_order_not_the_consent_order():
    assert usable_channels(SITI, SEA, ALL) == ["whatsapp", "line", "sms", "email"]
    assert usable_channels(SITI, MARKETS.default, ALL) == ["email", "sms", "whatsapp", "telegram"]


@pytest.mark.parametrize(
    ("customer", "configured", "opted_out", "failed", "expected"),
    [
        (replace(SITI, consent=frozenset({"email", "whatsapp"})), ALL, (), (), ["whatsapp", "email"]),
        (replace(SITI, whatsapp=None), ALL, (), (), ["line", "sms", "email"]),
        (SITI, {"sms", "email"}, (), (), ["sms", "email"]),
        (SITI, ALL, ("whatsapp", "line"), (), ["sms", "email"]),
        (SITI, ALL, (), ("whatsapp",), ["line", "sms", "email"]),
        (replace(SITI, consent=frozenset()), ALL, (), (), []),
    ],
)
def test_usable_channels_keep_only_consented_addressed_configured_untried(customer, configured, opted_out,
                                                                           failed, expected):
    assert usable_channels(customer, SEA, configured, opted_out, failed) == expected


def test_channel_outside_the_market_is_never_used():
    # line is not a north_america channel even with consent and an address
    customer = replace(SITI, country="US", consent=frozenset({"line"}))

    assert usable_channels(customer, NA, ALL) == []


# --- plan_delivery -------------------------------------------------------------


def test_plan_schedules_at_the_trigger_with_a_24h_deadline():
    result = plan()

    assert (result.state, result.reason) == ("scheduled", None)
    assert result.due_at == DAY
    assert result.deadline_at == DAY + timedelta(hours=24)


def test_plan_moves_a_night_trigger_to_the_local_morning():
    result = plan(trigger_at=NIGHT, now=NIGHT)

    assert result.state == "scheduled"
    assert result.due_at == NY_MORNING
    assert result.deadline_at == NIGHT + timedelta(hours=24)


def test_plan_uses_the_customers_own_time_zone_over_the_countrys():
    # 03:00 UTC is 23:00 in New York but 20:00 in Los Angeles: not quiet there
    customer = replace(ANN, timezone="America/Los_Angeles")

    assert plan(trigger_at=NIGHT, now=NIGHT, customer=customer).due_at == NIGHT


@pytest.mark.parametrize("late_by", [timedelta(0), timedelta(seconds=1), timedelta(days=3)])
def test_event_arriving_after_its_deadline_ends_expired_at_once(late_by):
    result = plan(now=DAY + timedelta(hours=24) + late_by)

    assert result.state == "expired"
    assert result.deadline_at == DAY + timedelta(hours=24)


def test_event_arriving_just_before_its_deadline_is_still_scheduled():
    assert plan(now=DAY + timedelta(hours=23, minutes=59)).state == "scheduled"


def test_late_event_is_expired_even_when_capped():
    assert plan(now=DAY + timedelta(hours=25), capped=True).state == "expired"


def test_plan_within_frequency_cap_is_suppressed():
    result = plan(capped=True)

    assert (result.state, result.reason) == ("suppressed", "frequency_cap")


@pytest.mark.parametrize(
    ("customer", "configured", "opted_out"),
    [
        (replace(ANN, consent=frozenset()), ALL, ()),  # no consent
        (replace(ANN, consent=frozenset({"whatsapp", "telegram"})), ALL, ()),  # consent not in the market
        (replace(ANN, email=None, phone=None), ALL, ()),  # consent but no address
        (replace(ANN, consent=frozenset({"email"}), email=None), ALL, ()),
        (ANN, frozenset(), ()),  # nothing configured
        (ANN, {"whatsapp", "telegram"}, ()),  # consented channels not configured
        (ANN, ALL, ("email", "sms")),  # opted out
    ],
)
def test_plan_without_a_usable_channel_is_suppressed_no_channel(customer, configured, opted_out):
    result = plan(customer=customer, configured=configured, opted_out=opted_out)

    assert (result.state, result.reason) == ("suppressed", "no_channel")


def test_opting_out_of_one_channel_keeps_the_other():
    assert plan(opted_out=("email",)).state == "scheduled"


# --- decide_send -------------------------------------------------------------


def test_decide_sends_on_the_first_usable_channel():
    decision = decide()

    assert (decision.action, decision.channel) == ("send", "email")


def test_decide_refunded_order_is_cancelled():
    decision = decide(all_orders_refunded=True)

    assert (decision.action, decision.state) == ("end", "cancelled")


@pytest.mark.parametrize("past", [timedelta(0), timedelta(minutes=1)])
def test_decide_past_deadline_is_expired(past):
    deadline = DAY + timedelta(hours=1)

    decision = decide(now=deadline + past, deadline_at=deadline)

    assert (decision.action, decision.state) == ("end", "expired")
    assert decision.channel is None


@pytest.mark.parametrize("ago", [timedelta(0), timedelta(hours=1), timedelta(hours=23, minutes=59)])
def test_decide_customer_messaged_within_24h_is_suppressed(ago):
    decision = decide(last_sent_to_customer_at=DAY - ago)

    assert (decision.action, decision.state, decision.reason) == ("end", "suppressed", "frequency_cap")


def test_decide_customer_messaged_24h_ago_may_be_messaged_again():
    assert decide(last_sent_to_customer_at=DAY - timedelta(hours=24)).action == "send"


def test_decide_in_quiet_hours_reschedules_to_the_morning():
    decision = decide(now=NIGHT, deadline_at=NIGHT + timedelta(hours=20))

    assert decision.action == "reschedule"
    assert decision.due_at == NY_MORNING


def test_decide_in_quiet_hours_with_the_morning_past_the_deadline_expires():
    decision = decide(now=NIGHT, deadline_at=NY_MORNING - timedelta(minutes=1))

    assert (decision.action, decision.state) == ("end", "expired")


def test_decide_after_opt_out_uses_the_remaining_channel():
    assert decide(opted_out=("email",)).channel == "sms"


def test_decide_after_opt_out_of_everything_is_suppressed_no_channel():
    decision = decide(opted_out=("email", "sms"))

    assert (decision.action, decision.state, decision.reason) == ("end", "suppressed", "no_channel")


def test_decide_skips_failed_channels():
    assert decide(failed_channels=["email"], last_reason="invalid_address").channel == "sms"


def test_decide_with_every_channel_failed_ends_failed_with_the_last_reason():
    decision = decide(failed_channels=["email", "sms"], last_reason="http_503")

    assert (decision.action, decision.state, decision.reason) == ("end", "failed", "http_503")


# --- after_attempt (rule 12) -----------------------------------------------------


def test_success_is_sent():
    outcome = attempt(ok=True, transient=False, reason="")

    assert outcome.state == "sent"


def test_transient_failure_retries_later_on_the_same_channel():
    # Given the first attempt on email timed out, base 60 s
    outcome = attempt(channel_attempts=1)

    # Then it is retried on email (not marked failed) 30–90 s later
    assert outcome.state == "scheduled"
    assert outcome.failed_channels == []
    assert outcome.channel_attempts == 1
    assert outcome.reason == "timeout"
    assert DAY + timedelta(seconds=30) <= outcome.due_at <= DAY + timedelta(seconds=90)


def test_later_transient_failures_wait_longer():
    third = attempt(channel_attempts=3)

    assert DAY + timedelta(seconds=120) <= third.due_at <= DAY + timedelta(seconds=360)


def test_retry_after_is_respected():
    outcome = attempt(retry_after=1800)

    assert outcome.failed_channels == []
    assert outcome.due_at >= DAY + timedelta(seconds=1800)


def test_transient_retry_falling_in_quiet_hours_waits_for_the_morning():
    # 00:59 UTC is 20:59 EDT; a retry a minute or so later is inside quiet hours
    now = datetime(2026, 5, 11, 0, 59, 30, tzinfo=UTC)

    outcome = attempt(now=now, deadline_at=now + timedelta(hours=20))

    assert outcome.failed_channels == []
    assert outcome.due_at == NY_MORNING


def test_transient_retry_beyond_the_deadline_moves_to_the_next_channel_now():
    # Given the deadline is 20 s away and a retry would take at least 30 s
    outcome = attempt(deadline_at=DAY + timedelta(seconds=20), failed_channels=["whatsapp"])

    # Then this channel counts as failed and the next one is tried at once
    assert outcome.state == "scheduled"
    assert outcome.due_at == DAY
    assert outcome.failed_channels == ["whatsapp", "email"]
    assert outcome.channel_attempts == 0
    assert outcome.reason == "timeout"


def test_transient_retry_after_beyond_the_deadline_moves_to_the_next_channel_now():
    outcome = attempt(deadline_at=DAY + timedelta(hours=1), retry_after=7200)

    assert outcome.due_at == DAY
    assert outcome.failed_channels == ["email"]


def test_transient_retry_at_night_beyond_the_deadline_moves_to_the_next_channel_now():
    now = datetime(2026, 5, 11, 0, 59, 30, tzinfo=UTC)

    outcome = attempt(now=now, deadline_at=NY_MORNING - timedelta(minutes=5))

    assert outcome.due_at == now
    assert outcome.failed_channels == ["email"]


def test_permanent_failure_moves_to_the_next_channel_now():
    outcome = attempt(transient=False, reason="invalid_address")

    assert outcome.state == "scheduled"
    assert outcome.due_at == DAY
    assert outcome.failed_channels == ["email"]
    assert outcome.reason == "invalid_address"
    assert outcome.channel_attempts == 0


def test_transient_failure_after_max_attempts_moves_to_the_next_channel():
    outcome = attempt(channel_attempts=5, max_attempts=5)

    assert outcome.due_at == DAY
    assert outcome.failed_channels == ["email"]


def test_failed_channel_is_then_skipped_and_exhaustion_ends_failed():
    # Given email failed permanently
    first = attempt(transient=False, reason="invalid_address")

    # When the sender decides again, sms is next
    decision = decide(failed_channels=first.failed_channels, last_reason=first.reason)
    assert decision.channel == "sms"

    # And when sms fails permanently too, the delivery ends failed with that reason
    second = attempt(channel="sms", transient=False, reason="http_400", failed_channels=first.failed_channels)
    final = decide(failed_channels=second.failed_channels, last_reason=second.reason)
    assert (final.action, final.state, final.reason) == ("end", "failed", "http_400")


# --- send_window (rule 8 at each attempt) -------------------------------------


def window(now, deadline_at):
    from coupons.delivery_rules import send_window

    return send_window(now=now, deadline_at=deadline_at, timezone="America/New_York", market=NA)


def test_an_attempt_in_daytime_well_before_the_deadline_goes_out():
    assert window(DAY, DAY + timedelta(hours=1)).action == "send"


@pytest.mark.parametrize("left", [timedelta(seconds=0.5), timedelta(0), -timedelta(minutes=5)])
def test_no_attempt_starts_within_a_second_of_the_deadline_or_after_it(left):
    decision = window(DAY, DAY + left)
    assert (decision.action, decision.state, decision.reason) == ("end", "expired", "deadline")


def test_an_attempt_that_would_start_at_night_waits_for_the_morning():
    decision = window(NIGHT, NIGHT + timedelta(hours=20))
    assert (decision.action, decision.due_at) == ("reschedule", NY_MORNING)


def test_an_attempt_at_night_whose_morning_is_past_the_deadline_expires():
    decision = window(NIGHT, NY_MORNING)
    assert (decision.action, decision.state, decision.reason) == ("end", "expired", "quiet_hours")
