"""Rule 1 (trigger) and rule 8 (deadline, quiet hours), and retry backoff (rule 12)."""

from __future__ import annotations

import itertools

import random
from datetime import UTC, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from coupons.timing import (
    coupon_expires_at,
    deadline_for,
    outside_quiet_hours,
    retry_due_at,
    stream_fallback_at,
    stream_trigger_at,
)

NIGHT_21_08 = (time(21, 0), time(8, 0))  # north_america, europe, rest_of_world
NIGHT_22_08 = (time(22, 0), time(8, 0))  # southeast_asia, latin_america
NIGHT_22_09 = (time(22, 0), time(9, 0))  # middle_east


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def local(zone: str, *args: int, fold: int = 0) -> datetime:
    return datetime(*args, tzinfo=ZoneInfo(zone), fold=fold)


# --- deadline and trigger -------------------------------------------------


def test_deadline_is_trigger_plus_24_hours():
    assert deadline_for(utc(2026, 5, 10, 13, 45, 7)) == utc(2026, 5, 11, 13, 45, 7)


def test_deadline_is_24_elapsed_hours_across_a_dst_change():
    # Given a trigger expressed in New York time the day before clocks go forward
    trigger = local("America/New_York", 2026, 3, 7, 12, 0)

    # When
    deadline = deadline_for(trigger)

    # Then a full 24 hours pass, not 23
    assert deadline.astimezone(UTC) - trigger.astimezone(UTC) == timedelta(hours=24)


def test_stream_trigger_waits_while_the_stream_has_not_ended():
    assert stream_trigger_at(utc(2026, 5, 10, 12), utc(2026, 5, 10, 12, 30), None) is None


def test_stream_trigger_is_the_stream_end_when_orders_came_before_it():
    first, last, ended = utc(2026, 5, 10, 12), utc(2026, 5, 10, 12, 30), utc(2026, 5, 10, 13)

    assert stream_trigger_at(first, last, ended) == ended


def test_stream_trigger_is_the_last_order_when_it_came_after_the_end():
    first, ended, last = utc(2026, 5, 10, 12), utc(2026, 5, 10, 13), utc(2026, 5, 10, 13, 20)

    assert stream_trigger_at(first, last, ended) == last


def test_stream_without_end_falls_back_to_order_time_plus_six_hours():
    assert stream_fallback_at(utc(2026, 5, 10, 12, 5)) == utc(2026, 5, 10, 18, 5)


# --- quiet hours ----------------------------------------------------------


@pytest.mark.parametrize(
    ("zone", "quiet", "when_local", "expected_local"),
    [
        # before midnight → the next morning
        ("Asia/Jakarta", NIGHT_22_08, (2026, 5, 10, 23, 30), (2026, 5, 11, 8, 0)),
        ("Asia/Jakarta", NIGHT_22_08, (2026, 5, 10, 22, 0), (2026, 5, 11, 8, 0)),
        ("America/New_York", NIGHT_21_08, (2026, 1, 15, 21, 0), (2026, 1, 16, 8, 0)),
        ("America/New_York", NIGHT_21_08, (2026, 1, 15, 23, 59), (2026, 1, 16, 8, 0)),
        ("America/Sao_Paulo", NIGHT_22_08, (2026, 6, 1, 23, 0), (2026, 6, 2, 8, 0)),
        ("Asia/Riyadh", NIGHT_22_09, (2026, 6, 1, 22, 15), (2026, 6, 2, 9, 0)),
        # month and year boundaries
        ("Asia/Jakarta", NIGHT_22_08, (2026, 12, 31, 23, 0), (2027, 1, 1, 8, 0)),
        # after midnight → the same morning
        ("Asia/Jakarta", NIGHT_22_08, (2026, 5, 11, 0, 0), (2026, 5, 11, 8, 0)),
        ("Asia/Jakarta", NIGHT_22_08, (2026, 5, 11, 7, 59), (2026, 5, 11, 8, 0)),
        ("America/New_York", NIGHT_21_08, (2026, 1, 16, 3, 0), (2026, 1, 16, 8, 0)),
        ("America/Sao_Paulo", NIGHT_22_08, (2026, 6, 2, 1, 30), (2026, 6, 2, 8, 0)),
        ("Asia/Riyadh", NIGHT_22_09, (2026, 6, 2, 8, 30), (2026, 6, 2, 9, 0)),
    ],
)
def test_delivery_inside_quiet_hours_moves_to_their_end_on_the_right_day(zone, quiet, when_local, expected_local):
    # Given a delivery due at a local night-time
    when = local(zone, *when_local).astimezone(UTC)

    # When
    due = outside_quiet_hours(when, zone, *quiet)

    # Then it is due at the end of the quiet hours, in UTC
    assert due == local(zone, *expected_local)
    assert due.utcoffset() == timedelta(0)


