"""Shopify's `orders/paid` webhook, mapped to Encore's `order.paid` (SPEC section 1).

Shopify signs the raw body: `X-Shopify-Hmac-Sha256` is the base64 HMAC-SHA256 of
it under the app's webhook secret. It may deliver the same webhook more than once,
always with the same `X-Shopify-Webhook-Id`, which becomes the event id.

The mapping is pure (a dict in, a dict out); the result then goes through the same
validation as every other event, so a bad email or currency is rejected exactly as
`encore emit` would reject it. Orders a real store sends that make no coupon (test
orders, cancelled ones, nothing but free lines) map to `Ignored`: acknowledged, so
Shopify does not retry them, and not stored.

Shopify's documentation relied on: the REST Order resource (the orders/paid payload:
`test`, `cancelled_at`, `customer`, `email`, `buyer_accepts_marketing`, `line_items[]`)
and the webhook delivery headers (`X-Shopify-Topic`, `X-Shopify-Webhook-Id`,
`X-Shopify-Hmac-Sha256`); README "HTTP service" cites the pages. Pure, like
`replies.py` and `feedback.py`: the web endpoint reads and answers, and
`services/shopify_webhook.py` stores.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from coupons.errors import EventError
from coupons.sms_hours import SUBDIVISION_CODE

TOPIC = "orders/paid"
"""The only `X-Shopify-Topic` taken: orders/create and orders/updated come before or
without payment."""

_E164 = re.compile(r"^\+[1-9]\d{6,14}$")


@dataclass(frozen=True)
class Ignored:
    """An order that makes no coupon, by design: acknowledged (200) and not stored."""

    reason: str


class ShopifyPayloadError(EventError):
    """The payload lacks something an `order.paid` needs; the message names the field."""


def shopify_signature_ok(secret: str, body: bytes, header: str | None) -> bool:
    if not header:
        return False
    expected = base64.b64encode(hmac.new(secret.encode("utf-8"), body, hashlib.sha256).digest())
    return hmac.compare_digest(expected, header.strip().encode("ascii", "replace"))


def _obj(value: Any) -> dict:
    return value if isinstance(value, dict) else {}


def _text(value: Any) -> str | None:
    """Shopify ids are numbers, most other fields strings; empty means absent."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        return str(int(value)) if float(value).is_integer() else str(value)
    if isinstance(value, str) and value.strip():
        return value.strip()
    return None


def _email_consent(customer: dict, payload: dict) -> bool:
    """Email marketing consent: the customer's `email_marketing_consent`, else its older
    `accepts_marketing`, else (a guest) the order's `buyer_accepts_marketing`."""
    consent = customer.get("email_marketing_consent")
    if isinstance(consent, dict):
        return consent.get("state") == "subscribed"
    if "accepts_marketing" in customer:
        return customer.get("accepts_marketing") is True
    return payload.get("buyer_accepts_marketing") is True


def _is_zero(price: Any) -> bool:
    """A line priced 0 (a free sample or gift); a price that is not a number is left to validation."""
    if isinstance(price, bool) or not isinstance(price, (str, int, float)):
        return False
    try:
        return Decimal(str(price).strip()) == 0
    except InvalidOperation:
        return False


def guest_customer_id(email: str) -> str:
    """SPEC section 6: a checkout without a customer account is known by its email only."""
    return "shopify:guest:" + hashlib.sha256(email.strip().lower().encode("utf-8")).hexdigest()[:16]


