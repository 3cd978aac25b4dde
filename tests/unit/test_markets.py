"""Rule 4: the shipped markets file and the parser that guards edited copies."""

from __future__ import annotations

from datetime import time
from decimal import Decimal
from importlib import resources
from zoneinfo import ZoneInfo

import pytest

from coupons.markets import (
    CountryZonesFileError,
    MarketsFileError,
    country_zones,
    default_timezone,
    load_markets,
    parse_country_zones,
    parse_markets,
)

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


# --- each country's main zone (country_timezones.toml) -------------------------

MAIN_ZONES = [
    ("US", "America/New_York"), ("CA", "America/Toronto"), ("BR", "America/Sao_Paulo"),
    ("MX", "America/Mexico_City"), ("ID", "Asia/Jakarta"), ("AU", "Australia/Sydney"), ("RU", "Europe/Moscow"),
    ("CN", "Asia/Shanghai"), ("KZ", "Asia/Almaty"), ("CD", "Africa/Kinshasa"), ("EC", "America/Guayaquil"),
    ("MN", "Asia/Ulaanbaatar"), ("AR", "America/Argentina/Buenos_Aires"), ("CL", "America/Santiago"),
    ("ES", "Europe/Madrid"), ("PT", "Europe/Lisbon"), ("MY", "Asia/Kuala_Lumpur"), ("UA", "Europe/Kyiv"),
    ("DE", "Europe/Berlin"), ("NZ", "Pacific/Auckland"), ("UZ", "Asia/Tashkent"), ("PS", "Asia/Hebron"),
    ("GL", "America/Nuuk"), ("PG", "Pacific/Port_Moresby"), ("IN", "Asia/Kolkata"), ("JP", "Asia/Tokyo"),
]


def _pinned_tz_table(name: str) -> list[list[str]]:
    """Rows of a table shipped in the pinned `tzdata` package (zone.tab, iso3166.tab)."""
    text = resources.files("tzdata").joinpath("zoneinfo", name).read_text("utf-8")
    return [line.split("\t") for line in text.splitlines() if line and not line.startswith("#")]


def _pinned_zones_by_country() -> dict[str, list[str]]:
    zones: dict[str, list[str]] = {}
    for row in _pinned_tz_table("zone.tab"):
        zones.setdefault(row[0], []).append(row[2])
    return zones


@pytest.mark.parametrize(("country", "zone"), MAIN_ZONES)
def test_a_customer_without_a_zone_lives_in_the_countrys_main_zone(markets, country, zone):
    # not the alphabetically first zone (EC was Pacific/Galapagos, RU Europe/Astrakhan, AU Adelaide)
    assert default_timezone(country) == zone
    assert markets.for_country(country).timezone_for(country) == zone


def test_every_country_has_one_zone_that_exists_in_the_pinned_tzdata_and_is_its_own():
    by_country = _pinned_zones_by_country()
    for country, zone in country_zones().items():
        assert resources.files("tzdata").joinpath("zoneinfo", *zone.split("/")).is_file(), (country, zone)
        ZoneInfo(zone)
        assert zone in by_country[country], f"{country} = {zone!r} is not one of {by_country[country]}"


def test_every_iso_3166_country_with_a_zone_is_listed():
    by_country = _pinned_zones_by_country()
    countries = {row[0] for row in _pinned_tz_table("iso3166.tab")}

    assert set(country_zones()) == countries & set(by_country)
    assert countries - set(by_country) == {"BV", "HM"}  # uninhabited: no zone, no customers


def test_a_country_with_a_single_zone_takes_that_zone():
    single = {country: zones[0] for country, zones in _pinned_zones_by_country().items() if len(zones) == 1}

    assert {country: country_zones()[country] for country in single} == single


def test_an_unknown_country_code_falls_back_to_utc():
    assert default_timezone("XK") == "UTC"
    assert default_timezone("ec") == "America/Guayaquil"


@pytest.mark.parametrize(
    ("text", "names"),
    [
        ('ec = "America/Guayaquil"', "ec: must be an ISO 3166-1 alpha-2 code"),
        ('ECU = "America/Guayaquil"', "ECU: must be an ISO 3166-1 alpha-2 code"),
        ("EC = 5", "EC: must be an IANA zone name"),
        ('EC = "  "', "EC: must be an IANA zone name"),
        ('EC = "America/Guayaquil', "country time zones file:"),
    ],
)
def test_a_broken_country_zones_file_is_rejected_naming_the_country(text, names):
    with pytest.raises(CountryZonesFileError) as info:
        parse_country_zones(text)

    assert str(info.value).startswith(names), str(info.value)


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
