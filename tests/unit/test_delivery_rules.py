"""Rules 7–12 as pure decisions: plan a delivery, decide at send time, react to a provider."""

from __future__ import annotations

import itertools
import random
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from coupons.delivery_rules import Turn, after_attempt, decide_send, next_turn, plan_delivery, usable_channels
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
                last_sent_to_customer_at=None, max_attempts=5)
    args.update(overrides)
    return decide_send(**args)


def attempt(**overrides):
    args = dict(now=DAY, deadline_at=DAY + timedelta(hours=20), channel="email", ok=False, transient=True,
                reason="timeout", retry_after=None, channel_attempts=1, max_attempts=5, channels=["email", "sms"],
                failed_channels=[], retry_base_seconds=60, timezone="America/New_York", market=NA, rng=random.Random(1))
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
    outcome = attempt(deadline_at=DAY + timedelta(seconds=20))

    # Then email's turn is over (it did not fail for good) and sms is tried at once
    assert outcome.state == "scheduled"
    assert outcome.due_at == DAY
    assert outcome.failed_channels == []
    assert outcome.channel_attempts == 5
    assert outcome.reason == "timeout"
    assert decide(current_channel="email", channel_attempts=outcome.channel_attempts).channel == "sms"


def test_transient_retry_after_beyond_the_deadline_moves_to_the_next_channel_now():
    outcome = attempt(deadline_at=DAY + timedelta(hours=1), retry_after=7200)

    assert outcome.due_at == DAY
    assert outcome.channel_attempts == 5


def test_transient_retry_at_night_beyond_the_deadline_moves_to_the_next_channel_now():
    now = datetime(2026, 5, 11, 0, 59, 30, tzinfo=UTC)

    outcome = attempt(now=now, deadline_at=NY_MORNING - timedelta(minutes=5))

    assert outcome.due_at == now
    assert outcome.channel_attempts == 5


def test_permanent_failure_moves_to_the_next_channel_now():
    outcome = attempt(transient=False, reason="invalid_address")

    assert outcome.state == "scheduled"
    assert outcome.due_at == DAY
    assert outcome.failed_channels == ["email"]
    assert outcome.reason == "invalid_address"
    assert decide(failed_channels=["email"], current_channel="email", channel_attempts=1).channel == "sms"


def test_transient_failure_after_max_attempts_moves_to_the_next_channel():
    outcome = attempt(channel_attempts=5, max_attempts=5)

    assert outcome.due_at == DAY
    assert outcome.failed_channels == []
    assert decide(current_channel="email", channel_attempts=5).channel == "sms"


def test_failed_channel_is_then_skipped_and_exhaustion_ends_failed():
    # Given email failed permanently
    first = attempt(transient=False, reason="invalid_address")

    # When the sender decides again, sms is next
    decision = decide(failed_channels=first.failed_channels, last_reason=first.reason,
                      current_channel="email", channel_attempts=first.channel_attempts)
    assert (decision.channel, decision.channel_attempts) == ("sms", 0)

    # And when sms fails permanently too, the delivery ends failed with that reason
    second = attempt(channel="sms", transient=False, reason="http_400", failed_channels=first.failed_channels)
    assert (second.state, second.reason, second.failed_channels) == ("failed", "http_400", ["email", "sms"])
    final = decide(failed_channels=second.failed_channels, last_reason=second.reason)
    assert (final.action, final.state, final.reason) == ("end", "failed", "http_400")


# --- rule 12: a delivery whose last failure was transient is never given up ----------


def test_the_only_channel_keeps_retrying_after_its_attempts_per_channel():
    # Given email is the only channel and its provider refused it a fifth time, transiently
    outcome = attempt(channels=["email"], channel_attempts=5, reason="smtp_4xx")

    # Then the delivery is not failed: email is retried after a backoff that keeps growing
    # (base 60 s: the fifth retry waits 60 × 2^4 = 960 s, ±50%)
    assert (outcome.state, outcome.reason, outcome.failed_channels) == ("scheduled", "smtp_4xx", [])
    assert DAY + timedelta(seconds=480) <= outcome.due_at <= DAY + timedelta(seconds=1440)
    decision = decide(customer=replace(ANN, consent=frozenset({"email"})), current_channel="email",
                      channel_attempts=5)
    assert (decision.action, decision.channel, decision.channel_attempts) == ("send", "email", 5)


def test_the_backoff_of_a_delivery_that_keeps_failing_never_exceeds_30_minutes():
    for count in (8, 12, 40, 2000):
        outcome = attempt(channels=["email"], channel_attempts=count, rng=random.Random(count))
        assert DAY + timedelta(minutes=10) <= outcome.due_at <= DAY + timedelta(minutes=30)


def test_after_every_channel_had_its_turn_the_channels_take_turns_one_attempt_each():
    # Given email had its five attempts, then sms its five, all refused transiently
    assert decide(current_channel="email", channel_attempts=5).channel_attempts == 0  # sms starts fresh
    after_sms = attempt(channel="sms", channel_attempts=5)

    # Then the next attempt goes back to email after a backoff (not at once), counting on
    assert after_sms.due_at > DAY
    turns = [decide(current_channel="sms", channel_attempts=5)]
    for _ in range(3):
        last = turns[-1]
        turns.append(decide(current_channel=last.channel, channel_attempts=last.channel_attempts + 1))
    assert [(t.channel, t.channel_attempts) for t in turns] == [("email", 5), ("sms", 6), ("email", 7), ("sms", 8)]


