"""Rule 17: the hours in which marketing texts may go out (US federal and state law).

The windows are data in the markets file (`[<market>.sms_hours.<country>]`), never
code: a seller's lawyer can read and correct them without a release. This module
parses them and answers two questions, with no clock and no I/O:

- `next_allowed_sms`: the earliest instant at or after a due time at which a text may
  go out (the planner's due time for an SMS-first delivery);
- `sms_allowed_at`: whether a text may go out at an instant (the sender's check
  before every attempt, in-call retries included).

A text is allowed at an instant when the recipient's local wall-clock time is outside
the market's quiet hours AND inside that local date's SMS window: the windows narrow
quiet hours for SMS only. Windows are half-open, like quiet hours: ["08:00", "21:00"]
allows 08:00:00 up to, not including, 21:00:00.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Protocol
from zoneinfo import ZoneInfo

from .errors import ConfigError, EncoreError

SUBDIVISION_CODE = re.compile(r"[A-Z]{2}-[A-Z0-9]{1,3}")
"""ISO 3166-2: the country's alpha-2 code, a hyphen, up to three letters or digits (US-FL, GB-ENG)."""

DAY_NAMES = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
"""Monday first, as `date.weekday()` counts."""
DAY_GROUPS: dict[str, tuple[int, ...]] = {
    "every_day": tuple(range(7)),
    "weekdays": (0, 1, 2, 3, 4),
    "weekend": (5, 6),
}
"""Keys naming several days; a key naming one day wins over a group, `weekdays` and
`weekend` win over `every_day`."""
NO_WINDOW = "none"
"""A day's value meaning: no marketing texts at all that day."""

SEARCH_DAYS = 8
"""How far ahead `next_allowed_sms` looks: a valid file leaves time on at least one
weekday, so the answer always lies within a week and a day."""
_OFFSET_PROBE = timedelta(hours=6)
"""Step at which the search looks for a change of the zone's UTC offset. No zone
changes its offset twice within 6 hours."""
_DAY = timedelta(days=1)


class SmsHoursError(ConfigError, ValueError):
    """An unusable `sms_hours` table; the message names the market, country and key."""


class NoSmsTime(EncoreError, ValueError):
    """No instant within `SEARCH_DAYS` allows a text (the windows and the quiet hours
    leave no time at all); a parsed markets file never leads here."""


@dataclass(frozen=True)
class DayWindow:
    """One local day's window, start included, end excluded."""

    start: time
    end: time


@dataclass(frozen=True)
class SmsWindows:
    """When marketing texts may go out in one place: one window (or None: no texts
    that day) per weekday, Monday first. `where` is the file key it came from
    (`US` for the country-wide window, `US-FL` for a state), for logs and reasons."""

    where: str
    days: tuple[DayWindow | None, ...]

    def on(self, day: date) -> DayWindow | None:
        return self.days[day.weekday()]


@dataclass(frozen=True)
class SmsHours:
    """One country's SMS windows: the country-wide one (the US federal hours) and the
    stricter ones of its regions, each already narrowed to fit inside the country's."""

    country: str
    default: SmsWindows
    regions: Mapping[str, SmsWindows]

    def windows_for(self, region: str | None) -> SmsWindows:
        """The region's windows, or the country's for a region the file does not name."""
        if region is None:
            return self.default
        return self.regions.get(region.strip().upper(), self.default)


class _WithSmsHours(Protocol):
    """A market as this module reads it (coupons.markets.Market), named here so that the
    markets file's parser can import this module without a circle."""

    @property
    def sms_hours(self) -> Mapping[str, SmsHours]: ...


def sms_window_for(market: _WithSmsHours, country: str, region: str | None) -> SmsWindows | None:
    """The SMS windows for a customer of `market` in `country` (and ISO 3166-2 `region`),
    or None when the market sets none for that country (Canada: quiet hours only).

    A region the file does not name, a missing region, or a region of another country
    keeps the country's windows (for the US: the federal hours)."""
    hours = market.sms_hours.get(country.strip().upper())
    return None if hours is None else hours.windows_for(region)


# --- the time arithmetic ------------------------------------------------------


def sms_allowed_at(when: datetime, timezone: str, rules: SmsWindows | None, quiet_start: time,
                   quiet_end: time) -> bool:
    """True when a text may go out at `when` to a recipient in `timezone`: outside the
    market's quiet hours and inside that local date's SMS window (quiet hours alone when
    `rules` is None)."""
    wall = _aware(when).astimezone(ZoneInfo(timezone)).replace(tzinfo=None)
    midnight = datetime.combine(wall.date(), time())
    since_midnight = wall - midnight
    return any(start <= since_midnight < end for start, end in _allowed_spans(wall.date(), rules, quiet_start, quiet_end))


