"""Markets: the per-region rules (depth, framing, channels, quiet hours, language).

They live in an editable TOML file so a seller can retune a market without a
release; this module only parses and validates it.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from datetime import time
from decimal import Decimal, InvalidOperation
from functools import cache, lru_cache
from importlib import resources
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .errors import ConfigError
from .experiments import Experiment, ExperimentFieldError, parse_experiment
from .model import CHANNELS, Framing
from .sms_hours import SmsHours, SmsHoursError, parse_sms_hours

SHIPPED_MARKETS_FILE = "markets.toml"
SHIPPED_COUNTRY_ZONES_FILE = "country_timezones.toml"


class MarketsFileError(ConfigError, ValueError):
    """The markets file is unusable; the message names the market and key."""


class CountryZonesFileError(ConfigError, ValueError):
    """The country time zones file is unusable; the message names the country."""


@dataclass(frozen=True)
class Market:
    name: str
    depth_percent: Decimal
    framing: Framing
    valid_days: int
    channels: tuple[str, ...]
    quiet_start: time
    quiet_end: time
    language: str
    country_timezones: dict[str, str] = field(default_factory=dict)
    country_languages: dict[str, str] = field(default_factory=dict)
    is_default: bool = False
    sms_hours: dict[str, SmsHours] = field(default_factory=dict)
    """Country → when marketing texts may go out there (rule 17); none for most countries."""
    experiment: Experiment | None = None  # SPEC section 9: holdout and variants

    def language_for(self, country: str) -> str:
        return self.country_languages.get(country, self.language)

    def timezone_for(self, country: str) -> str:
        return self.country_timezones.get(country) or default_timezone(country)


@dataclass(frozen=True)
class Markets:
    by_name: dict[str, Market]

    def for_country(self, country: str) -> Market:
        for market in self.by_name.values():
            if country in market.country_timezones:
                return market
        return self.default

    @property
    def default(self) -> Market:
        return next(m for m in self.by_name.values() if m.is_default)


def parse_country_zones(text: str) -> dict[str, str]:
    """Country code → main zone, from the text of a country time zones file."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise CountryZonesFileError(f"country time zones file: {exc}") from None
    for country, zone in raw.items():
        if len(country) != 2 or not country.isascii() or not country.isalpha() or not country.isupper():
            raise CountryZonesFileError(f"{country}: must be an ISO 3166-1 alpha-2 code")
        if not isinstance(zone, str) or not zone.strip():
            raise CountryZonesFileError(f"{country}: must be an IANA zone name like \"Europe/Berlin\"")
    return raw


@cache
def country_zones() -> dict[str, str]:
    """The shipped table of each country's main zone, read once (`country_timezones.toml`)."""
    return parse_country_zones(resources.files("coupons").joinpath(SHIPPED_COUNTRY_ZONES_FILE).read_text("utf-8"))


SHIPPED_REGION_ZONES_FILE = "region_timezones.toml"


@cache
def region_zones() -> dict[str, tuple[str, ...]]:
    """The shipped table of each US state's zones, main zone first (`region_timezones.toml`), read once."""
    raw = tomllib.loads(resources.files("coupons").joinpath(SHIPPED_REGION_ZONES_FILE).read_text("utf-8"))
    return {region: (zones,) if isinstance(zones, str) else tuple(zones) for region, zones in raw.items()}


def region_timezones(region: str | None) -> tuple[str, ...]:
    """Every zone of an ISO 3166-2 region, main zone first (`US-FL` → America/New_York,
    America/Chicago); empty when the table does not name the region."""
    return region_zones().get(region.strip().upper(), ()) if region else ()


def default_timezone(country: str) -> str:
    """A country's main zone when neither the customer nor the markets file names one;
    UTC for a code the table lacks."""
    return country_zones().get(country.upper(), "UTC")


def _parse_time(value: object, where: str) -> time:
    try:
        hours, minutes = str(value).split(":")
        return time(int(hours), int(minutes))
    except (ValueError, TypeError):
        raise MarketsFileError(f"{where}: must be HH:MM, got {value!r}") from None


