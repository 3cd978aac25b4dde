"""Events name their shop, and their ids are stored scoped to it (SPEC section 7)."""

from __future__ import annotations

import pytest

from coupons.errors import EventError
from coupons.events import validate_event
from coupons.shop_scope import stored_keys
from coupons.shops import default_shops, parse_shops, shop_of_key

SHOPS = parse_shops('[shops.default]\nplatform = "none"\n\n[shops.glow]\nplatform = "none"\nbrand = "Glow"\n\n'
                    '[shops.lumi]\nplatform = "none"\n', "shops.toml")


def event(shop: str | None = None, type_: str = "order.paid", **data) -> dict:
    if type_ == "order.paid" and not data:
        data = {"order_id": "o1", "stream_id": "s1", "currency": "USD",
                "customer": {"id": "c1", "country": "US", "consent": []},
                "items": [{"sku": "a", "name": "A", "unit_price": "1", "quantity": 1}], "discount_codes": ["K7Q"]}
    raw = {"id": "e1", "type": type_, "occurred_at": "2026-03-10T12:00:00Z", "data": data}
    return raw if shop is None else {**raw, "shop": shop}


def test_an_event_without_shop_is_the_default_shops():
    assert validate_event(event(), shops=SHOPS).shop == "default"
    assert validate_event(event(), shops=default_shops()).shop == "default"


def test_an_unknown_shop_is_rejected_naming_shop_and_the_shops_there_are():
    with pytest.raises(EventError) as caught:
        validate_event(event("nowhere"), shops=SHOPS)
    assert caught.value.field == "shop"
    assert str(caught.value) == "shop: unknown shop 'nowhere': shops.toml defines default, glow, lumi"
    with pytest.raises(EventError, match="^shop: unknown shop 'glow': without ENCORE_SHOPS_FILE"):
        validate_event(event("glow"), shops=default_shops())


@pytest.mark.parametrize("shop", [1, "", "Glow", "glow us", None, ["glow"]])
def test_a_shop_that_is_not_a_name_is_rejected_naming_shop(shop):
    raw = {**event(), "shop": shop}
    with pytest.raises(EventError, match="^shop: "):
        validate_event(raw, shops=SHOPS)


@pytest.mark.parametrize("bad_id", ["c\x1f1", "c\t1", "c\n1", "c\x7f1"])
def test_ids_with_control_characters_are_refused(bad_id):
    raw = event()
    raw["data"]["customer"]["id"] = bad_id
    with pytest.raises(EventError, match=r"^data\.customer\.id: must not contain control characters"):
        validate_event(raw)
    with pytest.raises(EventError, match="^id: must not contain control characters"):
        validate_event({**event(), "id": bad_id})


def test_the_default_shops_events_keep_their_ids():
    parsed = validate_event(event(), shops=SHOPS)
    assert stored_keys(parsed) is parsed


def test_another_shops_ids_are_scoped_and_its_codes_are_not():
    scoped = stored_keys(validate_event(event("glow"), shops=SHOPS))
    assert scoped.id == "glow\x1fe1"
    assert (scoped.data.order_id, scoped.data.stream_id, scoped.data.customer.id) == (
        "glow\x1fo1", "glow\x1fs1", "glow\x1fc1")
    assert scoped.data.discount_codes == ["K7Q"]
    assert {shop_of_key(key) for key in (scoped.id, scoped.data.customer.id)} == {"glow"}
    assert shop_of_key("c1") == "default"


@pytest.mark.parametrize(("type_", "data", "scoped"), [
    ("stream.ended", {"stream_id": "s1"}, {"stream_id": "lumi\x1fs1"}),
    ("order.refunded", {"order_id": "o1"}, {"order_id": "lumi\x1fo1"}),
    ("customer.opted_out", {"customer_id": "c1"}, {"customer_id": "lumi\x1fc1", "channels": None}),
    ("coupon.redeemed", {"code": "K7Q", "order_id": "o1"}, {"code": "K7Q", "order_id": "lumi\x1fo1",
                                                           "customer_id": None}),
    ("coupon.redeemed", {"code": "K7Q", "order_id": "o1", "customer_id": "c1"},
     {"code": "K7Q", "order_id": "lumi\x1fo1", "customer_id": "lumi\x1fc1"}),
])
def test_every_event_types_ids_are_scoped(type_, data, scoped):
    assert stored_keys(validate_event(event("lumi", type_, **data), shops=SHOPS)).data.model_dump() == scoped


def test_messages_are_signed_with_the_brand_else_the_shops_name_and_the_default_shop_with_encore():
    assert SHOPS.signature("glow") == "Glow"
    assert SHOPS.signature("lumi") == "lumi"
    assert SHOPS.signature("default") == "Encore"
    assert default_shops().signature("default") == "Encore"
    assert SHOPS.signature("gone") == "gone"  # a shop taken out of the file: its rows are still signed
