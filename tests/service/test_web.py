"""`encore serve` in-process (Starlette's TestClient) on real SQLite and PostgreSQL, with
events applied as the intake task would apply them and the fake clock."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, replace

import pytest
from sqlalchemy import func, select

from services.ports import APPLY_EVENTS
from store.models import Coupon, DeadLetter, InboxEvent
from tests.support import (
    SHOPIFY_SECRET,
    WEBHOOK_SECRET,
    RecordingDoorbell,
    order_paid,
    shopify_headers,
    shopify_order,
    signed_headers,
    zone_where_local_hour_is,
)

PUBLIC_URL = "https://encore.example.com"


@dataclass
class Web:
    services: object
    client: object

    def post(self, path: str, payload, *, sign: bool = True, headers: dict | None = None):
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        sent = {**(signed_headers(body) if sign else {"Content-Type": "application/json"}), **(headers or {})}
        return self.client.post(path, content=body, headers=sent)

    def count(self, model) -> int:
        with self.services.session() as session:
            return session.scalar(select(func.count()).select_from(model))

    def coupon(self):
        with self.services.session() as session:
            return session.scalars(select(Coupon)).all()


class IntakeAnsweredAtOnce(RecordingDoorbell):
    """Records rings, and answers intake's at once, as the intake and plan workers would."""

    def __init__(self, services) -> None:
        super().__init__()
        self.services = services

    def ring(self, task: str, *args) -> None:
        super().ring(task, *args)
        if task == APPLY_EVENTS:
            self.services.answer_intake()


@pytest.fixture()
def make_web(make_services):
    from fastapi.testclient import TestClient

    from web.app import create_app

    def make(**env: str) -> Web:
        settings = {"ENCORE_WEBHOOK_SECRET": WEBHOOK_SECRET, "ENCORE_SHOPIFY_SECRET": SHOPIFY_SECRET,
                    "ENCORE_PUBLIC_URL": PUBLIC_URL, **env}
        services = make_services(**settings)
        services.runtime = replace(services.runtime, doorbell=IntakeAnsweredAtOnce(services))
        client = TestClient(create_app(services.runtime))
        return Web(services, client)

    return make


@pytest.fixture()
def web(make_web) -> Web:
    return make_web()


def daytime_order(event_id: str, services, **kwargs) -> dict:
    return order_paid(event_id, occurred_at=services.clock(), timezone="UTC", **kwargs)


# ---------------------------------------------------------------------------- /events


def test_a_signed_event_is_stored_and_applied(web):
    response = web.post("/events", daytime_order("e1", web.services))
    assert response.status_code == 202
    assert response.json() == {"accepted": ["e1"], "rejected": []}
    assert [d["customer_id"] for d in web.services.deliveries()] == ["c1"]


@pytest.mark.parametrize("how", ["unsigned", "tampered", "other key", "bare hex"])
def test_a_bad_signature_is_refused_and_nothing_is_stored(web, how):
    event = daytime_order("e1", web.services)
    body = json.dumps(event).encode()
    headers = {"Content-Type": "application/json"}
    if how == "tampered":
        headers = signed_headers(body)
        body = body.replace(b'"20.00"', b'"0.01"')
    elif how == "other key":
        headers = signed_headers(body, secret="not-the-secret")
    elif how == "bare hex":
        headers = {"X-Encore-Signature": signed_headers(body)["X-Encore-Signature"].removeprefix("sha256=")}
    response = web.client.post("/events", content=body, headers=headers)
    assert response.status_code == 401
    assert "X-Encore-Signature" in response.json()["error"]
    assert web.count(InboxEvent) == 0 and web.count(DeadLetter) == 0


def test_a_mixed_batch_keeps_the_valid_events_and_names_each_bad_one(web):
    bad = daytime_order("bad", web.services, customer_id="c2")
    bad["data"]["items"][0]["unit_price"] = "0"
    batch = [daytime_order("ok-1", web.services, customer_id="c1"), bad, "not an event",
             daytime_order("ok-2", web.services, customer_id="c3")]
    response = web.post("/events", batch)
    assert response.status_code == 400
    assert response.json()["accepted"] == ["ok-1", "ok-2"]
    assert response.json()["rejected"] == [
        {"index": 1, "error": "data.items[0].unit_price: must be > 0"},
        {"index": 2, "error": "an event must be a JSON object"},
    ]
    assert sorted(d["customer_id"] for d in web.services.deliveries()) == ["c1", "c3"]
    assert web.count(DeadLetter) == 2