def next_allowed_sms(when: datetime, timezone: str, rules: SmsWindows | None, quiet_start: time,
                     quiet_end: time) -> datetime:
    """The earliest instant at or after `when` (UTC) at which `sms_allowed_at` holds.

    Local time is wall-clock time in `timezone`: on a spring-forward night the skipped
    hour does not exist (a window opening inside it opens when the clocks jump), and on
    a fall-back night the repeated hour counts by what the clock shows both times. The
    search walks spans of constant UTC offset, so each answer is exact to the
    microsecond, not rounded to a step. Raises `NoSmsTime` when nothing is allowed
    within `SEARCH_DAYS`."""
    zone = ZoneInfo(timezone)
    start = _aware(when).astimezone(UTC)
    instant = start
    while instant - start < timedelta(days=SEARCH_DAYS):
        offset = instant.astimezone(zone).utcoffset()
        assert offset is not None  # a ZoneInfo always has one
        wall = (instant + offset).replace(tzinfo=None)
        first_wall = _first_allowed_wall(wall, rules, quiet_start, quiet_end)
        if first_wall is None:
            break
        candidate = (first_wall - offset).replace(tzinfo=UTC)
        change = _offset_change(instant, candidate, zone, offset)
        if change is None:
            return candidate
        instant = change  # the clocks changed before the candidate: look again from there
    raise NoSmsTime(f"no time within {SEARCH_DAYS} days allows a text in {timezone} "
                    f"(windows {rules.where if rules else 'none'}, quiet hours {quiet_start:%H:%M}-{quiet_end:%H:%M})")


def _aware(when: datetime) -> datetime:
    if when.tzinfo is None or when.utcoffset() is None:
        raise ValueError("when must be timezone-aware")
    return when


def _span(start: time, end: time | None) -> tuple[timedelta, timedelta]:
    """Wall-clock span from midnight; end None is midnight at the end of the day."""
    def since_midnight(value: time) -> timedelta:
        return timedelta(hours=value.hour, minutes=value.minute, seconds=value.second, microseconds=value.microsecond)
    return since_midnight(start), _DAY if end is None else since_midnight(end)


def _open_spans(quiet_start: time, quiet_end: time) -> list[tuple[timedelta, timedelta]]:
    """The spans of a local day outside quiet hours (the complement of [start, end),
    which wraps past midnight when start > end; start == end is no quiet hours)."""
    if quiet_start == quiet_end:
        return [_span(time(0), None)]
    if quiet_start < quiet_end:
        return [s for s in (_span(time(0), quiet_start), _span(quiet_end, None)) if s[0] < s[1]]
    return [_span(quiet_end, quiet_start)]


def _allowed_spans(day: date, rules: SmsWindows | None, quiet_start: time,
                   quiet_end: time) -> list[tuple[timedelta, timedelta]]:
    """The spans of `day` (from its midnight) in which a text may go out, in order."""
    spans = _open_spans(quiet_start, quiet_end)
    if rules is None:
        return spans
    window = rules.on(day)
    if window is None:
        return []
    low, high = _span(window.start, window.end)
    clipped = [(max(start, low), min(end, high)) for start, end in spans]
    return [(start, end) for start, end in clipped if start < end]


def _first_allowed_wall(wall: datetime, rules: SmsWindows | None, quiet_start: time,
                        quiet_end: time) -> datetime | None:
    """The first naive wall-clock time at or after `wall` that allows a text."""
    for ahead in range(SEARCH_DAYS + 1):
        day = wall.date() + timedelta(days=ahead)
        midnight = datetime.combine(day, time())
        for start, end in _allowed_spans(day, rules, quiet_start, quiet_end):
            if midnight + end > wall:
                return max(wall, midnight + start)
    return None


def _offset_change(after: datetime, until: datetime, zone: ZoneInfo, offset: timedelta) -> datetime | None:
    """The first instant in (after, until] at which `zone`'s UTC offset is no longer
    `offset`, or None. Transitions fall on whole seconds; found by bisection."""
    before = after
    probe = after
    while probe < until:
        probe = min(probe + _OFFSET_PROBE, until)
        if probe.astimezone(zone).utcoffset() != offset:
            low, high = math.floor(before.timestamp()), math.ceil(probe.timestamp())
            while high - low > 1:
                middle = (low + high) // 2
                if datetime.fromtimestamp(middle, UTC).astimezone(zone).utcoffset() == offset:
                    low = middle
                else:
                    high = middle
            return datetime.fromtimestamp(high, UTC)
        before = probe
    return None


# --- the markets file's sms_hours tables ----------------------------------------


