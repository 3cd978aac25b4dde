"""Rule 4: the shipped markets file and the parser that guards edited copies."""

from __future__ import annotations

from datetime import time
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from coupons.markets import MarketsFileError, load_markets, parse_markets

SPEC_TABLE = {
    "north_america": (["US", "CA"], "10", "urgency", 7, ("email", "sms"), "21:00", "08:00"),
    "europe": (["GB", "IE", "DE", "FR", "ES", "IT", "NL", "BE", "AT", "PT", "PL", "SE"], "15", "urgency", 7,
               ("email", "sms"), "21:00", "08:00"),
    "southeast_asia": (["ID", "TH", "VN", "PH", "MY", "SG"], "30", "loyalty", 14,
                       ("whatsapp", "line", "sms", "email"), "22:00", "08:00"),
    "latin_america": (["BR", "MX", "CO", "CL", "AR", "PE"], "20", "urgency", 7, ("whatsapp", "sms", "email"),
                      "22:00", "08:00"),
    "middle_east": (["SA", "AE", "QA", "KW", "BH", "OM"], "20", "loyalty", 14, ("whatsapp", "sms", "email"),
                    "22:00", "09:00"),
    "rest_of_world": ([], "15", "urgency", 7, ("email", "sms", "whatsapp", "telegram"), "21:00", "08:00"),
}


def hhmm(text: str) -> time:
    hours, minutes = text.split(":")
    return time(int(hours), int(minutes))


@pytest.fixture(scope="module")
def markets():
    return load_markets()


def test_shipped_file_has_exactly_the_spec_markets(markets):
    assert set(markets.by_name) == set(SPEC_TABLE)
    assert markets.default.name == "rest_of_world"


@pytest.mark.parametrize("name", list(SPEC_TABLE))
def test_shipped_market_matches_the_spec_table(markets, name):
    countries, depth, framing, days, channels, quiet_start, quiet_end = SPEC_TABLE[name]
    market = markets.by_name[name]

    assert sorted(market.country_timezones) == sorted(countries)
    assert market.depth_percent == Decimal(depth)
    assert market.framing == framing
    assert market.valid_days == days
    assert market.channels == channels
    assert (market.quiet_start, market.quiet_end) == (hhmm(quiet_start), hhmm(quiet_end))


@pytest.mark.parametrize(
    ("country", "market"),
    [(country, name) for name, row in SPEC_TABLE.items() for country in row[0]],
)
def test_every_listed_country_maps_to_its_market(markets, country, market):
    assert markets.for_country(country).name == market


@pytest.mark.parametrize("country", ["JP", "AU", "NG", "IN", "ZA", "NZ", "CH", "KR"])
def test_unlisted_country_goes_to_rest_of_world(markets, country):
    assert markets.for_country(country).name == "rest_of_world"


@pytest.mark.parametrize(
    ("country", "zone"),
    [("US", "America/New_York"), ("ID", "Asia/Jakarta"), ("BR", "America/Sao_Paulo"), ("DE", "Europe/Berlin"),
     ("SA", "Asia/Riyadh"), ("JP", "Asia/Tokyo")],
)
def test_country_main_time_zone(markets, country, zone):
    assert markets.for_country(country).timezone_for(country) == zone


def test_every_shipped_zone_exists(markets):
    for market in markets.by_name.values():
        for zone in market.country_timezones.values():
            ZoneInfo(zone)


@pytest.mark.parametrize(
    ("country", "language"),
    [("ID", "id"), ("TH", "th"), ("VN", "vi"), ("BR", "pt"), ("MX", "es"), ("SA", "ar"), ("US", "en"),
     ("PH", "en"), ("JP", "en")],
)
def test_country_language(markets, country, language):
    assert markets.for_country(country).language_for(country) == language


# --- parse_markets on edited files --------------------------------------------