def test_a_body_that_is_not_json_is_400_naming_the_problem_and_kept_as_a_dead_letter(web):
    response = web.post("/events", b'{"id": "e1", "type": ')
    assert response.status_code == 400
    assert response.json()["rejected"][0]["error"].startswith("not valid JSON")
    assert web.post("/events", b"42").json()["error"] == "an event must be a JSON object"
    assert web.post("/events", b'{"id": "\xff"}').json()["error"].startswith("not valid UTF-8")
    # An array whose elements cannot be told apart is kept whole
    assert web.post("/events", b'[{"id": "e2"},').json()["error"].startswith("not valid JSON")
    assert web.post("/events", b"").json()["error"].startswith("body: empty")
    assert web.count(InboxEvent) == 0
    with web.services.session() as session:
        letters = session.scalars(select(DeadLetter).order_by(DeadLetter.id)).all()
    assert [(d.source, d.raw) for d in letters] == [
        ("emit:http:0", '{"id": "e1", "type": '), ("emit:http:0", "42"), ("emit:http:0", '{"id": "\\xff"}'),
        ("http", '[{"id": "e2"},'), ("http", "")]


def test_a_body_over_1_mib_is_413_and_nothing_is_stored(web):
    event = daytime_order("big", web.services)
    event["padding"] = "x" * (1024 * 1024)
    response = web.post("/events", event)
    assert response.status_code == 413
    # Without a Content-Length (chunked), the limit holds while reading.
    body = json.dumps(event).encode()
    chunks = (body[i:i + 65536] for i in range(0, len(body), 65536))
    response = web.client.post("/events", content=chunks, headers=signed_headers(body))
    assert response.status_code == 413
    assert web.count(InboxEvent) == 0


def test_one_event_with_a_5000_digit_quantity_loses_only_itself(web):
    # Given three orders where the middle one's quantity has 5,000 digits
    good = [json.dumps(daytime_order(f"ok-{n}", web.services, customer_id=f"c{n}")).encode() for n in (0, 2)]
    huge = json.dumps(daytime_order("huge", web.services, customer_id="c1")).encode().replace(
        b'"quantity": 1', b'"quantity": ' + b"9" * 5000)
    # When they arrive in one signed array
    response = web.post("/events", b"[" + b", ".join([good[0], huge, good[1]]) + b"]")
    # Then only that one is refused, naming the field, and the other two are stored and planned
    assert response.status_code == 400, response.text
    assert response.json() == {"accepted": ["ok-0", "ok-2"], "rejected": [
        {"index": 1, "error": "data.items[0].quantity: must be at most 1,000,000,000"}]}
    assert sorted(d["customer_id"] for d in web.services.deliveries()) == ["c0", "c2"]
    with web.services.session() as session:
        [letter] = session.scalars(select(DeadLetter)).all()
    assert letter.raw == huge.decode()


def test_the_dead_letter_keeps_the_element_as_sent_duplicate_keys_and_all(web):
    # An element with its id twice: decoding keeps the last, so a re-encoded copy would lose the first
    element = (b'{"id": "first-id", "id": "second-id", "type": "order.paid", "occurred_at": "2026-03-10T12:00:00Z",'
               b' "data": {"order_id": "o-1"}}')
    ok = json.dumps(daytime_order("ok", web.services)).encode()
    body = b'[\n  ' + ok + b',\n  ' + element + b'\n]'
    response = web.post("/events", body)
    assert response.json()["rejected"] == [{"index": 1, "error": "data.currency: required"}]
    with web.services.session() as session:
        [letter] = session.scalars(select(DeadLetter)).all()
        stored = session.get(InboxEvent, "ok")
    assert letter.raw == element.decode()  # byte for byte, the first "id" included
    assert stored.payload == ok.decode()  # accepted events are stored as sent too


def test_a_bad_line_gets_the_same_reason_from_emit_and_from_http(web):
    now = web.services.clock()
    surrogate = json.dumps(daytime_order("s", web.services, customer_id="c1", name="Ann \ud800"))
    lines = [
        json.dumps(daytime_order("q", web.services)).replace('"quantity": 1', '"quantity": ' + "9" * 5000),
        surrogate,
        json.dumps(daytime_order("n", web.services)).replace('"20.00"', "NaN"),
        json.dumps(daytime_order("i", web.services)).replace('"20.00"', "1e999"),
        "[" * 100_000 + "]" * 100_000,
        "\ufeff" + json.dumps(daytime_order("b", web.services)),
        '{"id": "p", "type": "order.paid", "occurred_at": "' + now.strftime("%Y-%m-%dT%H:%M:%SZ") + '"}',
    ]
    via_emit = [reason for _, reason in web.services.emit(*["\n"] + lines)]  # a blank first line: no BOM rule
    body = ("[" + ",".join(lines) + "]").encode()
    via_http = web.post("/events", body).json()["rejected"]
    assert [r["index"] for r in via_http] == list(range(len(lines)))
    assert [r["error"] for r in via_http] == via_emit
    assert via_emit[0] == "data.items[0].quantity: must be at most 1,000,000,000"
    assert via_emit[4] == "not valid JSON (nested too deeply)"
    assert via_emit[5].startswith("not valid JSON (Unexpected UTF-8 BOM")


