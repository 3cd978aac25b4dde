"""Campaign files, schedules and offers (SPEC section 5), with a fixed `now`."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from coupons.campaigns import (
    Campaign,
    CampaignFileError,
    campaign_offer,
    latest_run_at,
    load_campaigns,
    next_run_after,
    parse_campaign,
    within_run_window,
)
from coupons.markets import load_markets
from coupons.model import Item

MARKETS = load_markets()
GOOD = """
name = "sea-refill-reminder"
schedule = "0 10 * * *"
timezone = "Asia/Jakarta"
markets = ["southeast_asia"]
audience = "replenishment_due"
days = 30
offer = "auto"
enabled = true
"""


def campaign(**overrides) -> Campaign:
    lines = {"name": '"c"', "schedule": '"0 10 * * *"', "timezone": '"UTC"', "audience": '"lapsed"', "days": "60"}
    lines.update(overrides)
    text = "\n".join(f"{k} = {v}" for k, v in lines.items() if v is not None)
    return parse_campaign(text, "c.toml", MARKETS.by_name)


def error_of(**overrides) -> CampaignFileError:
    with pytest.raises(CampaignFileError) as caught:
        campaign(**overrides)
    return caught.value


# ------------------------------------------------------------------ files


def test_the_spec_example_parses_with_every_field():
    parsed = parse_campaign(GOOD, "sea.toml", MARKETS.by_name)
    assert (parsed.name, parsed.timezone, parsed.markets, parsed.audience, parsed.days) == (
        "sea-refill-reminder", "Asia/Jakarta", ("southeast_asia",), "replenishment_due", 30)
    assert parsed.offer is None and parsed.enabled and parsed.file == "sea.toml"


def test_defaults_are_utc_every_market_auto_offer_and_enabled():
    parsed = campaign()
    assert (parsed.timezone, parsed.markets, parsed.offer, parsed.enabled) == ("UTC", (), None, True)


@pytest.mark.parametrize(("overrides", "field"), [
    ({"schedule": '"61 10 * * *"'}, "schedule"),
    ({"schedule": '"0 10 * *"'}, "schedule"),
    ({"timezone": '"Mars/Olympus"'}, "timezone"),
    ({"markets": '["southeast_asia", "atlantis"]'}, "markets[1]"),
    ({"audience": '"everyone"'}, "audience"),
    ({"days": "0"}, "days"),
    ({"days": '"30"'}, "days"),
    ({"days": None}, "days"),
    ({"name": '"Has Spaces"'}, "name"),
    ({"enabled": '"yes"'}, "enabled"),
    ({"offer": '"generous"'}, "offer"),
    ({"offer": '{ type = "free_lunch" }'}, "offer.type"),
    ({"offer": '{ type = "percent_off" }'}, "offer.percent"),
    ({"offer": '{ type = "percent_off", percent = "120" }'}, "offer.percent"),
    ({"offer": '{ type = "percent_off", percent = "lots" }'}, "offer.percent"),
    ({"audiance": '"lapsed"'}, "audiance"),
])
def test_a_broken_field_is_named_with_its_file(overrides, field):
    error = error_of(**overrides)
    assert error.file == "c.toml" and error.field == field
    assert str(error).startswith(f"c.toml: {field}: ")


def test_a_refill_reminder_cannot_override_its_refill_offer():
    error = error_of(audience='"replenishment_due"', offer='{ type = "percent_off", percent = "20" }')
    assert error.field == "offer" and "refill" in error.reason


def test_invalid_toml_names_the_file():
    with pytest.raises(CampaignFileError) as caught:
        parse_campaign("name = ", "broken.toml", MARKETS.by_name)
    assert str(caught.value).startswith("broken.toml: not valid TOML")


def test_a_folder_keeps_good_files_beside_broken_ones_and_names_both_duplicates(tmp_path):
    (tmp_path / "a-good.toml").write_text(GOOD)
    (tmp_path / "b-broken.toml").write_text(GOOD.replace("days = 30", "days = -1"))
    (tmp_path / "c-other.toml").write_text(GOOD.replace("sea-refill-reminder", "other"))
    (tmp_path / "d-twin.toml").write_text(GOOD.replace("sea-refill-reminder", "other"))
    (tmp_path / "notes.txt").write_text("not a campaign")
    campaigns, errors = load_campaigns(tmp_path, MARKETS.by_name)
    assert [c.name for c in campaigns] == ["sea-refill-reminder"]
    assert [(e.file, e.field) for e in errors] == [("b-broken.toml", "days"), ("c-other.toml", "name"),
                                                   ("d-twin.toml", "name")]
    assert "d-twin.toml" in str(errors[1]) and "c-other.toml" in str(errors[2])


def test_the_shipped_examples_are_valid_and_disabled():
    from importlib import resources

    folder = resources.files("schedules").joinpath("campaigns")
    campaigns, errors = load_campaigns(str(folder), MARKETS.by_name)
    assert errors == []
    assert {c.audience: c.days for c in campaigns} == {"replenishment_due": 30, "lapsed": 60, "recent_buyers": 7}
    assert not any(c.enabled for c in campaigns)


# ------------------------------------------------------------------ schedules

NEW_YORK = ZoneInfo("America/New_York")


def test_next_run_is_in_the_campaigns_zone():
    jakarta = campaign(timezone='"Asia/Jakarta"')
    now = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)  # 19:00 in Jakarta: today's 10:00 has passed
    assert next_run_after(jakarta, now) == datetime(2026, 3, 11, 3, 0, tzinfo=UTC)
    assert latest_run_at(jakarta, now) == datetime(2026, 3, 10, 3, 0, tzinfo=UTC)


def test_latest_run_includes_the_scheduled_minute_itself():
    daily = campaign()
    assert latest_run_at(daily, datetime(2026, 3, 10, 10, 0, tzinfo=UTC)) == datetime(2026, 3, 10, 10, 0, tzinfo=UTC)
    assert latest_run_at(daily, datetime(2026, 3, 10, 9, 59, 59, tzinfo=UTC)) == datetime(2026, 3, 9, 10, 0, tzinfo=UTC)


def _runs_between(c: Campaign, start: datetime, end: datetime, step=timedelta(minutes=5)) -> set[datetime]:
    """Every distinct occurrence a once-a-minute-ish runner would see between start and end."""
    seen, now = set(), start
    while now <= end:
        latest = latest_run_at(c, now)
        if latest > start - timedelta(hours=1):
            seen.add(latest)
        now += step
    return seen


def test_a_0230_run_on_the_spring_forward_day_happens_once_at_0300():
    # 2026-03-08: New York clocks jump from 02:00 to 03:00; 02:30 does not exist.
    c = campaign(schedule='"30 2 * * *"', timezone='"America/New_York"')
    start = datetime(2026, 3, 8, 0, 0, tzinfo=NEW_YORK).astimezone(UTC)
    runs = _runs_between(c, start, start + timedelta(hours=12))
    assert runs == {datetime(2026, 3, 8, 3, 0, tzinfo=NEW_YORK).astimezone(UTC)}
    assert next_run_after(c, start) == datetime(2026, 3, 8, 7, 0, tzinfo=UTC)


def test_a_0130_run_on_the_fall_back_day_happens_once():
    # 2026-11-01: New York clocks go from 02:00 back to 01:00; 01:30 happens twice on the wall.
    c = campaign(schedule='"30 1 * * *"', timezone='"America/New_York"')
    start = datetime(2026, 11, 1, 0, 0, tzinfo=NEW_YORK).astimezone(UTC)
    runs = _runs_between(c, start, start + timedelta(hours=12))
    assert runs == {datetime(2026, 11, 1, 5, 30, tzinfo=UTC)}  # 01:30 EDT, the first one
    during_repeat = datetime(2026, 11, 1, 6, 5, tzinfo=UTC)  # 01:05 EST, the hour again
    assert latest_run_at(c, during_repeat) == datetime(2026, 11, 1, 5, 30, tzinfo=UTC)
    assert next_run_after(c, during_repeat) == datetime(2026, 11, 2, 6, 30, tzinfo=UTC)  # next day, 01:30 EST


def test_a_run_may_start_within_24_hours_of_its_schedule():
    scheduled = datetime(2026, 3, 10, 10, 0, tzinfo=UTC)
    assert within_run_window(scheduled, scheduled + timedelta(hours=23, minutes=59))
    assert not within_run_window(scheduled, scheduled + timedelta(hours=24))


# ------------------------------------------------------------------ offers

NA = MARKETS.by_name["north_america"]


def test_auto_offer_is_rule_3_and_an_explicit_table_overrides_it_on_the_dearest_item():
    items = [Item("mug", "Mug", Decimal("12.00"), 1), Item("shampoo", "Shampoo", Decimal("20.00"), 1, "shampoo-refill")]
    auto = campaign_offer(campaign(), items, "USD", NA)
    assert (auto.type, auto.sku, auto.price) == ("refill", "shampoo-refill", Decimal("14.00"))
    explicit = campaign_offer(campaign(offer='{ type = "percent_off", percent = "20" }'), items, "USD", NA)
    assert (explicit.type, explicit.sku, explicit.percent) == ("percent_off", "shampoo", Decimal("20"))
