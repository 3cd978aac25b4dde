"""Sample coupons for `encore preview` (SPEC section 9): each market x language x offer type
with realistic data in the market's currency, so a seller reads the localized copy as a
customer of that market would, before the stream.

A sample's currency is its country's current tender currency from CLDR, through Babel's
`babel.numbers.get_territory_currencies` (babel.readthedocs.io, "Numbers and Currencies":
the currencies in use in a territory, by default those valid today and legal tender).

Pure: markets and `now` in, `Sample`s out. The code is a fresh random one that is never
stored nor sent to a shop, so no checkout knows it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal

from babel.numbers import get_territory_currencies

from .codes import new_code
from .errors import EncoreError
from .markets import Market, Markets
from .messages import LANGUAGES, resolve_language
from .model import Item, MessageContext, Offer
from .money import known_currencies, minor_unit_digits
from .offers import choose_offer
from .timing import coupon_expires_at

OFFER_TYPES = ("percent_off", "second_half_price", "refill")
TEST_MARK = "[TEST]"
"""What starts a test message's subject (email) or its first line (a text)."""

SAMPLE_NAMES = {"en": "Alex", "es": "Lucía", "pt": "Ana", "id": "Putri", "th": "สมใจ", "vi": "Linh",
                "ar": "ليلى", "fr": "Camille", "de": "Lena"}
"""A first name a customer of each language may have: the message names the customer."""

USD_PER_UNIT = {
    "USD": "1", "CAD": "1.35", "EUR": "0.92", "GBP": "0.79", "SEK": "10.5", "PLN": "4", "IDR": "16000",
    "THB": "35", "VND": "25000", "PHP": "56", "MYR": "4.5", "SGD": "1.35", "BRL": "5.2", "MXN": "18",
    "COP": "4000", "CLP": "950", "ARS": "1000", "PEN": "3.7", "SAR": "3.75", "AED": "3.67", "QAR": "3.64",
    "KWD": "0.31", "BHD": "0.38", "OMR": "0.385", "JPY": "150", "AUD": "1.5", "INR": "83",
}
"""Rough units of each currency per US dollar, only to make sample prices look like that
market's (a USD 24 serum is IDR 384000, not IDR 24). Others fall back to 1."""

SAMPLE_PRICE_USD = Decimal("24")
SAMPLE_COUNTRY = "AU"
"""A country for the default market, which lists none of its own."""


class PreviewSelectionError(EncoreError, ValueError):
    """A --market, --locale, --offer or --channel that selects nothing; names the option."""


@dataclass(frozen=True)
class Sample:
    market: str
    country: str
    language: str
    locale: str
    offer: Offer
    context: MessageContext


def sample_country(market: Market) -> str:
    return next(iter(market.country_timezones), SAMPLE_COUNTRY)


def currency_for(country: str) -> str:
    """The country's currency today (CLDR, through Babel), USD where none is known to Encore."""
    for currency in get_territory_currencies(country):
        if currency in known_currencies():
            return currency
    return "USD"


def sample_price(currency: str) -> Decimal:
    """A plausible price in `currency`: two significant digits, in the currency's minor unit."""
    amount = SAMPLE_PRICE_USD * Decimal(USD_PER_UNIT.get(currency, "1"))
    digits = amount.adjusted() - 1  # keep two significant digits
    rounded = amount.scaleb(-digits).quantize(Decimal(1), ROUND_HALF_UP).scaleb(digits)
    return rounded.quantize(Decimal(1).scaleb(-minor_unit_digits(currency)))


def sample_offer(offer_type: str, market: Market, currency: str, refill_ratio: Decimal) -> Offer:
    """The offer rule 3 makes of a typical order for that type."""
    price = sample_price(currency)
    if offer_type == "refill":
        items = [Item("serum-30ml", "Rose Face Serum", price, 1, refill_sku="serum-30ml-refill")]
    elif offer_type == "second_half_price":
        items = [Item("lip-tint", "Velvet Lip Tint", price, 2)]
    else:
        items = [Item("cleanser", "Gentle Foam Cleanser", price, 1)]
    return choose_offer(items, currency, market, refill_ratio)


def _languages(market: Market, locale: str | None) -> list[tuple[str, str, str]]:
    """(country, language, babel locale) per language the market speaks, or the one asked for."""
    seen: dict[str, tuple[str, str, str]] = {}  # one sample per language the customers are written in
    for country in market.country_timezones or {SAMPLE_COUNTRY: ""}:
        language, babel_locale = resolve_language(None, f"{market.language_for(country)}-{country}")
        seen.setdefault(language, (country, language, babel_locale))
    if locale is None:
        return list(seen.values())
    language, babel_locale = resolve_language(locale, market.language)
    region = babel_locale.partition("_")[2]
    if region in market.country_timezones:  # pt-BR in latin_america: a Brazilian customer, in BRL
        return [(region, language, babel_locale)]
    if language in seen and "-" not in locale and "_" not in locale:  # "es": the market's Spanish speakers
        return [seen[language]]
    return [(sample_country(market), language, babel_locale)]


def samples(markets: Markets, now: datetime, *, market: str | None = None, locale: str | None = None,
            offer_type: str | None = None, refill_ratio: Decimal = Decimal("0.70"),
            shop_name: str = "Encore") -> list[Sample]:
    """The selected markets x languages x offer types, each a coupon as a customer would get it today."""
    if market is not None and market not in markets.by_name:
        raise PreviewSelectionError(f"--market: unknown market {market!r} (one of {', '.join(markets.by_name)})")
    if offer_type is not None and offer_type not in OFFER_TYPES:
        raise PreviewSelectionError(f"--offer: must be one of {', '.join(OFFER_TYPES)}")
    if locale is not None and locale.split("-")[0].split("_")[0].lower() not in LANGUAGES:
        raise PreviewSelectionError(f"--locale: no messages in {locale!r} (languages: {', '.join(LANGUAGES)})")
    chosen = [markets.by_name[market]] if market else list(markets.by_name.values())
    found = []
    for each in chosen:
        for country, language, babel_locale in _languages(each, locale):
            currency = currency_for(country)
            zone = each.timezone_for(country)
            for kind in [offer_type] if offer_type else OFFER_TYPES:
                offer = sample_offer(kind, each, currency, refill_ratio)
                context = MessageContext(
                    language=language, locale=babel_locale, customer_name=SAMPLE_NAMES.get(language, "Alex"),
                    offer=offer, code=new_code(), expires_at=coupon_expires_at(now, each.valid_days, zone),
                    timezone=zone, framing=each.framing, shop_name=shop_name)
                found.append(Sample(each.name, country, language, babel_locale, offer, context))
    return found
