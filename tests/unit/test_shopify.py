"""Shopify's orders/paid payload mapped to order.paid, validated like every other event."""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from coupons.events import validate_event
from tests.support import SHOPIFY_SECRET, shopify_headers, shopify_order
from coupons.shopify_orders import Ignored, ShopifyPayloadError, order_paid_event, shopify_signature_ok

WHEN = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)


def test_the_documented_payload_maps_to_a_valid_order_paid():
    event = validate_event(order_paid_event(shopify_order(processed_at=WHEN, discount_codes=["ENC-1"]), "wh-1"))
    assert event.id == "shopify:wh-1"
    data = event.data
    assert (data.order_id, data.currency, data.discount_codes) == ("shopify:820982911946154508", "USD", ["ENC-1"])
    assert (data.customer.id, data.customer.name, data.customer.country) == (
        "shopify:115310627314723954", "John Smith", "US")
    assert data.customer.consent == ["email"]  # SMS consent is not_subscribed
    [item] = data.items
    assert (item.sku, item.name, str(item.unit_price), item.quantity) == ("IPOD2008BLACK", "IPod Nano - 8GB",
                                                                          "199.00", 1)
    # What the customer paid, after discounts: the revenue of a redemption in `encore review`
    assert str(data.total_price) == "398.00"


def test_a_fully_discounted_order_keeps_its_total_of_zero():
    payload = shopify_order(processed_at=WHEN)
    payload["total_price"] = "0.00"
    assert validate_event(order_paid_event(payload, "wh-0")).data.total_price == 0


def test_a_line_without_sku_uses_its_variant_and_removed_lines_are_dropped():
    lines = [{"variant_id": 5, "title": "Soap", "price": "3.50", "quantity": 2},
             {"sku": "GONE", "title": "Gone", "price": "1.00", "quantity": 1, "current_quantity": 0}]
    event = validate_event(order_paid_event(shopify_order(processed_at=WHEN, line_items=lines), "w"))
    assert [(i.sku, i.quantity) for i in event.data.items] == [("variant:5", 2)]


def test_a_free_line_is_left_out_and_the_paid_lines_still_make_the_order():
    lines = [{"sku": "SERUM", "title": "Serum", "price": "40.00", "quantity": 1},
             {"sku": "SAMPLE", "title": "Free sample", "price": "0.00", "quantity": 1},
             {"sku": "GIFT", "title": "Gift", "price": 0, "quantity": 1}]
    event = validate_event(order_paid_event(shopify_order(processed_at=WHEN, line_items=lines), "w"))
    assert [i.sku for i in event.data.items] == ["SERUM"]


@pytest.mark.parametrize("change, why", [
    (lambda p: p.update(test=True), "test order"),
    (lambda p: p.update(cancelled_at="2026-03-10T13:00:00-05:00"), "cancelled order"),
    (lambda p: p.update(line_items=[{"sku": "SAMPLE", "title": "Sample", "price": "0.00", "quantity": 1}]),
     "no paid line"),
    (lambda p: p.update(line_items=[{"sku": "GONE", "title": "Gone", "price": "5.00", "quantity": 1,
                                     "current_quantity": 0}]), "no paid line"),
    # whatever else is missing: a test order is never worth a dead letter
    (lambda p: p.update(test=True, customer=None, email=None, currency=None), "test order"),
])
def test_orders_that_make_no_coupon_are_ignored_not_rejected(change, why):
    payload = shopify_order(processed_at=WHEN)
    change(payload)
    result = order_paid_event(payload, "w")
    assert isinstance(result, Ignored) and why in result.reason


def test_a_guest_checkout_is_known_by_the_hash_of_its_lowercased_email():
    payload = shopify_order(processed_at=WHEN, email="Ann.Guest@Example.COM")
    payload["customer"] = None
    payload["buyer_accepts_marketing"] = True
    event = validate_event(order_paid_event(payload, "w"))
    digest = hashlib.sha256(b"ann.guest@example.com").hexdigest()[:16]
    assert event.data.customer.id == f"shopify:guest:{digest}"
    assert event.data.customer.email == "Ann.Guest@example.com"  # the domain normalised by validation
    assert event.data.customer.name == "John Smith"  # from the billing address
    assert event.data.customer.consent == ["email"]  # the order's buyer_accepts_marketing
    # the same buyer with another spelling of the address is the same customer
    payload["email"] = " ann.guest@example.com "
    assert validate_event(order_paid_event(payload, "w2")).data.customer.id == f"shopify:guest:{digest}"


def test_a_phone_that_is_not_e164_is_left_out_rather_than_rejecting_the_order():
    payload = shopify_order(processed_at=WHEN, phone="(555) 625-1199", sms_consent="subscribed")
    event = validate_event(order_paid_event(payload, "w"))
    assert event.data.customer.phone is None


@pytest.mark.parametrize("change, field", [
    (lambda p: p.update(customer=None, email=None), "email"),  # a guest known by nothing
    (lambda p: p.update(line_items=[]), "line_items"),
    (lambda p: p.pop("currency"), "currency"),
    (lambda p: p.update(processed_at=None, created_at=None), "processed_at"),
])
def test_an_unmappable_payload_names_the_field(change, field):
    payload = shopify_order(processed_at=WHEN)
    change(payload)
    with pytest.raises(ShopifyPayloadError) as error:
        order_paid_event(payload, "w")
    assert str(error.value).startswith(field + ":")


@settings(max_examples=200)
@given(st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=5),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=12), inner,
                                                                                max_size=4), max_leaves=20))
def test_any_json_either_maps_or_names_a_field(payload):
    try:
        order_paid_event(payload, "w")
    except ShopifyPayloadError:
        pass


def test_the_signature_is_base64_hmac_sha256_of_the_raw_body():
    body = b'{"id": 1}'
    header = shopify_headers(body, "w")["X-Shopify-Hmac-Sha256"]
    assert header == base64.b64encode(hmac.new(SHOPIFY_SECRET.encode(), body, hashlib.sha256).digest()).decode()
    assert shopify_signature_ok(SHOPIFY_SECRET, body, header)
    assert not shopify_signature_ok(SHOPIFY_SECRET, body + b" ", header)
    assert not shopify_signature_ok(SHOPIFY_SECRET, body, None)
    assert not shopify_signature_ok(SHOPIFY_SECRET, body, "ünïcode")
