"""Amounts in major units, rounded the way shoppers in each currency pay.

We round to the currency's *cash* minor unit from CLDR (USD 2, JPY 0, IDR 0,
VND 0): nobody in Jakarta pays Rp 132.300,45, and the spec's own example is
IDR 189000 → 132300.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal
from functools import lru_cache

from babel.core import get_global
from babel.numbers import list_currencies


@lru_cache(maxsize=None)
def known_currencies() -> frozenset[str]:
    return frozenset(list_currencies())


@lru_cache(maxsize=None)
def minor_unit_digits(currency: str) -> int:
    """Decimal places used for `currency` when paying (CLDR cash digits)."""
    fractions = get_global("currency_fractions")
    digits, _rounding, cash_digits, _cash_rounding = fractions.get(currency, fractions["DEFAULT"])
    return cash_digits if cash_digits is not None else digits


def round_to_minor_unit(amount: Decimal, currency: str) -> Decimal:
    """Half-up to the currency's minor unit: USD 13.995 → 14.00, JPY 979.5 → 980."""
    exponent = Decimal(1).scaleb(-minor_unit_digits(currency))
    return amount.quantize(exponent, rounding=ROUND_HALF_UP)
