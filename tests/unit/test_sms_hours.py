"""Rule 17: US marketing texts only inside the federal and state windows, in local time."""

from __future__ import annotations

import math
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from coupons.markets import MarketsFileError, load_markets, parse_markets
from coupons.sms_hours import (
    DayWindow,
    NoSmsTime,
    SmsWindows,
    next_allowed_sms,
    sms_allowed_at,
    sms_window_for,
)
from coupons.timing import outside_quiet_hours

NIGHT = (time(21, 0), time(8, 0))  # north_america's quiet hours


def at(zone: str, *args: int, fold: int = 0) -> datetime:
    return datetime(*args, tzinfo=ZoneInfo(zone), fold=fold)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


@pytest.fixture(scope="module")
def north_america():
    return load_markets().by_name["north_america"]


def us(market, region: str | None) -> SmsWindows:
    windows = sms_window_for(market, "US", region)
    assert windows is not None
    return windows


def every_day(start: time, end: time) -> SmsWindows:
    return SmsWindows("test", (DayWindow(start, end),) * 7)


# --- the shipped table is rule 17 -------------------------------------------------

H = time
SPEC_WINDOWS = {
    # region: (Monday-Friday, Saturday, Sunday)
    None: ((H(8), H(21)),) * 3,
    "US-FL": ((H(8), H(20)),) * 3,
    "US-OK": ((H(8), H(20)),) * 3,
    "US-MD": ((H(8), H(20)),) * 3,
    "US-MS": ((H(8), H(20)),) * 3,
    "US-NJ": ((H(8), H(20)),) * 3,
    "US-CT": ((H(9), H(20)),) * 3,
    "US-TX": ((H(9), H(21)), (H(9), H(21)), (H(12), H(21))),
    "US-RI": ((H(9), H(18)), (H(10), H(17)), (H(10), H(17))),
    "US-CA": ((H(8), H(21)),) * 3,  # a state without its own window keeps the federal one
}


@pytest.mark.parametrize("region", list(SPEC_WINDOWS))
def test_the_shipped_windows_are_the_ones_rule_17_names(north_america, region):
    weekday, saturday, sunday = SPEC_WINDOWS[region]
    windows = us(north_america, region)

    assert [(w.start, w.end) for w in windows.days if w] == [weekday] * 5 + [saturday, sunday]


def test_canada_shares_the_market_but_keeps_only_its_quiet_hours(north_america):
    assert sms_window_for(north_america, "CA", "CA-ON") is None
    assert sms_window_for(north_america, "CA", None) is None


def test_countries_outside_the_us_have_no_sms_windows():
    markets = load_markets()
    for country in ("GB", "ID", "BR", "SA", "JP"):
        assert sms_window_for(markets.for_country(country), country, None) is None


@pytest.mark.parametrize("region", [None, "US-ZZ", "CA-ON", " us-fl "])
def test_a_missing_unknown_or_foreign_region_keeps_the_federal_hours_and_case_does_not_matter(north_america, region):
    windows = us(north_america, region)

    expected = "US-FL" if region == " us-fl " else "US"
    assert windows.where == expected


# --- scheduling and the send-time check ---------------------------------------------

NEW_YORK, CHICAGO = "America/New_York", "America/Chicago"


def test_a_florida_customer_at_half_past_eight_in_the_evening_gets_the_text_next_morning(north_america):
    # Given a Florida customer at 20:30 local on a Monday (federal hours would allow it)
    when = at(NEW_YORK, 2026, 5, 11, 20, 30)
    florida = us(north_america, "US-FL")

    # Then no text now, and the first chance is 08:00 the next morning
    assert not sms_allowed_at(when, NEW_YORK, florida, *NIGHT)
    assert sms_allowed_at(when, NEW_YORK, us(north_america, None), *NIGHT)
    assert next_allowed_sms(when, NEW_YORK, florida, *NIGHT) == at(NEW_YORK, 2026, 5, 12, 8, 0)