@pytest.mark.parametrize(
    ("zone", "quiet", "when_local"),
    [
        ("Asia/Jakarta", NIGHT_22_08, (2026, 5, 10, 21, 59)),
        ("Asia/Jakarta", NIGHT_22_08, (2026, 5, 10, 8, 0)),
        ("Asia/Jakarta", NIGHT_22_08, (2026, 5, 10, 14, 0)),
        ("America/New_York", NIGHT_21_08, (2026, 1, 15, 20, 59)),
        ("America/New_York", NIGHT_21_08, (2026, 1, 15, 8, 0)),
        ("America/Sao_Paulo", NIGHT_22_08, (2026, 6, 1, 21, 30)),
        ("Asia/Riyadh", NIGHT_22_09, (2026, 6, 1, 9, 0)),
    ],
)
def test_delivery_outside_quiet_hours_is_not_moved(zone, quiet, when_local):
    when = local(zone, *when_local).astimezone(UTC)

    assert outside_quiet_hours(when, zone, *quiet) == when


def test_same_instant_is_quiet_in_one_zone_and_not_in_another():
    # 15:00 UTC is 22:00 in Jakarta (quiet) and 12:00 in Sao Paulo (not quiet)
    when = utc(2026, 5, 10, 15, 0)

    assert outside_quiet_hours(when, "Asia/Jakarta", *NIGHT_22_08) == utc(2026, 5, 11, 1, 0)
    assert outside_quiet_hours(when, "America/Sao_Paulo", *NIGHT_22_08) == when


def test_input_with_an_offset_is_returned_as_the_same_instant_in_utc():
    when = datetime(2026, 5, 10, 14, 0, tzinfo=timezone(timedelta(hours=7)))

    result = outside_quiet_hours(when, "Asia/Jakarta", *NIGHT_22_08)

    assert result == when
    assert result.utcoffset() == timedelta(0)


def test_quiet_hours_within_one_day_are_supported():
    quiet = (time(1, 0), time(6, 0))

    assert outside_quiet_hours(utc(2026, 5, 10, 3), "UTC", *quiet) == utc(2026, 5, 10, 6)
    assert outside_quiet_hours(utc(2026, 5, 10, 23), "UTC", *quiet) == utc(2026, 5, 10, 23)


@pytest.mark.parametrize(
    ("when", "expected"),
    [
        # New York, spring forward 2026-03-08 02:00 EST → 03:00 EDT; 08:00 EDT is 12:00 UTC
        (utc(2026, 3, 8, 3, 0), utc(2026, 3, 8, 12, 0)),  # 22:00 EST on the 7th
        (utc(2026, 3, 8, 6, 30), utc(2026, 3, 8, 12, 0)),  # 01:30 EST
        (utc(2026, 3, 8, 7, 30), utc(2026, 3, 8, 12, 0)),  # 03:30 EDT
        # New York, fall back 2026-11-01 02:00 EDT → 01:00 EST; 08:00 EST is 13:00 UTC
        (utc(2026, 11, 1, 2, 0), utc(2026, 11, 1, 13, 0)),  # 22:00 EDT on the 31st
        (utc(2026, 11, 1, 5, 30), utc(2026, 11, 1, 13, 0)),  # 01:30 EDT (first pass)
        (utc(2026, 11, 1, 6, 30), utc(2026, 11, 1, 13, 0)),  # 01:30 EST (second pass)
    ],
)
def test_new_york_dst_nights_end_at_eight_local_with_the_new_offset(when, expected):
    due = outside_quiet_hours(when, "America/New_York", *NIGHT_21_08)

    assert due == expected
    assert due.astimezone(ZoneInfo("America/New_York")).time() == time(8, 0)


@pytest.mark.parametrize(
    "when",
    [
        utc(2026, 3, 28, 21, 0),  # 22:00 CET on the 28th
        utc(2026, 3, 29, 0, 30),  # 01:30 CET
        utc(2026, 3, 29, 1, 30),  # 03:30 CEST
    ],
)
def test_berlin_spring_forward_night_ends_at_eight_cest(when):
    # 08:00 CEST (UTC+2) on 2026-03-29 is 06:00 UTC, not 07:00
    assert outside_quiet_hours(when, "Europe/Berlin", *NIGHT_21_08) == utc(2026, 3, 29, 6, 0)


# --- retry backoff --------------------------------------------------------

NOW = utc(2026, 5, 10, 12, 0)


def delays(attempt: int, base: float, seed: int, n: int = 300, retry_after: float | None = None) -> list[float]:
    rng = random.Random(seed)
    return [
        (retry_due_at(NOW, attempt, base, rng, retry_after) - NOW).total_seconds()
        for _ in range(n)
    ]


@pytest.mark.parametrize("attempt", [1, 2, 3, 4, 5])
def test_retry_delay_is_jittered_within_half_and_one_and_a_half_of_nominal(attempt):
    # Given base 60 s the nominal delay doubles with each attempt
    nominal = 60 * 2 ** (attempt - 1)

    # When
    samples = delays(attempt, 60, seed=attempt)

    # Then every delay is within the jitter band, and the band is actually used
    assert all(0.5 * nominal <= d <= 1.5 * nominal for d in samples)
    assert min(samples) < 0.7 * nominal
    assert max(samples) > 1.3 * nominal