def test_good_siblings_are_kept_around_every_kind_of_bad_element(web):
    good = [json.dumps(daytime_order(f"ok-{n}", web.services, customer_id=f"c{n}")).encode() for n in range(3)]
    bad = [b"[" * 100_000 + b"]" * 100_000,  # nesting no decoder follows
           json.dumps(daytime_order("x1", web.services)).encode().replace(b'"20.00"', b"NaN"),
           json.dumps(daytime_order("x2", web.services)).encode().replace(b'"20.00"', b"1e999"),
           json.dumps(daytime_order("x3", web.services)).encode().replace(b'"Ann"', b'"\\udc00"'),
           b"\xef\xbb\xbf" + json.dumps(daytime_order("x4", web.services)).encode(),
           json.dumps(daytime_order("x5", web.services)).encode().replace(b"Ann", b"A\xffn"),
           b'{"id": "x6", "type": ]']
    elements = [good[0], *bad[:4], good[1], *bad[4:], good[2]]
    response = web.post("/events", b"[" + b",".join(elements) + b"]")
    assert response.status_code == 400
    assert response.json()["accepted"] == ["ok-0", "ok-1", "ok-2"]
    assert [r["index"] for r in response.json()["rejected"]] == [1, 2, 3, 4, 6, 7, 8]
    assert web.count(DeadLetter) == len(bad)
    assert sorted(d["customer_id"] for d in web.services.deliveries()) == ["c0", "c1", "c2"]


def test_an_order_paid_with_an_encore_code_in_discount_codes_redeems_it(web):
    web.post("/events", daytime_order("e1", web.services, customer_id="c1"))
    [coupon] = web.coupon()
    later = daytime_order("e2", web.services, customer_id="c1", order_id="o-2")
    later["data"]["discount_codes"] = ["SHOP-WIDE-10", coupon.code.lower()]
    assert web.post("/events", later).status_code == 202
    [row] = [d for d in web.services.deliveries() if d["code"] == coupon.code]
    assert row["redeemed_at"] is not None


# --------------------------------------------------------------------------- Shopify


def test_a_shopify_order_becomes_one_coupon_however_often_shopify_sends_it(web):
    payload = shopify_order(processed_at=web.services.clock(), country="BR", locale="pt-BR", sms_consent="subscribed",
                            phone="+5511987654321")
    body = json.dumps(payload).encode()
    for _ in range(2):  # Shopify retries with the same webhook id
        response = web.client.post("/webhooks/shopify/orders-paid", content=body,
                                   headers=shopify_headers(body, "b54557e4-bdd9-4b37-8a5f-bf7d70bcd043"))
        assert response.status_code == 200, response.text
    [row] = web.services.deliveries()
    assert row["customer_id"] == "shopify:115310627314723954"
    assert row["offer"] == {"type": "percent_off", "sku": "IPOD2008BLACK", "currency": "USD", "percent": "20"}
    with web.services.session() as session:
        from store.models import Customer

        customer = session.get(Customer, "shopify:115310627314723954")
        assert (customer.name, customer.country, customer.locale, customer.email, customer.phone) == (
            "John Smith", "BR", "pt-BR", "john@example.com", "+5511987654321")
        assert sorted(customer.consent) == ["email", "sms"]


def test_a_shopify_webhook_with_a_wrong_hmac_or_no_secret_is_401(make_web):
    web = make_web()
    body = json.dumps(shopify_order(processed_at=web.services.clock())).encode()
    headers = shopify_headers(body, "w1", secret="someone-else")
    assert web.client.post("/webhooks/shopify/orders-paid", content=body, headers=headers).status_code == 401
    unset = make_web(ENCORE_SHOPIFY_SECRET=None)
    response = unset.client.post("/webhooks/shopify/orders-paid", content=body, headers=shopify_headers(body, "w1"))
    assert response.status_code == 401 and "ENCORE_SHOPIFY_SECRET" in response.json()["error"]
    assert web.count(InboxEvent) == 0