@pytest.mark.parametrize(
    ("region", "when_local", "expected_local"),
    [
        # Texas: Sundays only from noon; Saturdays from nine
        ("US-TX", (2026, 5, 10, 10, 0), (2026, 5, 10, 12, 0)),  # Sunday
        ("US-TX", (2026, 5, 10, 8, 30), (2026, 5, 10, 12, 0)),  # Sunday, after the quiet hours
        ("US-TX", (2026, 5, 9, 8, 30), (2026, 5, 9, 9, 0)),  # Saturday
        ("US-TX", (2026, 5, 9, 21, 0), (2026, 5, 10, 12, 0)),  # Saturday night -> Sunday noon
        ("US-TX", (2026, 5, 10, 21, 30), (2026, 5, 11, 9, 0)),  # Sunday night -> Monday nine
        # Rhode Island: weekdays 09-18, weekends 10-17
        ("US-RI", (2026, 5, 9, 9, 30), (2026, 5, 9, 10, 0)),  # Saturday
        ("US-RI", (2026, 5, 12, 18, 30), (2026, 5, 13, 9, 0)),  # Tuesday evening -> Wednesday
        ("US-RI", (2026, 5, 15, 18, 30), (2026, 5, 16, 10, 0)),  # Friday evening -> Saturday at ten
        ("US-RI", (2026, 5, 16, 17, 0), (2026, 5, 17, 10, 0)),  # Saturday at five -> Sunday at ten
        ("US-RI", (2026, 5, 17, 17, 30), (2026, 5, 18, 9, 0)),  # Sunday evening -> Monday at nine
        # Connecticut starts at nine although the quiet hours end at eight
        ("US-CT", (2026, 5, 12, 8, 15), (2026, 5, 12, 9, 0)),
        # an unknown state keeps the federal 21:00
        ("US-CA", (2026, 5, 12, 20, 30), (2026, 5, 12, 20, 30)),
        ("US-CA", (2026, 5, 12, 21, 0), (2026, 5, 13, 8, 0)),
        # month and year ends
        ("US-FL", (2026, 12, 31, 20, 0), (2027, 1, 1, 8, 0)),
    ],
)
def test_state_windows_by_day_of_week(north_america, region, when_local, expected_local):
    zone = CHICAGO if region == "US-TX" else NEW_YORK
    when = at(zone, *when_local)

    due = next_allowed_sms(when, zone, us(north_america, region), *NIGHT)

    assert due == at(zone, *expected_local)
    assert due.utcoffset() == timedelta(0)
    assert sms_allowed_at(due, zone, us(north_america, region), *NIGHT)


@pytest.mark.parametrize(
    ("region", "allowed", "refused"),
    [
        (None, [(8, 0, 0), (20, 59, 59)], [(7, 59, 59), (21, 0, 0)]),
        ("US-FL", [(8, 0, 0), (19, 59, 59)], [(7, 59, 59), (20, 0, 0), (20, 30, 0)]),
        ("US-CT", [(9, 0, 0), (19, 59, 59)], [(8, 59, 59), (20, 0, 0)]),
        ("US-RI", [(9, 0, 0), (17, 59, 59)], [(8, 59, 59), (18, 0, 0)]),
    ],
)
def test_a_window_includes_its_start_and_excludes_its_end(north_america, region, allowed, refused):
    windows = us(north_america, region)
    for hms in allowed:
        assert sms_allowed_at(at(NEW_YORK, 2026, 5, 12, *hms), NEW_YORK, windows, *NIGHT), hms
    for hms in refused:
        assert not sms_allowed_at(at(NEW_YORK, 2026, 5, 12, *hms), NEW_YORK, windows, *NIGHT), hms


def test_the_local_time_is_the_customers_zone_not_utc(north_america):
    # 01:30 UTC on a Tuesday is 20:30 the evening before in Chicago: too late in Florida's rules
    when = utc(2026, 5, 12, 1, 30)
    florida = us(north_america, "US-FL")

    assert not sms_allowed_at(when, CHICAGO, florida, *NIGHT)
    assert next_allowed_sms(when, CHICAGO, florida, *NIGHT) == at(CHICAGO, 2026, 5, 12, 8, 0)
    assert sms_allowed_at(when, "America/Los_Angeles", florida, *NIGHT)  # 18:30 there


def test_stricter_quiet_hours_still_win_over_a_wider_window():
    # A market quiet until 09:00 keeps texts back although the federal window opens at 08:00
    quiet = (time(22, 0), time(9, 0))
    federal = every_day(time(8), time(21))

    assert next_allowed_sms(at(NEW_YORK, 2026, 5, 12, 8, 30), NEW_YORK, federal, *quiet) == at(NEW_YORK, 2026, 5, 12, 9)


def test_a_day_whose_window_lies_inside_the_quiet_hours_is_skipped():
    # Monday's window 06:00-07:30 is all quiet time; the next chance is Tuesday's window
    windows = SmsWindows("test", (DayWindow(time(6), time(7, 30)),) + (DayWindow(time(9), time(10)),) * 6)

    due = next_allowed_sms(at(NEW_YORK, 2026, 5, 11, 5, 0), NEW_YORK, windows, *NIGHT)

    assert due == at(NEW_YORK, 2026, 5, 12, 9, 0)


