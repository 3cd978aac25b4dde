"""Amounts in major units, rounded by one rule for computing and for showing.

The rule: an amount is exact to the currency's ISO 4217 minor unit (USD 2, EUR 2,
SEK 2, IDR 2, JPY 0, VND 0, KWD 3, as CLDR records it in `digits`), rounded
half-up. The same digits are used to compute a refill or a discounted price and to
show it, so SEK 99.90 × 0.7 is 69.93 everywhere (mixing in CLDR's *cash* digits,
SEK 0, once made it 70 in one place and 69.93 in another).

Writing an amount: a currency whose coins stop at the major unit (CLDR cash digits
0 while ISO has 2: IDR, SEK, HUF, …) drops an all-zero fraction, as shoppers see it
(IDR 189000 × 0.7 → "132300", SEK 70.00 → "70"); any other fraction is kept
("132300.70"). JPY and VND have no minor unit at all.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal
from functools import cache

from babel.core import get_global
from babel.numbers import get_currency_precision, list_currencies


@cache
def known_currencies() -> frozenset[str]:
    return frozenset(list_currencies())


@cache
def minor_unit_digits(currency: str) -> int:
    """Decimal places of the currency's ISO 4217 minor unit (CLDR `digits`)."""
    return get_currency_precision(currency.upper())


@cache
def cash_digits(currency: str) -> int:
    """Decimal places shoppers actually see on a whole amount (CLDR cash digits),
    never more than the minor unit."""
    fractions = get_global("currency_fractions")
    digits, _rounding, cash, _cash_rounding = fractions.get(currency.upper(), fractions["DEFAULT"])
    return min(digits if cash is None else cash, minor_unit_digits(currency))


def round_to_minor_unit(amount: Decimal, currency: str) -> Decimal:
    """Half-up to the currency's minor unit: USD 13.995 → 14.00, JPY 979.5 → 980,
    SEK 69.93 stays 69.93."""
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
    USD 14 → "14.00", IDR 132300 → "132300", IDR 132300.7 → "132300.70"."""
    rounded = round_to_minor_unit(amount, currency)
    return str(rounded.quantize(Decimal(1).scaleb(-shown_digits(rounded, currency))))


def discounted(regular: Decimal, percent: Decimal, currency: str) -> Decimal:
    """The price after `percent` off, by the same rounding rule as every other amount."""
    return round_to_minor_unit(regular * (Decimal(100) - percent) / Decimal(100), currency)