def test_a_shopify_order_without_any_address_country_is_400_and_dead_lettered_once(web):
    payload = shopify_order(processed_at=web.services.clock(), shipping=False)
    payload["billing_address"] = None
    payload["customer"]["default_address"] = None
    body = json.dumps(payload).encode()
    # Shopify retries a failed webhook, unchanged and under the same id: each retry is refused again
    for _ in range(3):
        response = web.client.post("/webhooks/shopify/orders-paid", content=body, headers=shopify_headers(body, "w2"))
        assert response.status_code == 400
        assert response.json()["error"].startswith("shipping_address.country_code: required")
    # but the operator finds one dead letter, with Shopify's bytes, not one per retry
    with web.services.session() as session:
        [letter] = session.scalars(select(DeadLetter)).all()
    assert (letter.source, letter.raw) == ("shopify:w2", body.decode())


def test_shipping_country_wins_over_billing_and_billing_is_the_fallback(web):
    payload = shopify_order(processed_at=web.services.clock(), shipping=False, country="DE", customer_id=7)
    body = json.dumps(payload).encode()
    assert web.client.post("/webhooks/shopify/orders-paid", content=body,
                           headers=shopify_headers(body, "w3")).status_code == 200
    [row] = web.services.deliveries()
    assert row["offer"]["percent"] == "15"  # europe, from the billing address


def test_a_later_shopify_order_carrying_the_code_redeems_the_coupon(web):
    first = json.dumps(shopify_order(1, processed_at=web.services.clock())).encode()
    web.client.post("/webhooks/shopify/orders-paid", content=first, headers=shopify_headers(first, "w-1"))
    [coupon] = web.coupon()
    web.services.clock.advance(days=2)
    second = json.dumps(shopify_order(2, processed_at=web.services.clock(), discount_codes=[coupon.code])).encode()
    assert web.client.post("/webhooks/shopify/orders-paid", content=second,
                           headers=shopify_headers(second, "w-2")).status_code == 200
    redeemed = [c for c in web.coupon() if c.code == coupon.code][0]
    assert redeemed.redeemed_at is not None and redeemed.redeemed_order_id == "shopify:2"


def post_shopify(web, payload: dict, webhook_id: str, **headers: str):
    body = json.dumps(payload).encode()
    return web.client.post("/webhooks/shopify/orders-paid", content=body,
                           headers={**shopify_headers(body, webhook_id), **headers})


def test_a_paid_order_with_a_free_sample_makes_a_coupon_from_the_paid_line(web):
    lines = [{"sku": "SAMPLE", "title": "Free sample", "price": "0.00", "quantity": 2},
             {"sku": "SERUM", "title": "Serum", "price": "40.00", "quantity": 1}]
    response = post_shopify(web, shopify_order(processed_at=web.services.clock(), line_items=lines), "w-free")
    assert response.status_code == 200, response.text
    [row] = web.services.deliveries()
    assert row["offer"]["sku"] == "SERUM"  # not second_half_price on the sample bought twice


@pytest.mark.parametrize("change", [
    lambda p: p.update(test=True),
    lambda p: p.update(cancelled_at="2026-03-10T11:00:00-05:00", cancel_reason="customer"),
    lambda p: p.update(line_items=[{"sku": "SAMPLE", "title": "Sample", "price": "0.00", "quantity": 1}]),
], ids=["test order", "cancelled", "only free lines"])
def test_orders_that_make_no_coupon_are_acknowledged_and_store_nothing(web, change):
    payload = shopify_order(processed_at=web.services.clock())
    change(payload)
    response = post_shopify(web, payload, "w-none")
    # 200, so Shopify does not retry it; the answer says why nothing was made
    assert response.status_code == 200 and response.json()["accepted"] == [] and response.json()["ignored"]
    assert (web.count(InboxEvent), web.count(DeadLetter), web.coupon()) == (0, 0, [])


def test_only_the_orders_paid_topic_is_taken(web):
    payload = shopify_order(processed_at=web.services.clock())
    for topic in ("orders/create", "orders/updated", ""):
        response = post_shopify(web, payload, f"w-{topic}", **{"X-Shopify-Topic": topic})
        assert response.status_code == 400 and response.json()["error"].startswith("X-Shopify-Topic:")
    assert (web.count(InboxEvent), web.count(DeadLetter), web.coupon()) == (0, 0, [])


def test_a_guest_checkout_gets_its_coupon_as_the_customer_its_email_names(web):
    import hashlib

    payload = shopify_order(processed_at=web.services.clock(), email="Guest.Buyer@Example.com")
    payload["customer"] = None
    payload["buyer_accepts_marketing"] = True
    for _ in range(2):  # and a retry is the same event
        assert post_shopify(web, payload, "w-guest").status_code == 200
    [row] = web.services.deliveries()
    assert row["customer_id"] == "shopify:guest:" + hashlib.sha256(b"guest.buyer@example.com").hexdigest()[:16]
    web.services.relay_and_send()
    assert web.services.smtp.count == 1