def test_a_day_without_texts_is_skipped():
    windows = SmsWindows("test", (DayWindow(time(9), time(18)),) * 6 + (None,))  # no texts on Sundays

    assert next_allowed_sms(at(NEW_YORK, 2026, 5, 9, 18, 0), NEW_YORK, windows, *NIGHT) == at(NEW_YORK, 2026, 5, 11, 9)


def test_without_windows_only_the_quiet_hours_count(north_america):
    canada = sms_window_for(north_america, "CA", None)
    for when in (at("America/Toronto", 2026, 5, 11, 22, 0), at("America/Toronto", 2026, 5, 11, 12, 0)):
        assert next_allowed_sms(when, "America/Toronto", canada, *NIGHT) == outside_quiet_hours(
            when, "America/Toronto", *NIGHT)


def test_a_naive_time_is_refused():
    with pytest.raises(ValueError, match="timezone-aware"):
        next_allowed_sms(datetime(2026, 5, 11, 12, 0), NEW_YORK, None, *NIGHT)


def test_windows_that_leave_no_time_at_all_raise_instead_of_looping():
    never = SmsWindows("test", (None,) * 7)

    with pytest.raises(NoSmsTime):
        next_allowed_sms(at(NEW_YORK, 2026, 5, 11, 12, 0), NEW_YORK, never, *NIGHT)


# --- daylight-saving changes in the US zones ------------------------------------------------

US_ZONES = ["America/New_York", "America/Chicago", "America/Denver", "America/Phoenix", "America/Los_Angeles",
            "America/Anchorage", "Pacific/Honolulu"]
SPRING_FORWARD, FALL_BACK = (2026, 3, 8), (2026, 11, 1)  # both Sundays, at 02:00 local


@pytest.mark.parametrize("zone", US_ZONES)
@pytest.mark.parametrize("change_day", [SPRING_FORWARD, FALL_BACK], ids=["spring-forward", "fall-back"])
@pytest.mark.parametrize(("region", "opens"), [(None, time(8)), ("US-TX", time(12)), ("US-RI", time(10))])
def test_the_window_opens_at_its_local_wall_clock_time_on_a_dst_change_day(north_america, zone, change_day, region,
                                                                           opens):
    # Given a text due at 21:30 the evening before the clocks change (a Saturday)
    eve = at(zone, *change_day, 21, 30) - timedelta(days=1)

    # When
    due = next_allowed_sms(eve, zone, us(north_america, region), *NIGHT)

    # Then it goes out when the customer's clock shows the window's opening, with the day's new offset
    expected = at(zone, *change_day, opens.hour, opens.minute)
    assert due == expected
    assert due.astimezone(ZoneInfo(zone)).time() == opens
    assert expected.utcoffset() == ZoneInfo(zone).utcoffset(datetime(*change_day, 12))


def test_a_window_opening_in_the_skipped_hour_opens_when_the_clocks_jump():
    # 02:00-03:00 does not exist in New York on 2026-03-08: a window from 02:30 opens at 03:00 EDT
    windows = every_day(time(2, 30), time(5))
    quiet = (time(0), time(0))  # none

    due = next_allowed_sms(at(NEW_YORK, 2026, 3, 8, 1, 45), NEW_YORK, windows, *quiet)

    assert due == utc(2026, 3, 8, 7, 0)
    assert due.astimezone(ZoneInfo(NEW_YORK)).time() == time(3, 0)


def test_the_repeated_hour_of_a_fall_back_night_counts_by_the_clock():
    # On 2026-11-01 New York shows 01:00-02:00 twice; a window from 01:30 is open during both
    windows = every_day(time(1, 30), time(5))
    quiet = (time(0), time(0))
    # (as UTC: Python never finds a time in a repeated hour equal to one in another zone)
    first_pass = at(NEW_YORK, 2026, 11, 1, 1, 45, fold=0).astimezone(UTC)  # EDT
    second_pass_early = at(NEW_YORK, 2026, 11, 1, 1, 10, fold=1).astimezone(UTC)  # EST

    assert next_allowed_sms(first_pass, NEW_YORK, windows, *quiet) == first_pass
    assert not sms_allowed_at(second_pass_early, NEW_YORK, windows, *quiet)
    assert next_allowed_sms(second_pass_early, NEW_YORK, windows, *quiet) == utc(2026, 11, 1, 6, 30)  # 01:30 EST


