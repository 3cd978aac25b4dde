"""Rule 3: which offer a trigger's items earn."""

from __future__ import annotations

import itertools
import json
from decimal import Decimal

import pytest

from coupons.events import EventError, parse_event
from coupons.markets import load_markets
from coupons.model import Item
from coupons.offers import choose_offer

MARKETS = load_markets()
NA = MARKETS.by_name["north_america"]
SEA = MARKETS.by_name["southeast_asia"]


def item(sku: str, price: str, quantity: int = 1, refill_sku: str | None = None, name: str | None = None) -> Item:
    return Item(sku=sku, name=name or sku.title(), unit_price=Decimal(price), quantity=quantity, refill_sku=refill_sku)


# --- refill -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("price", "currency", "expected"),
    [
        ("20.00", "USD", "14.00"),
        ("189000", "IDR", "132300"),
        ("1999", "JPY", "1399"),  # 1399.3: JPY has no decimals
        ("0.05", "USD", "0.04"),  # 0.035 rounds half-up
        ("19.99", "USD", "13.99"),  # 13.993
        ("9.95", "USD", "6.97"),  # 6.965 rounds half-up
        ("1.005", "KWD", "0.704"),  # 0.7035 rounds half-up to fils
    ],
)
def test_refill_is_seventy_percent_rounded_half_up_to_the_minor_unit(price, currency, expected):
    # Given a consumable
    items = [item("shampoo", price, refill_sku="shampoo-refill")]

    # When
    offer = choose_offer(items, currency, NA)

    # Then
    assert offer.type == "refill"
    assert offer.currency == currency
    assert str(offer.price) == expected


def test_refill_offer_names_the_refill_sku_not_the_bought_one():
    offer = choose_offer([item("shampoo", "20.00", refill_sku="shampoo-refill")], "USD", NA)

    assert offer.sku == "shampoo-refill"
    assert offer.percent is None


def test_refill_picks_the_dearest_consumable_even_when_something_else_costs_more():
    # Given a dearer non-consumable and two consumables
    items = [
        item("tv", "500.00"),
        item("soap", "5.00", refill_sku="soap-refill"),
        item("serum", "40.00", refill_sku="serum-refill"),
        item("lotion", "30.00", quantity=3, refill_sku="lotion-refill"),
    ]

    # When
    offer = choose_offer(items, "USD", NA)

    # Then
    assert offer.type == "refill"
    assert offer.sku == "serum-refill"
    assert offer.price == Decimal("28.00")


def test_refill_wins_over_a_multi_bought_item():
    items = [item("socks", "50.00", quantity=4), item("soap", "5.00", refill_sku="soap-refill")]

    offer = choose_offer(items, "USD", NA)

    assert offer.type == "refill"
    assert offer.sku == "soap-refill"
    assert offer.price == Decimal("3.50")


def test_custom_refill_ratio_is_used():
    offer = choose_offer([item("soap", "10.00", refill_sku="soap-refill")], "USD", NA, refill_ratio=Decimal("0.5"))

    assert offer.price == Decimal("5.00")


# --- second half price ----------------------------------------------------


def test_second_half_price_on_the_dearest_item_bought_at_least_twice():
    # Given the dearest item overall was bought once
    items = [
        item("coat", "300.00"),
        item("socks", "10.00", quantity=3),
        item("shirt", "25.00", quantity=2),
    ]

    # When
    offer = choose_offer(items, "USD", NA)

    # Then
    assert offer.type == "second_half_price"
    assert offer.sku == "shirt"
    assert offer.percent == Decimal("50")
    assert offer.price is None


def test_quantities_of_one_sku_across_orders_add_up():
    # Given two orders in one stream with one shirt each
    items = [item("shirt", "25.00"), item("hat", "40.00"), item("shirt", "25.00")]

    # When
    offer = choose_offer(items, "USD", NA)

    # Then the shirt counts as bought twice
    assert offer.type == "second_half_price"
    assert offer.sku == "shirt"


def test_a_single_unit_of_each_sku_is_not_second_half_price():
    offer = choose_offer([item("shirt", "25.00"), item("hat", "40.00")], "USD", NA)

    assert offer.type == "percent_off"


# --- percent off ----------------------------------------------------------


@pytest.mark.parametrize(
    ("market", "percent"),
    [
        ("north_america", "10"),
        ("europe", "15"),
        ("southeast_asia", "30"),
        ("latin_america", "20"),
        ("middle_east", "20"),
        ("rest_of_world", "15"),
    ],
)
def test_percent_off_the_dearest_item_at_the_market_depth(market, percent):
    # Given nothing consumable and nothing bought twice
    items = [item("mug", "12.00"), item("lamp", "80.00"), item("pen", "3.00")]

    # When
    offer = choose_offer(items, "USD", MARKETS.by_name[market])

    # Then
    assert offer.type == "percent_off"
    assert offer.sku == "lamp"
    assert offer.percent == Decimal(percent)
    assert offer.price is None