def _parse_market(name: str, raw: dict) -> Market:
    def need(key: str) -> object:
        if key not in raw:
            raise MarketsFileError(f"{name}.{key}: required")
        return raw[key]

    try:
        depth = Decimal(str(need("depth_percent")))
    except InvalidOperation:
        raise MarketsFileError(f"{name}.depth_percent: must be a number") from None
    if not 0 < depth < 100:
        raise MarketsFileError(f"{name}.depth_percent: must be between 0 and 100")
    framing = need("framing")
    if framing not in ("urgency", "loyalty"):
        raise MarketsFileError(f"{name}.framing: must be 'urgency' or 'loyalty'")
    valid_days = need("valid_days")
    if not isinstance(valid_days, int) or not 1 <= valid_days <= 3660:
        # The ceiling keeps trigger + valid days inside the calendar (issue 7: no overflow).
        raise MarketsFileError(f"{name}.valid_days: must be an integer from 1 to 3660 (ten years)")
    listed = need("channels")
    if not isinstance(listed, list) or not all(isinstance(channel, str) for channel in listed):
        raise MarketsFileError(f"{name}.channels: must be a list of channel names")
    channels: tuple[str, ...] = tuple(listed)
    for channel in channels:
        if channel not in CHANNELS:
            raise MarketsFileError(f"{name}.channels: unknown channel {channel!r}")
    quiet = need("quiet_hours")
    if not isinstance(quiet, list) or len(quiet) != 2:
        raise MarketsFileError(f"{name}.quiet_hours: must be [start, end]")
    timezones: dict[str, str] = {}
    languages: dict[str, str] = {}
    for country, spec in (raw.get("countries") or {}).items():
        if len(country) != 2 or not country.isupper():
            raise MarketsFileError(f"{name}.countries.{country}: must be ISO 3166-1 alpha-2")
        zone = spec.get("timezone") or default_timezone(country)
        try:
            ZoneInfo(zone)
        except (ZoneInfoNotFoundError, ValueError):
            raise MarketsFileError(f"{name}.countries.{country}.timezone: unknown zone {zone!r}") from None
        timezones[country] = zone
        if "language" in spec:
            languages[country] = spec["language"]
    quiet_start = _parse_time(quiet[0], f"{name}.quiet_hours[0]")
    quiet_end = _parse_time(quiet[1], f"{name}.quiet_hours[1]")
    try:
        sms_hours = parse_sms_hours(name, raw.get("sms_hours"), quiet_start, quiet_end)
    except SmsHoursError as exc:
        raise MarketsFileError(str(exc)) from None
    try:
        experiment = parse_experiment(raw, f"market:{name}")
    except ExperimentFieldError as exc:
        raise MarketsFileError(f"{name}.{exc.field}: {exc.reason}") from None
    return Market(
        name=name,
        depth_percent=depth,
        framing=framing,
        valid_days=valid_days,
        channels=channels,
        quiet_start=quiet_start,
        quiet_end=quiet_end,
        language=str(raw.get("language", "en")),
        country_timezones=timezones,
        country_languages=languages,
        is_default=bool(raw.get("default", False)),
        sms_hours=sms_hours,
        experiment=experiment,
    )


def parse_markets(text: str) -> Markets:
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise MarketsFileError(f"markets file: {exc}") from None
    for name, spec in raw.items():
        if not isinstance(spec, dict):
            raise MarketsFileError(f"{name}: must be a table of market settings")
        for country, entry in (spec.get("countries") or {}).items():
            if not isinstance(entry, dict):
                raise MarketsFileError(f"{name}.countries.{country}: must be a table like {{ timezone = \"...\" }}")
    markets = {name: _parse_market(name, spec) for name, spec in raw.items()}
    defaults = [m.name for m in markets.values() if m.is_default]
    if len(defaults) != 1:
        raise MarketsFileError(f"markets file: exactly one market needs default = true, found {defaults}")
    seen: dict[str, str] = {}
    for market in markets.values():
        for country in market.country_timezones:
            if country in seen:
                raise MarketsFileError(f"{market.name}.countries.{country}: already in {seen[country]}")
            seen[country] = market.name
    parsed = Markets(markets)
    for market in markets.values():
        for country in market.sms_hours:
            if parsed.for_country(country) is not market:
                raise MarketsFileError(f"{market.name}.sms_hours.{country}: {country} is in market "
                                       f"{parsed.for_country(country).name}; its SMS hours belong there")
    return parsed


@lru_cache(maxsize=8)
def load_markets(path: str | None = None) -> Markets:
    """The markets from `path`, or the shipped defaults when None."""
    if path is None:
        text = resources.files("coupons").joinpath(SHIPPED_MARKETS_FILE).read_text("utf-8")
    else:
        text = Path(path).read_text("utf-8")
    return parse_markets(text)