def test_a_window_that_closes_in_the_repeated_hour_reopens_when_the_clock_goes_back():
    # Open until 01:30: after 01:30 EDT the clock falls back to 01:00 EST, open again
    windows = every_day(time(0, 0), time(1, 30))
    quiet = (time(0), time(0))
    closed = at(NEW_YORK, 2026, 11, 1, 1, 40, fold=0)  # EDT

    assert not sms_allowed_at(closed, NEW_YORK, windows, *quiet)
    assert next_allowed_sms(closed, NEW_YORK, windows, *quiet) == utc(2026, 11, 1, 6, 0)  # 01:00 EST


# --- property: the answer is the first allowed instant ----------------------------------------

PROPERTY_ZONES = US_ZONES + ["America/Santiago", "Australia/Lord_Howe", "Europe/London", "Pacific/Chatham",
                             "Asia/Kolkata"]


def _transitions(zone: str) -> list[datetime]:
    """About when (to 3 hours) `zone` changes its UTC offset in 2026-2027."""
    info = ZoneInfo(zone)
    found = []
    instant = utc(2026, 1, 1)
    previous = instant.astimezone(info).utcoffset()
    while instant < utc(2028, 1, 1):
        instant += timedelta(hours=3)
        offset = instant.astimezone(info).utcoffset()
        if offset != previous:
            found.append(instant)
            previous = offset
    return found


TRANSITIONS = {zone: _transitions(zone) for zone in PROPERTY_ZONES}

