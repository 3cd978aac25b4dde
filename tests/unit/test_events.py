"""SPEC section 1: event parsing and validation, with messages that name the field."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from coupons.events import (
    CouponRedeemed,
    CustomerOptedOut,
    EventError,
    OrderPaid,
    OrderRefunded,
    StreamEnded,
    parse_event,
    validate_event,
)

ORDER_PAID = {
    "id": "evt-1",
    "type": "order.paid",
    "occurred_at": "2026-05-10T12:00:00Z",
    "data": {
        "order_id": "o-1",
        "currency": "USD",
        "customer": {"id": "c-1", "country": "US", "consent": []},
        "items": [{"sku": "shampoo", "name": "Shampoo", "unit_price": "20.00", "quantity": 1}],
    },
}

MINIMAL = {
    "order.paid": ORDER_PAID["data"],
    "stream.ended": {"stream_id": "s-1"},
    "order.refunded": {"order_id": "o-1"},
    "customer.opted_out": {"customer_id": "c-1"},
    "coupon.redeemed": {"code": "ABCDE-FGHJK-MNPQR", "order_id": "o-2"},
}


def order_paid(**changes) -> dict:
    event = copy.deepcopy(ORDER_PAID)
    for path, value in changes.items():
        target = event
        *parents, leaf = path.split("__")
        for part in parents:
            target = target[int(part)] if part.isdigit() else target[part]
        if value is DROP:
            del target[leaf]
        else:
            target[leaf] = value
    return event


DROP = object()


def reject(event: object) -> str:
    with pytest.raises(EventError) as info:
        parse_event(json.dumps(event))
    return str(info.value)


# --- accepted ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("event_type", "model"),
    [
        ("order.paid", OrderPaid),
        ("stream.ended", StreamEnded),
        ("order.refunded", OrderRefunded),
        ("customer.opted_out", CustomerOptedOut),
        ("coupon.redeemed", CouponRedeemed),
    ],
)
def test_each_event_type_is_accepted_in_minimal_form(event_type, model):
    # Given
    raw = {"id": "e", "type": event_type, "occurred_at": "2026-05-10T12:00:00Z", "data": MINIMAL[event_type]}

    # When
    event = parse_event(json.dumps(raw))

    # Then
    assert event.id == "e"
    assert event.type == event_type
    assert isinstance(event.data, model)
    assert event.occurred_at == datetime(2026, 5, 10, 12, tzinfo=UTC)


def test_full_order_paid_keeps_every_field():
    raw = order_paid(
        data__stream_id="live-7",
        data__customer={
            "id": "c-9", "name": "Siti", "country": "ID", "locale": "id-ID", "timezone": "Asia/Jakarta",
            "email": "siti@example.com", "phone": "+6281234567890", "whatsapp": "+6281234567890",
            "line_id": "siti.line", "telegram_id": "siti_tg", "consent": ["whatsapp", "email"],
        },
        data__currency="IDR",
        data__items=[{"sku": "serum", "name": "Serum", "unit_price": 189000, "quantity": 2, "refill_sku": "serum-r"}],
    )

    data = parse_event(json.dumps(raw)).data

    assert data.stream_id == "live-7"
    assert data.currency == "IDR"
    assert data.customer.country == "ID"
    assert data.customer.timezone == "Asia/Jakarta"
    assert data.customer.phone == "+6281234567890"
    assert data.customer.consent == ["whatsapp", "email"]
    assert data.items[0].unit_price == Decimal("189000")
    assert data.items[0].quantity == 2
    assert data.items[0].refill_sku == "serum-r"


@pytest.mark.parametrize(("given", "kept"), [("US-FL", "US-FL"), ("us-tx", "US-TX"), (" US-RI ", "US-RI"),
                                             (None, None)])
def test_customer_region_is_an_optional_subdivision_kept_in_upper_case(given, kept):
    # the US SMS hours look a state up by this code (rule 17)
    raw = order_paid(data__customer__region=given) if given is not None else order_paid()

    assert parse_event(json.dumps(raw)).data.customer.region == kept


def test_a_region_of_another_country_names_the_customers_country():
    assert reject(order_paid(data__customer__region="CA-ON")) == (
        "data.customer.region: must be a subdivision of the customer's country US (starting US-)")


def test_prices_keep_their_decimals_exactly():
    raw = order_paid(data__items__0__unit_price="19.99")

    assert parse_event(json.dumps(raw)).data.items[0].unit_price == Decimal("19.99")


def test_numeric_price_is_accepted():
    raw = order_paid(data__items__0__unit_price=20.5)

    assert parse_event(json.dumps(raw)).data.items[0].unit_price == Decimal("20.5")


def test_unknown_extra_fields_are_ignored_everywhere():
    raw = order_paid(shop="acme", data__channel_hint="x", data__customer__vip=True, data__items__0__color="red")

    event = parse_event(json.dumps(raw))

    assert event.data.order_id == "o-1"


def test_opted_out_without_channels_means_every_channel_and_with_channels_keeps_them():
    everything = parse_event(json.dumps({**ORDER_PAID, "type": "customer.opted_out", "data": {"customer_id": "c"}}))
    some = parse_event(json.dumps({**ORDER_PAID, "type": "customer.opted_out",
                                   "data": {"customer_id": "c", "channels": ["sms"]}}))

    assert everything.data.channels is None
    assert some.data.channels == ["sms"]


@pytest.mark.parametrize(
    ("text", "expected_utc"),
    [
        ("2026-05-10T19:00:00+07:00", datetime(2026, 5, 10, 12, 0, tzinfo=UTC)),
        ("2026-05-10T09:00:00-03:00", datetime(2026, 5, 10, 12, 0, tzinfo=UTC)),
        ("2026-05-10T12:00:00Z", datetime(2026, 5, 10, 12, 0, tzinfo=UTC)),
        ("2026-05-10T12:00:00.250z", datetime(2026, 5, 10, 12, 0, 0, 250000, tzinfo=UTC)),
        ("2026-05-11T01:30:00+05:30", datetime(2026, 5, 10, 20, 0, tzinfo=UTC)),
    ],
)
def test_offsets_parse_to_the_right_utc_instant(text, expected_utc):
    event = parse_event(json.dumps(order_paid(occurred_at=text)))

    assert event.occurred_at == expected_utc


def test_bytes_input_is_accepted():
    assert parse_event(json.dumps(ORDER_PAID).encode()).id == "evt-1"


def test_country_is_upper_cased_for_market_lookup():
    assert parse_event(json.dumps(order_paid(data__customer__country="id"))).data.customer.country == "ID"


# --- rejected: the message names the field --------------------------------


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"data__items__0__unit_price": "0"}, "data.items[0].unit_price"),
        ({"data__items__0__unit_price": -5}, "data.items[0].unit_price"),
        ({"data__items__0__unit_price": "abc"}, "data.items[0].unit_price"),
        ({"data__items__0__unit_price": "NaN"}, "data.items[0].unit_price"),
        ({"data__items__0__unit_price": True}, "data.items[0].unit_price"),
        ({"data__items__0__unit_price": DROP}, "data.items[0].unit_price"),
        ({"data__items__0__sku": DROP}, "data.items[0].sku"),
        ({"data__items__0__name": ""}, "data.items[0].name"),
        ({"data__customer__email": "not-an-email"}, "data.customer.email"),
        ({"data__customer__email": "a@b@example.com"}, "data.customer.email"),
        ({"data__customer__phone": "081234567890"}, "data.customer.phone"),
        ({"data__customer__phone": "+62 812 3456 7890"}, "data.customer.phone"),
        ({"data__customer__phone": "+0123456789"}, "data.customer.phone"),
        ({"data__customer__whatsapp": "6281234567890"}, "data.customer.whatsapp"),
        ({"data__currency": "XYZ"}, "data.currency"),
        ({"data__currency": "usd"}, "data.currency"),
        ({"data__currency": DROP}, "data.currency"),
        ({"data__customer__country": "ZZ"}, "data.customer.country"),
        ({"data__customer__country": "usa"}, "data.customer.country"),
        ({"data__customer__country": "U"}, "data.customer.country"),
        ({"data__customer__country": DROP}, "data.customer.country"),
        ({"data__customer__timezone": "Mars/Olympus_Mons"}, "data.customer.timezone"),
        ({"data__customer__timezone": "GMT+7"}, "data.customer.timezone"),
        ({"data__customer__region": "FL"}, "data.customer.region"),
        ({"data__customer__region": "Florida"}, "data.customer.region"),
        ({"data__customer__region": "US_FL"}, "data.customer.region"),
        ({"data__customer__region": "US-FLOR"}, "data.customer.region"),
        ({"data__customer__region": "CA-ON"}, "data.customer.region"),
        ({"data__customer__region": 12}, "data.customer.region"),
        ({"data__customer__locale": "english please"}, "data.customer.locale"),
        ({"data__customer__locale": "e"}, "data.customer.locale"),
        ({"data__customer__locale": "en\n"}, "data.customer.locale"),
        ({"data__customer__consent": DROP}, "data.customer.consent"),
        ({"data__customer__consent": ["email", "fax"]}, "data.customer.consent"),
        ({"data__customer__consent": "email"}, "data.customer.consent"),
        ({"data__customer__id": DROP}, "data.customer.id"),
        ({"data__customer": DROP}, "data.customer"),
        ({"data__items": []}, "data.items"),
        ({"data__items": DROP}, "data.items"),
        ({"data__order_id": DROP}, "data.order_id"),
        ({"occurred_at": "2026-05-10T12:00:00"}, "occurred_at"),
        ({"occurred_at": "2026-05-10"}, "occurred_at"),
        ({"occurred_at": "2026-02-30T12:00:00Z"}, "occurred_at"),
        ({"occurred_at": 1778414400}, "occurred_at"),
        ({"id": ""}, "id"),
        ({"id": "x" * 129}, "id"),
        ({"id": 7}, "id"),
        ({"type": "order.cancelled"}, "type"),
        ({"type": DROP}, "type"),
        ({"data": []}, "data"),
        ({"data": DROP}, "data"),
    ],
)
def test_rule_violation_is_rejected_naming_the_field(changes, field):
    # When
    message = reject(order_paid(**changes))

    # Then
    assert message.startswith(field + ": "), message
    assert len(message) > len(field) + 2


def test_zero_price_says_it_must_be_positive():
    assert reject(order_paid(data__items__0__unit_price="0")) == "data.items[0].unit_price: must be > 0"


@pytest.mark.parametrize("quantity", [0, -1, 1.5, "2", None, True])
def test_bad_quantity_on_the_second_item_names_that_item(quantity):
    # Given a good first item and a bad second one
    items = [
        {"sku": "a", "name": "A", "unit_price": "1", "quantity": 1},
        {"sku": "b", "name": "B", "unit_price": "1", "quantity": quantity},
    ]

    message = reject(order_paid(data__items=items))

    assert message.startswith("data.items[1].quantity: "), message


def test_missing_consent_says_required():
    assert reject(order_paid(data__customer__consent=DROP)) == "data.customer.consent: required"


def test_unknown_consent_channel_is_named():
    message = reject(order_paid(data__customer__consent=["fax"]))

    assert message.startswith("data.customer.consent: ")
    assert "fax" in message


def test_too_long_id_names_the_limit():
    message = reject(order_paid(id="x" * 129))

    assert message.startswith("id: ")
    assert "128" in message


def test_id_of_128_characters_is_accepted():
    assert parse_event(json.dumps(order_paid(id="x" * 128))).id == "x" * 128


@pytest.mark.parametrize(
    ("event_type", "data", "field"),
    [
        ("stream.ended", {}, "data.stream_id"),
        ("stream.ended", {"stream_id": ""}, "data.stream_id"),
        ("order.refunded", {"order_id": 12}, "data.order_id"),
        ("customer.opted_out", {}, "data.customer_id"),
        ("customer.opted_out", {"customer_id": "c", "channels": ["pigeon"]}, "data.channels"),
        ("coupon.redeemed", {"order_id": "o"}, "data.code"),
        ("coupon.redeemed", {"code": "ABCDE"}, "data.order_id"),
    ],
)
def test_other_types_name_their_bad_field(event_type, data, field):
    raw = {"id": "e", "type": event_type, "occurred_at": "2026-05-10T12:00:00Z", "data": data}

    assert reject(raw).startswith(field + ": ")


@pytest.mark.parametrize("body", ["[]", "[1, 2]", '"order.paid"', "42", "null", "true"])
def test_body_that_is_not_an_object_is_rejected(body):
    with pytest.raises(EventError) as info:
        parse_event(body)

    assert "object" in str(info.value)


@pytest.mark.parametrize("text", ["", "{", "{'id': 'x'}", '{"id": "x",}', "not json", "[" * 100_000])
def test_invalid_json_is_rejected(text):
    with pytest.raises(EventError) as info:
        parse_event(text)

    assert "JSON" in str(info.value)


def test_invalid_utf8_bytes_are_rejected():
    with pytest.raises(EventError):
        parse_event(b'{"id": "\xff\xfe"}')


def test_event_over_256_kib_is_rejected():
    # Given a valid order.paid padded with an ignored field to just over 256 KiB
    raw = order_paid(padding="")
    size = len(json.dumps(raw))
    raw["padding"] = "x" * (256 * 1024 - size + 1)
    text = json.dumps(raw)
    assert len(text.encode()) == 256 * 1024 + 1

    # When / Then
    with pytest.raises(EventError) as info:
        parse_event(text)
    assert "256 KiB" in str(info.value)
    with pytest.raises(EventError):
        parse_event(text.encode())


def test_event_of_exactly_256_kib_is_accepted():
    raw = order_paid(padding="")
    raw["padding"] = "x" * (256 * 1024 - len(json.dumps(raw)))
    text = json.dumps(raw)
    assert len(text.encode()) == 256 * 1024

    assert parse_event(text).id == "evt-1"


def test_validate_event_rejects_non_objects_too():
    with pytest.raises(EventError):
        validate_event(["not", "an", "event"])