GOOD = """
[home]
depth_percent = "10"
framing = "urgency"
valid_days = 7
channels = ["email", "sms"]
quiet_hours = ["21:00", "08:00"]
countries.US = { timezone = "America/Chicago" }

[world]
default = true
depth_percent = "12.5"
framing = "loyalty"
valid_days = 3
channels = ["telegram"]
quiet_hours = ["23:30", "06:15"]
"""


def test_an_edited_file_is_used_as_written():
    markets = parse_markets(GOOD)

    assert markets.for_country("US").timezone_for("US") == "America/Chicago"
    world = markets.for_country("DE")
    assert world.name == "world"
    assert world.depth_percent == Decimal("12.5")
    assert (world.quiet_start, world.quiet_end) == (time(23, 30), time(6, 15))
    assert world.channels == ("telegram",)


@pytest.mark.parametrize(
    ("old", "new", "names"),
    [
        ('depth_percent = "10"\n', "", "home.depth_percent"),
        ('depth_percent = "10"', 'depth_percent = "ten"', "home.depth_percent"),
        ('depth_percent = "10"', 'depth_percent = "0"', "home.depth_percent"),
        ('depth_percent = "10"', 'depth_percent = "100"', "home.depth_percent"),
        ('framing = "urgency"', 'framing = "x"', "home.framing"),
        ('valid_days = 7', 'valid_days = 0', "home.valid_days"),
        ('valid_days = 7', 'valid_days = "7"', "home.valid_days"),
        ('valid_days = 7', 'valid_days = 99999999', "home.valid_days"),
        ('channels = ["email", "sms"]', 'channels = ["email", "fax"]', "home.channels"),
        ('quiet_hours = ["21:00", "08:00"]', 'quiet_hours = ["25:00", "08:00"]', "home.quiet_hours[0]"),
        ('quiet_hours = ["21:00", "08:00"]', 'quiet_hours = ["21:00", "8"]', "home.quiet_hours[1]"),
        ('quiet_hours = ["21:00", "08:00"]', 'quiet_hours = ["21:00"]', "home.quiet_hours"),
        ('quiet_hours = ["21:00", "08:00"]', 'quiet_hours = "21:00-08:00"', "home.quiet_hours"),
        ('countries.US = { timezone = "America/Chicago" }', 'countries.US = { timezone = "Mars/Base" }',
         "home.countries.US.timezone"),
        ('countries.US = { timezone = "America/Chicago" }', "countries.usa = {}", "home.countries.usa"),
    ],
)
def test_bad_file_is_rejected_naming_market_and_key(old, new, names):
    # Given a valid file with one mistake
    assert old in GOOD
    text = GOOD.replace(old, new, 1)

    # When / Then
    with pytest.raises(MarketsFileError) as info:
        parse_markets(text)
    assert str(info.value).startswith(names + ":"), str(info.value)


def test_country_in_two_markets_is_rejected():
    text = GOOD + '\ncountries.US = {}\n'  # appended to [world]

    with pytest.raises(MarketsFileError) as info:
        parse_markets(text)

    assert "US" in str(info.value)
    assert "home" in str(info.value) and "world" in str(info.value)


def test_file_without_a_default_market_is_rejected():
    with pytest.raises(MarketsFileError) as info:
        parse_markets(GOOD.replace("default = true", ""))

    assert "default" in str(info.value)


def test_file_with_two_default_markets_is_rejected():
    with pytest.raises(MarketsFileError) as info:
        parse_markets(GOOD.replace('[home]\n', '[home]\ndefault = true\n'))

    assert "default" in str(info.value)


def test_file_that_is_not_toml_is_rejected():
    with pytest.raises(MarketsFileError):
        parse_markets("[home\ndepth_percent = ")


def test_load_markets_reads_a_file_path(tmp_path):
    path = tmp_path / "markets.toml"
    path.write_text(GOOD, encoding="utf-8")

    markets = load_markets(str(path))

    assert set(markets.by_name) == {"home", "world"}
