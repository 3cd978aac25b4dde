"""Minor units and half-up rounding per currency (rule 3 prices)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from coupons.money import known_currencies, minor_unit_digits, round_to_minor_unit


@pytest.mark.parametrize(
    ("currency", "digits"),
    [
        ("USD", 2),
        ("EUR", 2),
        ("BRL", 2),
        ("THB", 2),
        ("JPY", 0),
        ("IDR", 0),  # cash digits: nobody pays Rp 132.300,45 (see coupons/money.py)
        ("VND", 0),
        ("KWD", 3),
        ("BHD", 3),
    ],
)
def test_minor_unit_digits_per_currency(currency, digits):
    assert minor_unit_digits(currency) == digits


@pytest.mark.parametrize(
    ("amount", "currency", "expected"),
    [
        ("14", "USD", "14.00"),
        ("13.995", "USD", "14.00"),
        ("0.035", "USD", "0.04"),  # exactly half: up
        ("0.034", "USD", "0.03"),
        ("132300.0", "IDR", "132300"),
        ("132300.5", "IDR", "132301"),
        ("1399.3", "JPY", "1399"),
        ("979.5", "JPY", "980"),
        ("1.2345", "KWD", "1.235"),
        ("1.2344", "KWD", "1.234"),
    ],
)
def test_round_to_minor_unit_is_half_up_and_shows_the_currency_decimals(amount, currency, expected):
    # When
    rounded = round_to_minor_unit(Decimal(amount), currency)

    # Then: same value and same number of decimals as the shopper pays
    assert str(rounded) == expected


def test_known_currencies_include_the_spec_examples_and_not_junk():
    currencies = known_currencies()
    assert {"USD", "IDR", "THB", "BRL", "EUR", "JPY", "KWD"} <= currencies
    assert "usd" not in currencies
    assert "ABC" not in currencies