def test_a_guest_checkout_without_an_email_is_one_dead_letter_however_often_it_is_retried(web):
    payload = shopify_order(processed_at=web.services.clock(), email=None)
    payload["customer"] = None
    for _ in range(3):
        response = post_shopify(web, payload, "w-anonymous")
        assert response.status_code == 400 and response.json()["error"].startswith("email: required")
    with web.services.session() as session:
        [letter] = session.scalars(select(DeadLetter)).all()
    assert letter.source == "shopify:w-anonymous"
    # a different webhook (another order) is another letter
    payload["id"] += 1
    post_shopify(web, payload, "w-anonymous-2")
    assert web.count(DeadLetter) == 2


# ------------------------------------------------------------------------ redemption


def test_redemption_answers_200_then_409_404_and_410_after_expiry(web):
    web.post("/events", daytime_order("e1", web.services, customer_id="c1"))
    web.post("/events", daytime_order("e2", web.services, customer_id="c2"))
    first, second = web.coupon()
    ok = web.post(f"/coupons/{first.code.lower()}/redeem", {"code": first.code, "order_id": "o-9"})
    assert ok.status_code == 200 and ok.json()["status"] == "redeemed"
    again = web.post(f"/coupons/{first.code}/redeem", {"code": first.code.lower(), "order_id": "o-10"})
    assert again.status_code == 409 and again.json()["reason"] == "already redeemed"
    assert web.post("/coupons/NOSUCHCODE2345/redeem", {"code": "NOSUCHCODE2345", "order_id": "o-9"}).status_code \
        == 404
    web.services.clock.advance(days=8)  # US coupons are valid 7 days
    late = web.post(f"/coupons/{second.code}/redeem", {"code": second.code, "order_id": "o-11"})
    assert late.status_code == 410 and late.json()["status"] == "expired"


def test_redemption_is_signed_and_needs_an_order_id(web):
    web.post("/events", daytime_order("e1", web.services))
    [coupon] = web.coupon()
    assert web.post(f"/coupons/{coupon.code}/redeem", {"code": coupon.code, "order_id": "o"},
                    sign=False).status_code == 401
    missing = web.post(f"/coupons/{coupon.code}/redeem", {"code": coupon.code, "order": "o"})
    assert missing.status_code == 400 and missing.json()["error"].startswith("order_id:")
    assert web.coupon()[0].redeemed_at is None


def test_a_captured_redemption_redeems_no_other_code(web):
    web.post("/events", daytime_order("e1", web.services, customer_id="c1"))
    web.post("/events", daytime_order("e2", web.services, customer_id="c2"))
    first, second = web.coupon()
    # Given a signed redemption of the first code, captured on the wire
    body = json.dumps({"code": first.code, "order_id": "o-1"}).encode()
    headers = signed_headers(body)
    # When it is replayed against the second code's URL
    replayed = web.client.post(f"/coupons/{second.code}/redeem", content=body, headers=headers)
    # Then it is refused and neither code changes
    assert replayed.status_code == 400 and replayed.json()["error"].startswith("code: must be the code in the path")
    assert all(c.redeemed_at is None for c in web.coupon())
    # A body without the code is refused too
    assert web.post(f"/coupons/{second.code}/redeem", {"order_id": "o-2"}).json()["error"].startswith("code:")
    # While the code may be written as a customer types it, in the path and in the body
    typed = first.code.replace("-", "").lower()
    assert web.post(f"/coupons/{typed}/redeem", {"code": first.code.lower(), "order_id": "o-1"}).status_code == 200
    assert [c.code for c in web.coupon() if c.redeemed_at is not None] == [first.code]


# ----------------------------------------------------------------------- unsubscribe