def test_percent_off_in_idr_for_southeast_asia():
    offer = choose_offer([item("batik", "189000"), item("tea", "25000")], "IDR", SEA)

    assert (offer.type, offer.sku, offer.percent, offer.currency) == ("percent_off", "batik", Decimal("30"), "IDR")


# --- ties and input -------------------------------------------------------


@pytest.mark.parametrize(
    ("items", "expected_sku"),
    [
        ([item("b", "10.00"), item("a", "10.00"), item("c", "10.00")], "a"),
        ([item("b", "10.00", 2), item("a", "10.00", 2)], "a"),
        ([item("b", "10.00", refill_sku="b-refill"), item("a", "10.00", refill_sku="a-refill")], "a-refill"),
    ],
)
def test_ties_are_broken_the_same_way_whatever_the_order(items, expected_sku):
    chosen = {choose_offer(list(order), "USD", NA).sku for order in itertools.permutations(items)}

    assert chosen == {expected_sku}


def test_prices_are_compared_as_numbers_not_strings():
    # "9.00" > "10.00" as text, not as money
    offer = choose_offer([item("cheap", "9.00"), item("dear", "10.00")], "USD", NA)

    assert offer.sku == "dear"


def test_no_items_is_refused():
    with pytest.raises(ValueError):
        choose_offer([], "USD", NA)



@pytest.mark.parametrize("refill_sku", ["big-refill", None])
def test_every_price_the_event_parser_accepts_earns_an_offer(refill_sku):
    # Given an order.paid with a huge price: it must be either rejected naming the field,
    # or accepted and then earn an offer (not crash the planner with decimal.InvalidOperation)
    raw_item = {"sku": "big", "name": "Big", "unit_price": "1e30", "quantity": 1}
    if refill_sku:
        raw_item["refill_sku"] = refill_sku
    raw = {"id": "e", "type": "order.paid", "occurred_at": "2026-05-10T12:00:00Z",
           "data": {"order_id": "o", "currency": "USD", "customer": {"id": "c", "country": "US", "consent": []},
                    "items": [raw_item]}}
    try:
        event = parse_event(json.dumps(raw))
    except EventError as exc:
        assert str(exc).startswith("data.items[0].unit_price: ")
        return
    parsed = event.data.items[0]

    # When
    offer = choose_offer([Item(parsed.sku, parsed.name, parsed.unit_price, parsed.quantity, parsed.refill_sku)],
                         "USD", NA)

    # Then
    assert offer.sku == (refill_sku or "big")


# --- one rounding rule, no offer of nothing ----------------


def test_sek_refill_keeps_the_ore_it_is_priced_in():
    # SEK has two ISO decimals: 99.90 × 0.7 is 69.93, not the cash-rounded 70
    offer = choose_offer([item("shampoo", "99.90", refill_sku="shampoo-refill")], "SEK", NA)
    assert offer.price == Decimal("69.93")


@pytest.mark.parametrize(("price", "currency", "expected"), [("189000", "IDR", "132300"), ("189001", "IDR", "132301")])
def test_idr_refill_is_whole_rupiah_rounded_half_up(price, currency, expected):
    # 189001 × 0.7 is 132300.7: the customer is offered 132301, never a fraction of a rupiah
    offer = choose_offer([item("shampoo", price, refill_sku="shampoo-refill")], currency, SEA)
    assert str(offer.price) == expected


def test_a_refill_that_rounds_to_nothing_falls_back_to_the_next_rule():
    # Given a sub-cent consumable (0.004 × 0.7 rounds to $0.00) bought twice
    items = [item("sample", "0.004", quantity=2, refill_sku="sample-refill")]
    # When
    offer = choose_offer(items, "USD", NA)
    # Then no "refill for $0.00": half price on a second one instead
    assert offer.type == "second_half_price"
    assert offer.sku == "sample"
    assert offer.regular_price is None  # $0.00 would say nothing true


def test_a_sub_cent_single_item_gets_the_markets_percent_off():
    offer = choose_offer([item("sample", "0.004", refill_sku="sample-refill")], "USD", NA)
    assert offer.type == "percent_off" and offer.percent == NA.depth_percent and offer.price is None


def test_a_cheap_refill_that_still_costs_something_is_kept():
    offer = choose_offer([item("sample", "0.01", refill_sku="sample-refill")], "USD", NA)
    assert offer.type == "refill" and offer.price == Decimal("0.01")