def order_paid_event(payload: Any, webhook_id: str | None) -> dict | Ignored:
    """The `order.paid` event for one Shopify order, or why it makes no coupon; raises
    ShopifyPayloadError when it cannot be mapped."""
    if not isinstance(payload, dict):
        raise ShopifyPayloadError("body", "must be a Shopify order object")
    if payload.get("test") is True:
        return Ignored("a test order (\"test\": true) makes no coupon")
    if _text(payload.get("cancelled_at")) is not None:
        return Ignored("a cancelled order (cancelled_at is set) makes no coupon")
    order_id = _text(payload.get("id"))
    if order_id is None:
        raise ShopifyPayloadError("id", "required (the Shopify order id)")
    occurred_at = _text(payload.get("processed_at")) or _text(payload.get("created_at"))
    if occurred_at is None:
        raise ShopifyPayloadError("processed_at", "required (or created_at)")
    customer = _obj(payload.get("customer"))
    customer_id = _text(customer.get("id"))
    email = _text(customer.get("email")) or _text(payload.get("email")) or _text(payload.get("contact_email"))
    if customer_id is not None:
        person_id = f"shopify:{customer_id}"
    elif email is not None:
        person_id = guest_customer_id(email)
    else:
        raise ShopifyPayloadError("email", "required for a guest checkout (no customer): the guest is known by it")
    shipping, billing = _obj(payload.get("shipping_address")), _obj(payload.get("billing_address"))
    default_address = _obj(customer.get("default_address"))
    address = next((a for a in (shipping, billing, default_address) if _text(a.get("country_code"))), None)
    if address is None:
        raise ShopifyPayloadError("shipping_address.country_code", "required (or billing_address.country_code)")
    country = _text(address.get("country_code"))

    consent = []
    if _email_consent(customer, payload):
        consent.append("email")
    if _obj(customer.get("sms_marketing_consent")).get("state") == "subscribed":
        consent.append("sms")
    name: str | None = " ".join(p for p in (_text(customer.get("first_name")), _text(customer.get("last_name")))
                                if p)
    name = name or _text(billing.get("name")) or _text(shipping.get("name"))
    person: dict[str, Any] = {"id": person_id, "country": country, "consent": consent}
    if name:
        person["name"] = name
    if email:
        person["email"] = email
    sms_phone = _text(_obj(customer.get("sms_marketing_consent")).get("phone"))
    phone = next((p for p in (_text(customer.get("phone")), sms_phone, _text(payload.get("phone")))
                  if p and _E164.match(p)), None)
    if phone:
        person["phone"] = phone
    region = _region(country, _text(address.get("province_code")))
    if region:
        person["region"] = region  # rule 17: a state's SMS hours (and, in the US, its zone)
    locale = _text(payload.get("customer_locale"))
    if locale:
        person["locale"] = locale

    currency = _text(payload.get("currency"))
    if currency is None:
        raise ShopifyPayloadError("currency", "required")
    raw_items = payload.get("line_items")
    if not isinstance(raw_items, list) or not raw_items:
        raise ShopifyPayloadError("line_items", "required, a non-empty list")
    items = []
    for index, line in enumerate(raw_items):
        line = _obj(line)
        quantity = line.get("current_quantity", line.get("quantity"))
        if isinstance(quantity, int) and not isinstance(quantity, bool) and quantity == 0:
            continue  # removed from the order after checkout
        if _is_zero(line.get("price")):
            continue  # a free line: left out, the order's other lines still count
        sku = _text(line.get("sku")) or (f"variant:{_text(line.get('variant_id'))}" if _text(line.get("variant_id"))
                                         else None) or (f"product:{_text(line.get('product_id'))}"
                                                        if _text(line.get("product_id")) else None)
        if sku is None:
            raise ShopifyPayloadError(f"line_items[{index}].sku", "required (or variant_id)")
        items.append({"sku": sku, "name": _text(line.get("title")) or _text(line.get("name")) or sku,
                      "unit_price": line.get("price"), "quantity": quantity})
    if not items:
        return Ignored("no paid line (every line is free or was removed) makes no coupon")
    discounts = payload.get("discount_codes")
    discounts = discounts if isinstance(discounts, list) else []
    codes = [code for code in (_text(_obj(d).get("code")) for d in discounts) if code]
    data: dict[str, Any] = {"order_id": f"shopify:{order_id}", "currency": currency, "customer": person,
                            "items": items}
    if codes:
        data["discount_codes"] = codes
    if _text(payload.get("total_price")):
        data["total_price"] = payload["total_price"]  # what the customer paid: a redemption's revenue
    event_id = f"shopify:{webhook_id.strip()}" if webhook_id and webhook_id.strip() else f"shopify:order:{order_id}"
    return {"id": event_id[:128], "type": "order.paid", "occurred_at": occurred_at, "data": data}


def _region(country: str | None, province_code: str | None) -> str | None:
    """The ISO 3166-2 code of the address's province (`province_code` "FL" in the US is
    `US-FL`), from the same address as the country; None when there is none or it is
    not a code (a free-text province is left out rather than refusing the order)."""
    if not country or not province_code:
        return None
    code = province_code.strip().upper()
    code = code if code.startswith(f"{country.upper()}-") else f"{country.upper()}-{code}"
    return code if SUBDIVISION_CODE.fullmatch(code) else None