def test_a_permanent_failure_after_a_transient_one_goes_back_to_the_transient_channel():
    # Given email was refused transiently five times, and sms then refused the number for good
    outcome = attempt(channel="sms", channel_attempts=1, transient=False, reason="invalid_address")

    # Then the delivery is not failed: email, which may recover, is tried again after a
    # backoff, and sms never again
    assert (outcome.state, outcome.failed_channels) == ("scheduled", ["sms"])
    assert outcome.due_at > DAY
    decision = decide(failed_channels=["sms"], current_channel="sms", channel_attempts=1)
    assert (decision.channel, decision.channel_attempts) == ("email", 5)


def test_a_channel_that_failed_permanently_is_never_tried_again():
    turns = {decide(failed_channels=["sms"], current_channel="email", channel_attempts=count).channel
             for count in range(1, 30)}
    assert turns == {"email"}


def test_a_retry_that_would_fall_after_the_deadline_waits_for_it_and_expires_with_the_failure():
    # Given email is the only channel, refused transiently, and the next retry (30–90 s)
    # cannot start before the deadline 20 s away
    outcome = attempt(channels=["email"], deadline_at=DAY + timedelta(seconds=20), reason="smtp_4xx")

    # Then the delivery is not failed early: it waits for its deadline...
    assert (outcome.state, outcome.due_at, outcome.reason) == ("scheduled", DAY + timedelta(seconds=20), "smtp_4xx")
    # ...where it ends expired with the reason of that failure
    at_deadline = decide(now=outcome.due_at, deadline_at=outcome.due_at, current_channel="email",
                         channel_attempts=1, last_transient_reason="smtp_4xx")
    assert (at_deadline.action, at_deadline.state, at_deadline.reason) == ("end", "expired", "smtp_4xx")


def test_a_delivery_refused_transiently_all_day_is_attempted_until_its_deadline_and_ends_expired():
    # Given email is the only channel and its provider refuses every attempt, transiently
    customer = replace(ANN, consent=frozenset({"email"}))
    deadline = DAY + timedelta(hours=24)
    now, current, count, last = DAY, None, 0, None
    attempts: list[datetime] = []
    while True:
        decision = decide(now=now, deadline_at=deadline, customer=customer, current_channel=current,
                          channel_attempts=count, last_transient_reason=last)
        if decision.action == "reschedule":
            now = decision.due_at
            continue
        if decision.action == "end":
            break
        attempts.append(now)
        outcome = attempt(now=now, deadline_at=deadline, channel=decision.channel, channels=decision.channels,
                          channel_attempts=decision.channel_attempts + 1, reason="smtp_4xx")
        assert outcome.state == "scheduled"
        current, count, last, now = decision.channel, outcome.channel_attempts, "smtp_4xx", outcome.due_at
    # Then it ends expired at its deadline, with the provider's reason, never failed
    assert (decision.state, decision.reason, now) == ("expired", "smtp_4xx", deadline)
    # ...after attempts all day long, every one before the deadline, at most 30 minutes
    # apart outside quiet hours (21:00–08:00 in New York)
    assert len(attempts) > 20 and attempts[-1] < deadline
    assert NY_MORNING in attempts
    gaps = [later - earlier for earlier, later in itertools.pairwise(attempts) if later != NY_MORNING]
    assert max(gaps) <= timedelta(minutes=30)


@pytest.mark.parametrize(
    ("channels", "current", "count", "expected"),
    [
        (["email", "sms"], None, 0, Turn("email", 0)),
        (["email", "sms"], "email", 2, Turn("email", 2)),  # within its turn
        (["email", "sms"], "email", 5, Turn("sms", 0)),  # its turn is over: the next, fresh
        (["sms"], "email", 1, Turn("sms", 0)),  # email failed for good
        (["email", "sms"], "sms", 5, Turn("email", 5)),  # every channel had its turn: round again
        (["email", "sms"], "email", 6, Turn("sms", 6)),
        (["email"], "email", 9, Turn("email", 9)),  # the only channel left keeps going
        (["email"], "sms", 1, Turn("email", 5)),  # sms failed for good after email's turn
        ([], "email", 3, None),
    ],
)
def test_next_turn(channels, current, count, expected):
    assert next_turn(channels, ("email", "sms"), current, count, 5) == expected


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


@pytest.mark.parametrize(("now", "deadline_at"), [(DAY, DAY), (NIGHT, NY_MORNING)])
def test_a_delivery_that_was_being_retried_expires_with_its_last_transient_failure(now, deadline_at):
    from coupons.delivery_rules import send_window

    decision = send_window(now=now, deadline_at=deadline_at, timezone="America/New_York", market=NA,
                           last_transient_reason="http_503")
    assert (decision.state, decision.reason) == ("expired", "http_503")


# --- the customer's zone: one rule for planning, sending and the expiry date ----------


@pytest.mark.parametrize("zone", ["Mars/Olympus_Mons", "", "../etc/passwd"])
def test_a_zone_that_does_not_exist_falls_back_to_the_country_s_in_planning_and_at_send_time(zone):
    # Given a US customer whose stored zone is not a real one (a row written by hand)
    customer = replace(ANN, timezone=zone or None)
    # When a night order is planned and decided at send time
    planned = plan(trigger_at=NIGHT, now=NIGHT, customer=customer)
    decided = decide(now=NIGHT, deadline_at=NIGHT + timedelta(hours=20), customer=customer)
    # Then both read New York's quiet hours, the zone the planner gives the expiry date
    assert planned.due_at == NY_MORNING
    assert (decided.action, decided.due_at) == ("reschedule", NY_MORNING)


def test_a_real_zone_of_the_customer_wins_over_the_country_s():
    from coupons.timing import customer_zone

    # A US customer living in Jakarta reads times in Jakarta; without a zone, New York's
    assert customer_zone(replace(ANN, timezone="Asia/Jakarta"), NA) == "Asia/Jakarta"
    assert customer_zone(replace(ANN, timezone="Mars/Olympus_Mons"), NA) == "America/New_York"
