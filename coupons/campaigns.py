"""Scheduled campaigns (SPEC section 5): the file format, its validation, the
schedule, and the offer a campaign gives. Pure: text and `now` in, values out.

A campaign file is TOML, one campaign per file. Loading a folder never stops at a
broken file: every file is either a `Campaign` or a `CampaignFileError` that names
the file and the field, so one typo leaves the other campaigns running.

Schedules are five-field cron expressions in the campaign's zone, evaluated by
`cronsim` (which follows Debian cron across daylight-saving changes: a 02:30 run
on a spring-forward day fires once at 03:00, a 01:30 run on a fall-back day fires
once, at the first 01:30). Runs are keyed by their scheduled instant in UTC.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Collection
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

from .errors import ConfigError
from .experiments import Experiment, ExperimentFieldError, parse_experiment
from .markets import Market
from .model import Item, Offer
from .offers import DEFAULT_REFILL_RATIO, SECOND_ITEM_PERCENT, choose_offer
from .money import round_to_minor_unit

AUDIENCES = ("replenishment_due", "lapsed", "recent_buyers")
Audience = Literal["replenishment_due", "lapsed", "recent_buyers"]
EXPLICIT_OFFER_TYPES = ("percent_off", "second_half_price")
MAX_DAYS = 3650
RUN_WINDOW = timedelta(hours=24)
"""A run may start up to this long after its scheduled time (its deliveries' deadline)."""
_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,99}$")
_FIELDS = ("name", "schedule", "timezone", "markets", "audience", "days", "offer", "enabled", "holdout", "variants")


class CampaignFileError(ConfigError, ValueError):
    """A campaign file that cannot be used; names the file and the field at fault."""

    def __init__(self, file: str, field: str | None, reason: str):
        self.file = file
        self.field = field
        self.reason = reason
        super().__init__(f"{file}: {field}: {reason}" if field else f"{file}: {reason}")


@dataclass(frozen=True)
class ExplicitOffer:
    """An offer table from the file; it replaces rule 3's choice of type, the SKU is
    still the dearest of the customer's relevant items."""

    type: str
    percent: Decimal


@dataclass(frozen=True)
class Campaign:
    name: str
    schedule: str
    timezone: str
    markets: tuple[str, ...]  # empty: every market
    audience: Audience
    days: int
    offer: ExplicitOffer | None  # None: "auto" (rule 3)
    enabled: bool
    file: str
    experiment: Experiment | None = None  # SPEC section 9: holdout and variants

    def trigger_key(self, scheduled_at: datetime) -> str:
        return campaign_trigger_key(self.name, scheduled_at)


def campaign_trigger_key(name: str, scheduled_at: datetime) -> str:
    """A run's coupons' trigger key, `campaign:<name>@<scheduled UTC>`: (trigger, customer)
    is unique, so a run never reaches anyone twice. Names hold no `@`."""
    return f"campaign:{name}@{iso_utc(scheduled_at)}"


