"""Minor units and half-up rounding per currency (rule 3 prices)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from coupons.money import amount_text, discounted, known_currencies, minor_unit_digits, round_to_minor_unit


@pytest.mark.parametrize(
    ("currency", "digits"),
    [
        ("USD", 2),
        ("EUR", 2),
        ("BRL", 2),
        ("THB", 2),
        ("JPY", 0),
        ("IDR", 2),  # ISO 4217; a whole amount is still written without decimals (amount_text)
        ("SEK", 2),  # ISO 4217, although Swedish cash stops at the krona
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
        ("132300.0", "IDR", "132300.00"),
        ("132300.5", "IDR", "132300.50"),
        ("69.93", "SEK", "69.93"),
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


@pytest.mark.parametrize(
    ("amount", "currency", "expected"),
    [
        ("14", "USD", "14.00"),  # SPEC: USD 20.00 → 14.00
        ("132300.0", "IDR", "132300"),  # SPEC: IDR 189000 → 132300
        ("132300.70", "IDR", "132300.70"),  # a fraction is kept, not rounded away
        ("1399.3", "JPY", "1399"),  # SPEC: JPY has no decimals
        ("69.93", "SEK", "69.93"),
        ("70.00", "SEK", "70"),
        ("0.004", "USD", "0.00"),
    ],
)
def test_amount_text_writes_an_amount_the_way_shoppers_see_it(amount, currency, expected):
    assert amount_text(Decimal(amount), currency) == expected


def test_percent_off_price_rounds_by_the_same_rule_as_a_refill():
    # SEK 99.90: 30% off and a 0.70 refill are the same amount, so they must agree
    assert discounted(Decimal("99.90"), Decimal("30"), "SEK") == Decimal("69.93")
    assert round_to_minor_unit(Decimal("99.90") * Decimal("0.70"), "SEK") == Decimal("69.93")
    assert discounted(Decimal("189000"), Decimal("30"), "IDR") == Decimal("132300")