def quarter(index: int) -> time:
    return time(index // 4, index % 4 * 15)


quarter_hours = st.builds(quarter, st.integers(0, 95))
windows_strategy = st.one_of(
    st.none(),
    st.integers(0, 94).flatmap(lambda start: st.builds(lambda end: DayWindow(quarter(start), quarter(end)),
                                                       st.integers(start + 1, 95))),
)


@st.composite
def cases(draw):
    zone = draw(st.sampled_from(PROPERTY_ZONES))
    near = draw(st.sampled_from(TRANSITIONS[zone])) if TRANSITIONS[zone] and draw(st.booleans()) else utc(2026, 6, 1)
    when = near + timedelta(seconds=draw(st.integers(-3 * 86400, 3 * 86400)))
    days = tuple(draw(windows_strategy) for _ in range(7))
    rules = draw(st.one_of(st.none(), st.just(SmsWindows("drawn", days))))
    return zone, when, rules, draw(quarter_hours), draw(quarter_hours)


def _allowed_minutes(when: datetime, until: datetime, zone: str, rules, quiet_start, quiet_end):
    """`when`, then every whole minute after it up to `until` (excluded), each with its verdict."""
    minute = datetime.fromtimestamp(math.ceil(when.timestamp() / 60) * 60, UTC)
    points = [when] + [minute + timedelta(minutes=k) for k in range(int((until - minute).total_seconds() // 60) + 1)]
    return [(p, sms_allowed_at(p, zone, rules, quiet_start, quiet_end)) for p in points if p < until]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases())
def test_the_answer_is_never_early_is_allowed_and_nothing_allowed_comes_before_it(case):
    zone, when, rules, quiet_start, quiet_end = case
    try:
        due = next_allowed_sms(when, zone, rules, quiet_start, quiet_end)
    except NoSmsTime:
        # then truly nothing in the search horizon allows a text
        assert not any(ok for _, ok in _allowed_minutes(when, when + timedelta(days=8), zone, rules, quiet_start,
                                                        quiet_end))
        return

    assert due >= when
    assert sms_allowed_at(due, zone, rules, quiet_start, quiet_end)
    assert due.utcoffset() == timedelta(0)
    earlier = [p for p, ok in _allowed_minutes(when, due, zone, rules, quiet_start, quiet_end) if ok]
    assert earlier == [], f"{earlier[0]} is allowed and comes before {due}"


# --- the markets file's sms_hours tables --------------------------------------------------

MARKETS = """
[home]
default = true
depth_percent = "10"
framing = "urgency"
valid_days = 7
channels = ["email", "sms"]
quiet_hours = ["21:00", "08:00"]
countries.US = {}

[home.sms_hours.US]
default = ["08:00", "21:00"]
US-FL = ["08:00", "20:00"]
US-TX = { weekdays = ["09:00", "21:00"], saturday = ["09:00", "21:00"], sunday = ["12:00", "21:00"] }
US-RI = { weekdays = ["09:00", "18:00"], weekend = ["10:00", "17:00"] }
"""


def test_an_edited_table_is_used_as_written():
    market = parse_markets(MARKETS).by_name["home"]

    texas = sms_window_for(market, "US", "US-TX")
    assert texas is not None and texas.days[6] == DayWindow(time(12), time(21))
    assert sms_window_for(market, "US", "US-NJ").where == "US"  # not listed in this file


def test_a_specific_day_wins_over_a_group_and_a_group_over_every_day():
    text = MARKETS.replace('US-FL = ["08:00", "20:00"]',
                           'US-FL = { every_day = ["08:00", "20:00"], weekend = ["09:00", "19:00"], '
                           'sunday = "none" }')
    florida = sms_window_for(parse_markets(text).by_name["home"], "US", "US-FL")

    assert florida is not None
    assert florida.days[:5] == (DayWindow(time(8), time(20)),) * 5
    assert florida.days[5] == DayWindow(time(9), time(19))
    assert florida.days[6] is None


def test_a_state_window_cannot_widen_the_federal_one():
    text = MARKETS.replace('US-FL = ["08:00", "20:00"]', 'US-FL = ["07:00", "22:00"]')
    florida = sms_window_for(parse_markets(text).by_name["home"], "US", "US-FL")

    assert florida is not None and set(florida.days) == {DayWindow(time(8), time(21))}


@pytest.mark.parametrize(
    ("old", "new", "names"),
    [
        ('default = ["08:00", "21:00"]\n', "", "home.sms_hours.US.default: required"),
        ('default = ["08:00", "21:00"]', 'default = ["8am", "9pm"]', "home.sms_hours.US.default[0]: must be a time"),
        ('default = ["08:00", "21:00"]', 'default = ["08:00", "24:00"]', "home.sms_hours.US.default[1]:"),
        ('default = ["08:00", "21:00"]', 'default = ["21:00", "08:00"]', "home.sms_hours.US.default: must start "
                                                                          "before it ends"),
        ('default = ["08:00", "21:00"]', 'default = ["08:00"]', "home.sms_hours.US.default: must be"),
        ('default = ["08:00", "21:00"]', 'default = "08:00-21:00"', "home.sms_hours.US.default: must be"),
        ('US-FL = ["08:00", "20:00"]', 'FL = ["08:00", "20:00"]', "home.sms_hours.US.FL: must be `default` or an "
                                                                  "ISO 3166-2 code"),
        ('US-FL = ["08:00", "20:00"]', 'CA-ON = ["08:00", "20:00"]', "home.sms_hours.US.CA-ON:"),
        ('US-FL = ["08:00", "20:00"]', 'US-FL = ["20:00", "20:00"]', "home.sms_hours.US.US-FL: must start"),
        ('weekend = ["10:00", "17:00"]', 'weekends = ["10:00", "17:00"]', "home.sms_hours.US.US-RI.weekends: "
                                                                          "unknown day"),
        ('weekend = ["10:00", "17:00"]', 'saturday = ["10:00", "17:00"]', "home.sms_hours.US.US-RI: no window for "
                                                                          "sunday"),
        ('sunday = ["12:00", "21:00"]', 'sunday = "closed"', "home.sms_hours.US.US-TX.sunday: must be"),
        ('[home.sms_hours.US]', '[home.sms_hours.usa]', "home.sms_hours.usa: must be an ISO 3166-1"),
        ('US-FL = ["08:00", "20:00"]', 'US-FL = ["06:00", "07:30"]', "home.sms_hours.US.US-FL: leaves no time"),
        ('US-FL = ["08:00", "20:00"]', 'US-FL = "none"', "home.sms_hours.US.US-FL: leaves no time"),
    ],
)
def test_a_broken_sms_hours_table_is_refused_naming_market_country_and_key(old, new, names):
    assert old in MARKETS
    with pytest.raises(MarketsFileError) as info:
        parse_markets(MARKETS.replace(old, new, 1))

    assert str(info.value).startswith(names), str(info.value)


def test_sms_hours_for_a_country_of_another_market_are_refused():
    text = MARKETS.replace("countries.US = {}", "countries.US = {}\nsms_hours.CA = { default = [\"08:00\", \"21:00\"] }")
    text += '\n[canada]\ndepth_percent = "10"\nframing = "urgency"\nvalid_days = 7\nchannels = ["sms"]\n' \
            'quiet_hours = ["21:00", "08:00"]\ncountries.CA = {}\n'

    with pytest.raises(MarketsFileError) as info:
        parse_markets(text)

    assert str(info.value).startswith("home.sms_hours.CA: CA is in market canada"), str(info.value)


def test_the_default_market_may_set_sms_hours_for_the_countries_it_takes():
    text = MARKETS.replace("[home.sms_hours.US]", "[home.sms_hours.PR]").replace("US-", "PR-")

    market = parse_markets(text).by_name["home"]

    assert sms_window_for(market, "PR", "PR-XX") is not None