def test_retry_delay_grows_exponentially():
    means = [sum(delays(attempt, 60, seed=7)) / 300 for attempt in (1, 2, 3, 4)]

    for earlier, later in itertools.pairwise(means):
        assert 1.6 < later / earlier < 2.4


@pytest.mark.parametrize("attempt", [7, 8, 20, 5000])
def test_retry_delay_is_capped_at_30_minutes_after_jitter_and_still_spread(attempt):
    # 60 × 2^6 s is over an hour: the cap holds the jittered delay to 30 minutes, and the
    # waits stay spread (10–30 min), so deliveries refused together do not return together
    samples = delays(attempt, 60, seed=attempt)

    assert all(600 <= d <= 1800 for d in samples)
    assert min(samples) < 800 and max(samples) > 1600


def test_a_base_above_the_cap_is_held_to_it():
    assert all(d <= 1800 for d in delays(1, 7200, seed=5))


def test_retry_is_always_in_the_future():
    assert all(d > 0 for d in delays(1, 1, seed=3))


def test_same_seed_gives_the_same_retry_time():
    assert delays(2, 60, seed=42, n=5) == delays(2, 60, seed=42, n=5)


def test_retry_after_is_a_floor():
    # A provider asking for an hour is never retried sooner, even past the backoff's cap
    assert all(d >= 3600 for d in delays(1, 60, seed=1, retry_after=3600))


def test_small_retry_after_does_not_shorten_the_backoff():
    with_hint = delays(3, 60, seed=9, n=50, retry_after=1)
    without = delays(3, 60, seed=9, n=50)

    assert with_hint == without
    assert all(d >= 120 for d in with_hint)


# --- coupon expiry: the end of the named local day ------------


@pytest.mark.parametrize(
    ("zone", "trigger_local", "days", "end_local"),
    [
        # triggered at 10:00 → valid through the whole named day, not until 10:00
        ("America/New_York", (2026, 3, 10, 10, 0), 7, (2026, 3, 18, 0, 0)),
        ("Asia/Jakarta", (2026, 3, 10, 23, 30), 14, (2026, 3, 25, 0, 0)),
        ("Asia/Kolkata", (2026, 3, 10, 0, 0), 7, (2026, 3, 18, 0, 0)),
        ("Pacific/Kiritimati", (2026, 3, 10, 12, 0), 7, (2026, 3, 18, 0, 0)),
        ("Pacific/Pago_Pago", (2026, 3, 10, 12, 0), 7, (2026, 3, 18, 0, 0)),
        # across the spring-forward change: still local midnight, not 7 × 24 h
        ("Europe/Berlin", (2026, 3, 24, 9, 0), 7, (2026, 4, 1, 0, 0)),
        ("America/New_York", (2026, 3, 5, 9, 0), 7, (2026, 3, 13, 0, 0)),
        # across the autumn change
        ("Europe/Berlin", (2026, 10, 20, 9, 0), 7, (2026, 10, 28, 0, 0)),
    ],
)
def test_a_coupon_expires_at_the_end_of_the_named_local_day(zone, trigger_local, days, end_local):
    trigger = local(zone, *trigger_local)
    expires_at = coupon_expires_at(trigger.astimezone(UTC), days, zone)
    assert expires_at.tzinfo is not None
    assert expires_at == local(zone, *end_local)
    # the afternoon of the named day is still valid; the next local morning is not
    named_day_afternoon = local(zone, *end_local) - timedelta(hours=9)
    assert named_day_afternoon < expires_at
    assert (expires_at - timedelta(microseconds=1)).astimezone(ZoneInfo(zone)).date() == \
        (trigger.date() + timedelta(days=days))


@pytest.mark.parametrize(
    ("zone", "trigger_local", "expected_utc"),
    [
        # Santiago springs forward at midnight (6 Sep 2026): 00:00 does not exist, the day starts 01:00 -03
        ("America/Santiago", (2026, 8, 29, 12, 0), utc(2026, 9, 6, 4, 0)),
        # Havana springs forward at midnight (8 Mar 2026)
        ("America/Havana", (2026, 2, 28, 12, 0), utc(2026, 3, 8, 5, 0)),
    ],
)
def test_a_midnight_skipped_by_dst_ends_the_day_at_the_first_real_instant(zone, trigger_local, expected_utc):
    expires_at = coupon_expires_at(local(zone, *trigger_local), 7, zone)
    assert expires_at == expected_utc
    assert expires_at.astimezone(ZoneInfo(zone)).hour == 1  # 01:00 local, the first instant of that day


def test_expiry_uses_the_customers_day_not_utcs():
    # 23:30 in Jakarta is 16:30 UTC the same day; 02:00 in Jakarta is the previous day in UTC
    late = coupon_expires_at(local("Asia/Jakarta", 2026, 3, 10, 2, 0), 1, "Asia/Jakarta")
    assert late == local("Asia/Jakarta", 2026, 3, 12, 0, 0)
