"""Amounts in major units, rounded by one rule for computing and for showing.

The facts behind the rule are the project's own data, `coupons/currencies.toml`
(made from ISO 4217 and CLDR, then owned here), so a library release cannot change
what a coupon costs. The rule: an amount is exact to the currency's `digits` (USD 2,
SEK 2, JPY 0, VND 0, KWD 3, IDR 0: whole rupiah is a product decision), rounded
half-up. The same digits are used to compute a refill or a discounted price and to
show it, so SEK 99.90 × 0.7 is 69.93 everywhere (mixing in the *cash* digits, SEK 0,
once made it 70 in one place and 69.93 in another).

Writing an amount: a currency whose coins stop at the major unit (`cash_digits` 0
while `digits` is 2: SEK, CZK, NOK, …) drops an all-zero fraction, as shoppers see
it (SEK 70.00 → "70"); any other fraction is kept ("69.93").
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from functools import cache
from importlib import resources

from .errors import ConfigError, RenderError

SHIPPED_CURRENCIES_FILE = "currencies.toml"
MAX_DIGITS = 4
"""No currency has more decimals (ISO 4217's largest minor unit is 4, CLF)."""


class CurrencyTableError(ConfigError, ValueError):
    """The currencies file is unusable; the message names the currency and field."""


class UnknownCurrency(RenderError):
    """A currency the table does not list: no amount in it can be rounded or shown."""


@dataclass(frozen=True)
class CurrencyDigits:
    digits: int
    """Decimals an amount is exact to, for computing, storing and showing."""
    cash_digits: int
    """Decimals a whole amount is written with (coins stopping at the major unit); ≤ digits."""


def _digits_field(code: str, row: dict, key: str, ceiling: int) -> int:
    if key not in row:
        raise CurrencyTableError(f"{code}.{key}: required")
    value = row[key]
    if type(value) is not int or not 0 <= value <= ceiling:
        raise CurrencyTableError(f"{code}.{key}: must be an integer from 0 to {ceiling}, got {value!r}")
    return value


def parse_currencies(text: str) -> dict[str, CurrencyDigits]:
    """The currency table from the text of a currencies file, checked row by row."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise CurrencyTableError(f"currencies file: {exc}") from None
    if not raw:
        raise CurrencyTableError("currencies file: lists no currency")
    table: dict[str, CurrencyDigits] = {}
    for code, row in raw.items():
        if len(code) != 3 or not code.isascii() or not code.isalpha() or not code.isupper():
            raise CurrencyTableError(f"{code}: must be an ISO 4217 code of three capital letters")
        if not isinstance(row, dict):
            raise CurrencyTableError(f"{code}: must be a table like {{ digits = 2, cash_digits = 2 }}")
        unknown = sorted(set(row) - {"digits", "cash_digits"})
        if unknown:
            raise CurrencyTableError(f"{code}.{unknown[0]}: unknown field")
        digits = _digits_field(code, row, "digits", MAX_DIGITS)
        table[code] = CurrencyDigits(digits, _digits_field(code, row, "cash_digits", digits))
    return table


@cache
def currency_table() -> dict[str, CurrencyDigits]:
    """The shipped table, read once."""
    return parse_currencies(resources.files("coupons").joinpath(SHIPPED_CURRENCIES_FILE).read_text("utf-8"))


@cache
def known_currencies() -> frozenset[str]:
    """The ISO 4217 codes an order may be priced in."""
    return frozenset(currency_table())


def _digits_of(currency: str) -> CurrencyDigits:
    try:
        return currency_table()[currency.upper()]
    except KeyError:
        raise UnknownCurrency(f"currency {currency!r}: not in {SHIPPED_CURRENCIES_FILE}") from None


def minor_unit_digits(currency: str) -> int:
    """Decimals an amount in `currency` is exact to (USD 2, JPY 0, IDR 0, KWD 3)."""
    return _digits_of(currency).digits


def cash_digits(currency: str) -> int:
    """Decimals shoppers see on a whole amount (SEK 0, USD 2), never more than the minor unit."""
    return _digits_of(currency).cash_digits


def round_to_minor_unit(amount: Decimal, currency: str) -> Decimal:
    """Half-up to the currency's minor unit: USD 13.995 → 14.00, JPY 979.5 → 980,
    IDR 132300.5 → 132301, SEK 69.93 stays 69.93."""
    exponent = Decimal(1).scaleb(-minor_unit_digits(currency))
    return amount.quantize(exponent, rounding=ROUND_HALF_UP)


def shown_digits(amount: Decimal, currency: str) -> int:
    """How many decimals to write `amount` with (see the module docstring)."""
    digits, cash = minor_unit_digits(currency), cash_digits(currency)
    if cash < digits and amount == amount.quantize(Decimal(1).scaleb(-cash)):
        return cash
    return digits


def amount_text(amount: Decimal, currency: str) -> str:
    """The amount as a plain decimal string, rounded and written by the one rule:
    USD 14 → "14.00", IDR 132300.7 → "132301", SEK 70 → "70", SEK 69.93 → "69.93"."""
    rounded = round_to_minor_unit(amount, currency)
    return str(rounded.quantize(Decimal(1).scaleb(-shown_digits(rounded, currency))))


def discounted(regular: Decimal, percent: Decimal, currency: str) -> Decimal:
    """The price after `percent` off, by the same rounding rule as every other amount."""
    return round_to_minor_unit(regular * (Decimal(100) - percent) / Decimal(100), currency)