def iso_utc(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# ------------------------------------------------------------------ files


def parse_campaign(text: str, file: str, market_names: Collection[str]) -> Campaign:
    """One campaign file's text → a Campaign, or CampaignFileError naming the field."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise CampaignFileError(file, None, f"not valid TOML: {exc}") from None

    def fail(field: str, reason: str) -> CampaignFileError:
        return CampaignFileError(file, field, reason)

    for key in raw:
        if key not in _FIELDS:
            raise fail(key, f"unknown field (expected one of {', '.join(_FIELDS)})")
    for key in ("name", "schedule", "audience", "days"):
        if key not in raw:
            raise fail(key, "required")

    name = raw["name"]
    if not isinstance(name, str) or not _NAME.match(name):
        raise fail("name", "must be 1-100 characters of a-z, 0-9, '.', '_' or '-', starting with a letter or digit")

    timezone = raw.get("timezone", "UTC")
    try:
        if not isinstance(timezone, str):
            raise ValueError
        zone = ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise fail("timezone", f"unknown IANA zone {timezone!r}") from None

    schedule = raw["schedule"]
    if not isinstance(schedule, str) or len(schedule.split()) != 5:
        raise fail("schedule", "must be a five-field cron expression (minute hour day month weekday)")
    try:
        CronSim(schedule, datetime(2026, 1, 1, tzinfo=zone))
    except CronSimError as exc:
        raise fail("schedule", f"{exc} in {schedule!r}") from None

    markets = raw.get("markets", [])
    if not isinstance(markets, list) or not all(isinstance(m, str) for m in markets):
        raise fail("markets", "must be a list of market names")
    for index, market in enumerate(markets):
        if market not in market_names:
            raise fail(f"markets[{index}]", f"unknown market {market!r} (known: {', '.join(sorted(market_names))})")

    audience = raw["audience"]
    if audience not in AUDIENCES:
        raise fail("audience", f"must be one of {', '.join(AUDIENCES)}")

    days = raw["days"]
    if not isinstance(days, int) or isinstance(days, bool) or not 1 <= days <= MAX_DAYS:
        raise fail("days", f"must be a whole number of days from 1 to {MAX_DAYS}")

    enabled = raw.get("enabled", True)
    if not isinstance(enabled, bool):
        raise fail("enabled", "must be true or false")

    offer = _parse_offer(raw.get("offer", "auto"), audience, fail)
    return Campaign(
        name=name, schedule=schedule, timezone=timezone, markets=tuple(dict.fromkeys(markets)),
        audience=audience, days=days, offer=offer, enabled=enabled, file=file,
        experiment=_parse_experiment(raw, name, audience, offer, fail),
    )


def _parse_experiment(raw: dict, name: str, audience: str, offer: ExplicitOffer | None, fail) -> Experiment | None:
    try:
        experiment = parse_experiment(raw, f"campaign:{name}")
    except ExperimentFieldError as exc:
        raise fail(exc.field, exc.reason) from None
    # A depth only changes a percent_off offer: say so rather than run a variant that changes nothing.
    fixed = "the refill" if audience == "replenishment_due" else (
        "half price on a second" if offer is not None and offer.type == "second_half_price" else None)
    for index, variant in enumerate(experiment.variants if experiment else ()):
        if fixed and variant.depth_percent is not None:
            raise fail(f"variants[{index}].depth_percent", f"this campaign offers {fixed}, which has no depth")
    return experiment


def _parse_offer(raw: object, audience: str, fail) -> ExplicitOffer | None:
    if raw == "auto":
        return None
    if not isinstance(raw, dict):
        raise fail("offer", 'must be "auto" or a table like { type = "percent_off", percent = "20" }')
    kind = raw.get("type")
    if audience == "replenishment_due":
        raise fail("offer", 'replenishment_due offers the refill (rule 3): use offer = "auto"')
    if kind not in EXPLICIT_OFFER_TYPES:
        raise fail("offer.type", f"must be one of {', '.join(EXPLICIT_OFFER_TYPES)}")
    for key in raw:
        if key not in ("type", "percent"):
            raise fail(f"offer.{key}", "unknown field")
    if kind == "second_half_price":
        if "percent" in raw:
            raise fail("offer.percent", "second_half_price is always 50% off the second unit")
        return ExplicitOffer(kind, SECOND_ITEM_PERCENT)
    if "percent" not in raw:
        raise fail("offer.percent", "required for percent_off")
    try:
        percent = Decimal(str(raw["percent"]))
    except InvalidOperation:
        raise fail("offer.percent", f"must be a number, got {raw['percent']!r}") from None
    if isinstance(raw["percent"], bool) or not percent.is_finite() or not 0 < percent < 100:
        raise fail("offer.percent", "must be between 0 and 100 (exclusive)")
    return ExplicitOffer(kind, percent)


def load_campaigns(directory: str | Path, market_names: Collection[str] | None = None,
                   ) -> tuple[list[Campaign], list[CampaignFileError]]:
    """Every `*.toml` in `directory`, sorted by file name: the good ones, and one error per
    broken file. Two files with one name are both errors (neither runs: which one the seller
    meant is a guess). `market_names` defaults to the shipped markets file's."""
    if market_names is None:
        from .markets import load_markets

        market_names = load_markets().by_name
    folder = Path(directory)
    if not folder.is_dir():
        return [], [CampaignFileError(str(folder), None, "campaigns folder not found")]
    campaigns: list[Campaign] = []
    errors: list[CampaignFileError] = []
    for path in sorted(folder.glob("*.toml")):
        try:
            text = path.read_text("utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            errors.append(CampaignFileError(path.name, None, f"unreadable: {exc}"))
            continue
        try:
            campaigns.append(parse_campaign(text, path.name, market_names))
        except CampaignFileError as exc:
            errors.append(exc)
    by_name: dict[str, list[Campaign]] = {}
    for campaign in campaigns:
        by_name.setdefault(campaign.name, []).append(campaign)
    kept = []
    for campaign in campaigns:
        twins = by_name[campaign.name]
        if len(twins) == 1:
            kept.append(campaign)
        else:
            others = ", ".join(t.file for t in twins if t is not campaign)
            errors.append(CampaignFileError(campaign.file, "name", f"{campaign.name!r} is also the name in {others}"))
    return kept, sorted(errors, key=lambda e: e.file)


# ------------------------------------------------------------------ schedule


def _zone(campaign: Campaign) -> ZoneInfo:
    return ZoneInfo(campaign.timezone)


def next_run_after(campaign: Campaign, now: datetime) -> datetime:
    """The first scheduled instant strictly after `now` (UTC).

    Started inside a repeated (fall-back) hour, cronsim can yield the hour's first pass,
    already behind us; the library's own next occurrence is then the answer."""
    occurrences = CronSim(campaign.schedule, now.astimezone(_zone(campaign)))
    while (candidate := next(occurrences).astimezone(UTC)) <= now:
        pass
    return candidate


def latest_run_at(campaign: Campaign, now: datetime) -> datetime:
    """The last scheduled instant at or before `now` (UTC).

    cronsim's reverse walk can land one occurrence early while the wall clock repeats
    an hour (fall-back); stepping forward with the library from there corrects it."""
    start = (now.astimezone(UTC).replace(second=0, microsecond=0) + timedelta(minutes=1)).astimezone(_zone(campaign))
    latest = next(CronSim(campaign.schedule, start, reverse=True)).astimezone(UTC)
    while (following := next_run_after(campaign, latest)) <= now:
        latest = following
    return latest


def within_run_window(scheduled_at: datetime, now: datetime) -> bool:
    """A run still worth starting: its deliveries' 24 h deadline has not passed."""
    return now < scheduled_at + RUN_WINDOW


# ------------------------------------------------------------------ offers


def campaign_offer(campaign: Campaign, items: list[Item], currency: str, market: Market,
                   refill_ratio: Decimal = DEFAULT_REFILL_RATIO) -> Offer:
    """Rule 3 over the customer's relevant items, unless the file names an offer: then
    that offer on the dearest of those items."""
    if campaign.offer is None:
        return choose_offer(items, currency, market, refill_ratio)
    dearest = min(items, key=lambda item: (-item.unit_price, item.sku))
    return Offer(type=campaign.offer.type, sku=dearest.sku, product_name=dearest.name, currency=currency,  # type: ignore[arg-type]
                 percent=campaign.offer.percent, regular_price=round_to_minor_unit(dearest.unit_price, currency))
