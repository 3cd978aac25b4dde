"""Rule 1 and rule 8: when a coupon triggers, is due, and must be sent by.

Every function takes the times it needs; none reads the clock.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

from .markets import Market, region_timezones
from .model import Customer

DEADLINE_AFTER = timedelta(hours=24)
STREAM_WAIT = timedelta(hours=6)
FREQUENCY_CAP = timedelta(hours=24)


def customer_zone(customer: Customer, market: Market) -> str:
    """The one rule for the zone a customer reads times in (quiet hours, SMS hours, the
    deadline's local time, the expiry date): theirs if it is a real IANA zone, else their
    region's main zone when the shipped table pins one (a US state: `region_timezones.toml`),
    else the market's zone for their country, else the country's main zone. A zone that
    does not exist (a row written by hand, a zone withdrawn since the event came) falls
    back instead of failing."""
    if customer_zone_is_own(customer):
        return customer.timezone  # type: ignore[return-value]
    zones = state_zones(customer)
    return zones[0] if zones else market.timezone_for(customer.country)


def state_zones(customer: Customer) -> tuple[str, ...]:
    """The zones of the customer's region (main zone first) when the shipped table names
    it and it lies in their country; empty otherwise."""
    region = customer.region
    if not region or not region.upper().startswith(f"{customer.country}-"):
        return ()
    return region_timezones(region)


def customer_zone_is_own(customer: Customer) -> bool:
    """Whether the customer gave a zone that exists (else `customer_zone` infers one)."""
    if not customer.timezone:
        return False
    try:
        ZoneInfo(customer.timezone)
        return True
    except (ValueError, LookupError):
        return False


def deadline_for(trigger_at: datetime) -> datetime:
    """24 elapsed hours, not 24 wall-clock hours: computed in UTC so a DST change can't shorten it."""
    return trigger_at.astimezone(UTC) + DEADLINE_AFTER


def stream_trigger_at(first_order_at: datetime, last_order_at: datetime, stream_ended_at: datetime | None) -> datetime | None:
    """When a customer's stream orders trigger, or None while still waiting for the end.

    The stream's end, or the customer's last order if it came after the end;
    `stream_fallback_at` covers a stream.ended that never arrives.
    """
    if stream_ended_at is None:
        return None
    return max(stream_ended_at, last_order_at)


def stream_fallback_at(first_order_at: datetime) -> datetime:
    """A stream order whose stream.ended never comes triggers 6 h after it."""
    return first_order_at.astimezone(UTC) + STREAM_WAIT


def coupon_expires_at(trigger_at: datetime, valid_days: int, timezone: str) -> datetime:
    """The first instant a coupon is no longer valid (UTC): the end of the local day
    `valid_days` after the trigger's local date, in the customer's zone.

    A message says "valid until 17 March"; a customer redeeming on the afternoon
    of 17 March must not be refused because the trigger was at 10:00. Days are
    calendar days in the zone (a DST change in between does not shift the end
    by an hour), and a midnight that a DST change skips ends the day at the first
    instant that exists (01:00, as in America/Santiago or America/Havana).
    """
    zone = ZoneInfo(timezone)
    named_day = trigger_at.astimezone(zone).date() + timedelta(days=valid_days)
    next_midnight = datetime.combine(named_day + timedelta(days=1), time(0), tzinfo=zone)
    # Through UTC: a wall time in a gap (fold=0) maps to the instant just after the gap.
    return next_midnight.astimezone(UTC)


def _in_quiet_hours(local: time, start: time, end: time) -> bool:
    if start <= end:
        return start <= local < end
    return local >= start or local < end


def outside_quiet_hours(when: datetime, timezone: str, quiet_start: time, quiet_end: time) -> datetime:
    """`when`, or the end of the recipient's local quiet hours if it falls inside them (UTC)."""
    zone = ZoneInfo(timezone)
    local = when.astimezone(zone)
    if not _in_quiet_hours(local.time(), quiet_start, quiet_end):
        return when.astimezone(UTC)
    end_day = local.date()
    if quiet_start > quiet_end and local.time() >= quiet_start:
        end_day += timedelta(days=1)
    # Round-trip through UTC so a wall time in a DST gap lands on a real instant.
    end_local = datetime.combine(end_day, quiet_end, tzinfo=zone)
    return end_local.astimezone(UTC)


RETRY_CAP = timedelta(minutes=30)
"""Rule 12: the longest wait between two attempts of a delivery that keeps failing."""
JITTER = (0.5, 1.5)


def retry_due_at(now: datetime, attempt: int, base_seconds: float, rng: random.Random | None = None,
                 retry_after: float | None = None, cap: timedelta = RETRY_CAP) -> datetime:
    """Exponential backoff with jitter: base × 2^(attempt-1), the delay drawn from ×0.5–1.5
    of it.

    The cap bounds the delay after jitter: the nominal delay stops doubling at cap/1.5, so
    waits at the cap still spread over cap/3–cap instead of all landing on the cap together
    (500 deliveries refused in the same second must not come back in the same second).
    A provider's Retry-After is a floor, also above the cap: it said when to come back,
    and an earlier retry would only be refused again."""
    rng = rng or random.Random()
    low, high = JITTER
    doublings = min(max(attempt - 1, 0), 64)  # far past the cap already; keeps the float finite
    nominal = min(base_seconds * 2**doublings, cap.total_seconds() / high)
    delay = rng.uniform(nominal * low, nominal * high)
    if retry_after is not None:
        delay = max(delay, retry_after)
    return now + timedelta(seconds=delay)


def zone_at_local_hour(hour: int, now: datetime) -> str:
    """A fixed-offset IANA zone (Etc/GMT±N) whose local hour at `now` is closest to
    `hour`: lets tests, the demo and benchmarks put a customer in daytime or at night
    whatever the real clock says."""
    best: tuple[int, str] | None = None
    for offset in range(-12, 15):
        name = f"Etc/GMT{'-' if offset > 0 else '+'}{abs(offset)}" if offset else "Etc/GMT"
        local_hour = now.astimezone(ZoneInfo(name)).hour
        distance = min((local_hour - hour) % 24, (hour - local_hour) % 24)
        if best is None or distance < best[0]:
            best = (distance, name)
    assert best is not None
    return best[1]