def test_coupon_emails_carry_one_click_unsubscribe_headers_that_work(web):
    web.post("/events", daytime_order("e1", web.services, customer_id="c1"))
    web.services.relay_and_send()
    [email] = web.services.smtp.messages
    assert email["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    url = re.fullmatch(r"<(.+)>", "".join(email["List-Unsubscribe"].split())).group(1)  # unfolded
    assert url.startswith(PUBLIC_URL + "/unsubscribe/")
    path = url.removeprefix(PUBLIC_URL)
    # A mailbox provider POSTs exactly this (RFC 8058), without any signature.
    response = web.client.post(path, content=b"List-Unsubscribe=One-Click",
                               headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert response.status_code == 200
    assert "Unsubscribe" in response.text
    with web.services.session() as session:
        from store.models import Customer

        assert session.get(Customer, "c1").opted_out == ["email"]


def test_without_public_url_no_unsubscribe_header_is_sent(make_web):
    web = make_web(ENCORE_PUBLIC_URL=None)
    web.post("/events", daytime_order("e1", web.services))
    web.services.relay_and_send()
    assert "List-Unsubscribe" not in web.services.smtp.messages[0]


def test_unsubscribe_stops_an_already_scheduled_delivery(web):
    from coupons.unsubscribe import mint_token

    # Given a delivery waiting for the end of the customer's quiet hours
    night = zone_where_local_hour_is(23, web.services.clock())
    web.post("/events", order_paid("e1", customer_id="c1", occurred_at=web.services.clock(), timezone=night))
    assert [d["state"] for d in web.services.deliveries()] == ["scheduled"]
    # When the customer unsubscribes from email
    token = mint_token(WEBHOOK_SECRET, "c1", "email")
    assert web.client.post(f"/unsubscribe/{token}").status_code == 200
    # Then, when it comes due, it is suppressed, not sent
    web.services.clock.advance(hours=12)
    web.services.relay_and_send()
    assert web.services.smtp.count == 0
    [row] = web.services.deliveries()
    assert (row["state"], row["reason"]) == ("suppressed", "no_channel")


def test_the_unsubscribe_page_speaks_the_customers_language_and_changes_nothing(web):
    from coupons.unsubscribe import mint_token

    web.post("/events", daytime_order("e1", web.services, customer_id="c1", country="BR", currency="BRL",
                                      locale="pt-BR"))
    page = web.client.get(f"/unsubscribe/{mint_token(WEBHOOK_SECRET, 'c1', 'email')}")
    assert page.status_code == 200
    assert 'lang="pt"' in page.text and "Parar de receber ofertas por email?" in page.text
    assert '<form method="post">' in page.text
    with web.services.session() as session:
        from store.models import Customer

        assert session.get(Customer, "c1").opted_out == []


def test_an_altered_token_is_refused_and_changes_nothing(web):
    from coupons.unsubscribe import mint_token

    web.post("/events", daytime_order("e1", web.services, customer_id="c1"))
    token = mint_token(WEBHOOK_SECRET, "c2", "email")
    payload, mac = token.split(".")
    forged = mint_token("guess", "c1", "email")
    for bad in (forged, f"{mint_token(WEBHOOK_SECRET, 'c1', 'email').split('.')[0]}.{mac}", "x", "a.b.c"):
        assert web.client.post(f"/unsubscribe/{bad}").status_code == 404
    with web.services.session() as session:
        from store.models import Customer

        assert session.get(Customer, "c1").opted_out == []


def test_sms_messages_end_with_a_localized_opt_out_line(web):
    web.post("/events", daytime_order("e1", web.services, customer_id="c1", country="BR", currency="BRL",
                                      consent=["sms"], phone="+5511987654321", locale="pt-BR"))
    web.services.clock.advance(hours=6)  # past quiet hours in São Paulo, if any
    web.services.relay_and_send()
    [request] = web.services.http.requests
    text = request.json["message"]
    assert re.search(r"Cancelar inscrição: https://encore\.example\.com/unsubscribe/\S+$", text), text


# ------------------------------------------------------------- health, metrics, dashboard


def test_healthz_is_200_when_database_and_broker_answer(make_web, tmp_path):
    web = make_web(ENCORE_BROKER_URL=f"sqla+sqlite:///{tmp_path / 'broker.db'}")
    response = web.client.get("/healthz")
    assert response.status_code == 200 and response.json() == {"database": "ok", "broker": "ok"}


def test_healthz_is_503_naming_the_broker_when_it_does_not_answer(make_web):
    web = make_web(ENCORE_BROKER_URL="redis://127.0.0.1:1/0")
    response = web.client.get("/healthz")
    assert response.status_code == 503
    assert response.json()["database"] == "ok" and response.json()["broker"].startswith("error")


def test_metrics_are_read_from_the_database(web):
    web.post("/events", [daytime_order("e1", web.services, customer_id="c1"),
                         daytime_order("e2", web.services, customer_id="c2", consent=[])])
    web.post("/events", [{"id": "bad"}])
    web.services.clock.advance(seconds=30)
    web.services.relay_and_send()
    text = web.client.get("/metrics").text
    assert 'encore_events_total{outcome="applied",type="order.paid"} 2.0' in text
    assert 'encore_events_total{outcome="rejected",type="unknown"} 1.0' in text
    assert 'encore_deliveries{channel="email",state="sent"} 1.0' in text
    assert 'encore_deliveries{channel="none",state="suppressed"} 1.0' in text
    assert "encore_send_latency_seconds_count 1.0" in text
    assert 'encore_send_latency_seconds_bucket{le="15"} 0.0' in text  # sent 30 s after due
    assert 'encore_send_latency_seconds_bucket{le="60"} 1.0' in text
    assert "encore_on_time_rate 1.0" in text
    assert "encore_due_backlog 0.0" in text


def test_metrics_show_the_due_backlog_and_its_oldest_age(web):
    web.post("/events", daytime_order("e1", web.services, customer_id="c1"))
    web.services.clock.advance(minutes=5)
    text = web.client.get("/metrics").text
    assert "encore_due_backlog 1.0" in text
    assert "encore_oldest_due_age_seconds 300.0" in text


def test_the_dashboard_draws_every_chart_from_the_data(web):
    web.post("/events", [daytime_order("e1", web.services, customer_id="c1"),
                         daytime_order("e2", web.services, customer_id="c2", country="DE", currency="EUR"),
                         daytime_order("e3", web.services, customer_id="c3", consent=[])])
    web.services.relay_and_send()
    code = web.coupon()[0].code
    web.post(f"/coupons/{code}/redeem", {"code": code, "order_id": "o-1"})
    page = web.client.get("/")
    assert page.status_code == 200
    charts = dict(re.findall(r'data-chart="([\w-]+)" data-points="(\d+)"', page.text))
    assert set(charts) == {"funnel-market", "funnel-stream", "rate-offer", "rate-market", "over-time", "problems"}
    assert all(int(n) > 0 for name, n in charts.items() if name != "funnel-stream")
    assert "no channel" in page.text and "North America" in page.text and "<script" not in page.text


# ------------------------------------------------------------------------- openapi


def test_openapi_describes_every_route_with_its_status_codes(web):
    from fastapi.routing import APIRoute, iter_route_contexts

    schema = web.client.get("/openapi.json").json()
    # Since FastAPI 0.137 `app.routes` holds one node per included router: flattened here
    routes = [r for r in iter_route_contexts(web.client.app.routes) if isinstance(r.original_route, APIRoute)]
    assert {r.path for r in routes} == set(schema["paths"]) == {
        "/events", "/webhooks/shopify/orders-paid", "/coupons/{code}/redeem", "/unsubscribe/{token}", "/healthz",
        "/metrics", "/", "/webhooks/sms/inbound", "/webhooks/email/feedback", "/streams/{shop}/{stream}"}
    expected = {("/events", "post"): {"202", "400", "401", "413"},
                ("/webhooks/sms/inbound", "post"): {"200", "400", "401", "413"},
                ("/webhooks/email/feedback", "post"): {"200", "400", "401", "413"},
                ("/webhooks/shopify/orders-paid", "post"): {"200", "400", "401", "413"},
                ("/coupons/{code}/redeem", "post"): {"200", "400", "401", "404", "409", "410", "413"},
                ("/unsubscribe/{token}", "post"): {"200", "404", "413"},
                ("/unsubscribe/{token}", "get"): {"200", "404"},
                ("/healthz", "get"): {"200", "503"}, ("/metrics", "get"): {"200"}, ("/", "get"): {"200", "400"},
                ("/streams/{shop}/{stream}", "get"): {"200", "404"}}
    for route in routes:
        for method in route.methods:
            documented = set(schema["paths"][route.path][method.lower()]["responses"])
            assert expected[(route.path, method.lower())] <= documented, (route.path, method)
    signed = [(p, m) for (p, m) in expected if m == "post" and not p.startswith(("/unsubscribe", "/webhooks"))]
    for path, method in signed:
        names = [p["name"] for p in schema["paths"][path][method].get("parameters", [])]
        assert "X-Encore-Signature" in names


def test_every_route_described_as_signed_refuses_an_unsigned_or_tampered_body(web):
    """A route added later that says it is signed but forgets to check would take anyone's
    request: whatever the OpenAPI calls signed must answer 401 and store nothing."""
    schema = web.client.get("/openapi.json").json()
    signed = [(path, method) for path, operations in schema["paths"].items() for method, operation in operations.items()
              if "X-Encore-Signature" in [p["name"] for p in operation.get("parameters", [])]]
    assert {path for path, _ in signed} >= {"/events", "/coupons/{code}/redeem"}
    body = json.dumps({"code": "ABCDE-FGHJK-MNPQR", "order_id": "o-1"}).encode()
    for path, method in signed:
        url = path.replace("{code}", "ABCDE-FGHJK-MNPQR")
        for headers in ({"Content-Type": "application/json"}, signed_headers(body + b" ")):
            response = web.client.request(method.upper(), url, content=body, headers=headers)
            assert (response.status_code, response.json()) == (
                401, {"error": "X-Encore-Signature: missing or wrong signature"}), (path, headers)
    assert web.count(InboxEvent) == 0 and web.count(DeadLetter) == 0


def test_settings_refuse_a_public_url_without_the_webhook_secret():
    from config.settings import SettingsError, load_settings

    with pytest.raises(SettingsError, match="ENCORE_WEBHOOK_SECRET"):
        load_settings({"ENCORE_PUBLIC_URL": "https://encore.example.com"})
    assert load_settings({"ENCORE_PUBLIC_URL": "https://e.example.com/", "ENCORE_WEBHOOK_SECRET": WEBHOOK_SECRET}
                         ).public_url == "https://e.example.com"


@pytest.mark.parametrize("secret", [" ", "x", " " * 20, "short-secret-15", " 15-chars-secret "])
def test_settings_refuse_a_webhook_secret_under_16_characters_or_made_of_blanks(secret):
    from config.settings import SettingsError, load_settings

    with pytest.raises(SettingsError, match="ENCORE_WEBHOOK_SECRET: must be at least 16 characters"):
        load_settings({"ENCORE_WEBHOOK_SECRET": secret})
    assert load_settings({"ENCORE_WEBHOOK_SECRET": "sixteen-chars-16"}).webhook_secret == "sixteen-chars-16"


def test_expired_coupon_after_clock_moves_is_not_redeemed_via_order(web):
    web.post("/events", daytime_order("e1", web.services, customer_id="c1"))
    [coupon] = web.coupon()
    web.services.clock.advance(days=8)
    later = daytime_order("e2", web.services, customer_id="c1", order_id="o-2")
    later["data"]["discount_codes"] = [coupon.code]
    assert web.post("/events", later).status_code == 202
    assert [c for c in web.coupon() if c.code == coupon.code][0].redeemed_at is None





def test_a_broker_that_does_not_answer_still_gets_202_and_the_event_stays_stored(make_services):
    from fastapi.testclient import TestClient

    from web.app import create_app

    class BrokerDown(RecordingDoorbell):
        def ring(self, task: str, *args) -> None:
            raise ConnectionRefusedError("broker down")

    services = make_services(ENCORE_WEBHOOK_SECRET=WEBHOOK_SECRET)
    client = TestClient(create_app(replace(services.runtime, doorbell=BrokerDown())))
    body = json.dumps(daytime_order("e1", services)).encode()
    response = client.post("/events", content=body, headers=signed_headers(body))
    assert (response.status_code, response.json()["accepted"]) == (202, ["e1"])
    with services.session() as session:
        [stored] = session.scalars(select(InboxEvent)).all()
    assert stored.id == "e1" and stored.processed_at is None  # the relay re-enqueues it


def test_emails_sent_through_apprise_carry_the_unsubscribe_headers_too(sinks):
    """Email providers other than SMTP go through Apprise; its email plugins take custom headers."""
    from channels.adapter import _AppriseSender
    from coupons.messages import unsubscribe_headers
    from coupons.model import Message

    smtp, _ = sinks
    url = f"{PUBLIC_URL}/unsubscribe/token"
    sender = _AppriseSender("email", f"mailto://127.0.0.1:{smtp.port}?from=shop@example.com&to={{email}}")
    result = sender.send("ann@example.com", Message(text="hi", subject="Offer", html="<p>hi</p>",
                                                    headers=unsubscribe_headers(url)))
    assert result.ok, result
    [email] = smtp.messages
    assert "".join(email["List-Unsubscribe"].split()) == f"<{url}>"
    assert email["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


def test_an_unsubscribe_within_the_same_second_as_the_order_still_wins(web):
    """Consent is ordered by time: the opt-out must keep its sub-second time, or an order
    placed earlier in the same second would look newer and consent again."""
    from coupons.unsubscribe import mint_token
    from store.models import Customer

    web.services.clock.advance(seconds=0.5)
    night = zone_where_local_hour_is(23, web.services.clock())
    web.post("/events", order_paid("e1", customer_id="c1", occurred_at=web.services.clock(), timezone=night))
    web.services.clock.advance(seconds=0.2)
    assert web.client.post(f"/unsubscribe/{mint_token(WEBHOOK_SECRET, 'c1', 'email')}").status_code == 200
    with web.services.session() as session:
        assert "email" in session.get(Customer, "c1").opted_out


def test_discount_codes_redeem_within_a_batch_of_orders_applied_together(web):
    web.post("/events", daytime_order("e1", web.services, customer_id="c1"))
    [coupon] = web.coupon()
    web.services.clock.advance(days=1)
    second = daytime_order("e3", web.services, customer_id="c1", order_id="o-3")
    second["data"]["discount_codes"] = [coupon.code]
    assert web.post("/events", [daytime_order("e2", web.services, customer_id="c2"), second]).status_code == 202
    redeemed = [c for c in web.coupon() if c.code == coupon.code][0]
    assert (redeemed.redeemed_at is not None, redeemed.redeemed_order_id) == (True, "o-3")