def parse_sms_hours(market: str, raw: object, quiet_start: time, quiet_end: time) -> dict[str, SmsHours]:
    """Country → its SMS hours, from a market's `sms_hours` table (None: the market sets
    none). Every schedule must leave some time for texts outside the market's quiet
    hours; a region's windows are narrowed to the country's (a state law adds to the
    federal one, it cannot widen it)."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise SmsHoursError(f"{market}.sms_hours: must be a table per country, like [{market}.sms_hours.US]")
    hours: dict[str, SmsHours] = {}
    for country, table in raw.items():
        where = f"{market}.sms_hours.{country}"
        if not (len(country) == 2 and country.isascii() and country.isalpha() and country.isupper()):
            raise SmsHoursError(f"{where}: must be an ISO 3166-1 alpha-2 country code like US")
        if not isinstance(table, dict):
            raise SmsHoursError(f"{where}: must be a table with a `default` window and one per region")
        if "default" not in table:
            raise SmsHoursError(f'{where}.default: required (the country-wide window, like ["08:00", "21:00"])')
        default = _parse_windows(table["default"], f"{where}.default", country)
        regions: dict[str, SmsWindows] = {}
        for key, value in table.items():
            if key == "default":
                continue
            if not (SUBDIVISION_CODE.fullmatch(key) and key.startswith(country + "-")):
                raise SmsHoursError(f"{where}.{key}: must be `default` or an ISO 3166-2 code of a {country} "
                                    f"region, like {country}-FL")
            regions[key] = _narrowed(_parse_windows(value, f"{where}.{key}", key), default)
        for windows in (default, *regions.values()):
            _check_leaves_time(windows, f"{where}.{'default' if windows is default else windows.where}",
                               quiet_start, quiet_end)
        hours[country] = SmsHours(country=country, default=default, regions=regions)
    return hours


def _parse_windows(value: object, where: str, key: str) -> SmsWindows:
    if isinstance(value, list) or value == NO_WINDOW:
        window = _parse_window(value, where)
        return SmsWindows(where=key, days=(window,) * 7)
    if not isinstance(value, dict):
        raise SmsHoursError(f'{where}: must be ["HH:MM", "HH:MM"] or a table of days like '
                            f'{{ weekdays = ["09:00", "18:00"], weekend = ["10:00", "17:00"] }}')
    days: list[DayWindow | None] = [None] * 7
    rank = [0] * 7  # how specific the key that set each day was: 0 unset, 1 every_day, 2 group, 3 one day
    for name, spec in value.items():
        indexes: tuple[int, ...]
        if name in DAY_NAMES:
            indexes, specific = (DAY_NAMES.index(name),), 3
        elif name in DAY_GROUPS:
            indexes, specific = DAY_GROUPS[name], 1 if name == "every_day" else 2
        else:
            raise SmsHoursError(f"{where}.{name}: unknown day; use {', '.join((*DAY_GROUPS, *DAY_NAMES))}")
        window = _parse_window(spec, f"{where}.{name}")
        for index in indexes:
            if specific > rank[index]:
                days[index], rank[index] = window, specific
    missing = [DAY_NAMES[index] for index in range(7) if rank[index] == 0]
    if missing:
        raise SmsHoursError(f'{where}: no window for {", ".join(missing)}; give one, or `{missing[0]} = "none"` '
                            f"for no texts that day")
    return SmsWindows(where=key, days=tuple(days))


def _parse_window(value: object, where: str) -> DayWindow | None:
    if value == NO_WINDOW:
        return None
    if not (isinstance(value, list) and len(value) == 2):
        raise SmsHoursError(f'{where}: must be ["HH:MM", "HH:MM"] (start, end) or "{NO_WINDOW}"')
    start, end = (_parse_hhmm(part, f"{where}[{index}]") for index, part in enumerate(value))
    if not start < end:
        raise SmsHoursError(f"{where}: must start before it ends (a window cannot cross midnight)")
    return DayWindow(start, end)


def _parse_hhmm(value: object, where: str) -> time:
    if not (isinstance(value, str) and re.fullmatch(r"([01]\d|2[0-3]):[0-5]\d", value)):
        raise SmsHoursError(f'{where}: must be a time "HH:MM" from "00:00" to "23:59", got {value!r}')
    return time(int(value[:2]), int(value[3:]))


def _narrowed(windows: SmsWindows, bound: SmsWindows) -> SmsWindows:
    def both(one: DayWindow | None, other: DayWindow | None) -> DayWindow | None:
        if one is None or other is None:
            return None
        start, end = max(one.start, other.start), min(one.end, other.end)
        return DayWindow(start, end) if start < end else None
    return SmsWindows(where=windows.where, days=tuple(both(a, b) for a, b in zip(windows.days, bound.days, strict=True)))


def _check_leaves_time(windows: SmsWindows, where: str, quiet_start: time, quiet_end: time) -> None:
    if not any(_allowed_spans(date(2026, 1, 5) + timedelta(days=index), windows, quiet_start, quiet_end)
               for index in range(7)):  # 2026-01-05 is a Monday
        raise SmsHoursError(f"{where}: leaves no time for texts on any day once the market's quiet hours "
                            f"({quiet_start:%H:%M}-{quiet_end:%H:%M}) and the country's window are taken out")
