"""Rule 18 over HTTP, in-process on real SQLite and PostgreSQL: Twilio's inbound message
webhook (STOP, START, HELP) and email bounces and complaints."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from urllib.parse import urlencode

import pytest
from sqlalchemy import select

from store.models import Customer, EmailSuppression
from tests.service import test_web as web_tier
from tests.support import order_paid

PUBLIC_URL = web_tier.PUBLIC_URL
make_web = web_tier.make_web  # the web tier's fixture: Encore's app over the service tier

TWILIO_TOKEN = "12345678901234567890123456789012"


@pytest.fixture()
def site(make_web):
    return make_web(ENCORE_TWILIO_AUTH_TOKEN=TWILIO_TOKEN)


@pytest.fixture()
def untokened(make_web):
    return make_web()


INBOUND = "/webhooks/sms/inbound"
SHARED_PHONE = "+13055550100"


def twilio_request(params: dict[str, str], token: str = TWILIO_TOKEN, url: str = PUBLIC_URL + INBOUND):
    """The body and headers Twilio sends: a form, signed with HMAC-SHA1 (key: the auth
    token) over the URL it called followed by each parameter's name and value, sorted by
    name, base64 (https://www.twilio.com/docs/usage/webhooks/webhooks-security)."""
    data = url + "".join(name + params[name] for name in sorted(params))
    signature = base64.b64encode(hmac.new(token.encode(), data.encode(), hashlib.sha1).digest()).decode()
    headers = {"Content-Type": "application/x-www-form-urlencoded", "X-Twilio-Signature": signature}
    return urlencode(params).encode(), headers


def reply(site, body: str, sender: str = SHARED_PHONE, **kwargs):
    params = {"MessageSid": "SM" + "0" * 32, "AccountSid": "AC" + "1" * 32, "From": sender, "To": "+15005550006",
              "Body": body, "NumMedia": "0", "FromCountry": "US", "FromState": "FL"}
    content, headers = twilio_request(params, **kwargs)
    return site.client.post(INBOUND, content=content, headers=headers)


def sms_consent(site, customer_id: str) -> bool:
    with site.services.session() as session:
        return "sms" in session.get(Customer, customer_id).consent


def order(site, event_id: str, customer_id: str, **kwargs):
    # Customers in Miami: the fixed clock's 12:00 UTC is 08:00 there in March (EDT), inside Florida's SMS hours.
    return site.post("/events", order_paid(event_id, customer_id=customer_id, occurred_at=site.services.clock(),
                                           consent=["sms"], phone=SHARED_PHONE, region="US-FL",
                                           timezone="America/New_York", **kwargs))


def test_stop_opts_out_every_customer_holding_the_number_and_start_opts_them_back_in(site):
    # Given two customers of the shop sharing one phone, each with a text scheduled
    assert order(site, "e1", "c1").status_code == 202
    assert order(site, "e2", "c2").status_code == 202
    with site.services.session() as session:
        assert session.get(Customer, "c1").region == "US-FL"  # stored: the state's SMS hours and zone
    # When the number replies STOP (in any case, as Twilio matches it)
    answer = reply(site, " Stop ")
    # Then both are opted out of SMS, Twilio gets empty TwiML, and nothing is texted
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/xml")
    assert answer.text.endswith("<Response/>")
    assert not sms_consent(site, "c1") and not sms_consent(site, "c2")
    site.services.relay_and_send()
    assert site.services.http.requests == []
    assert {(d["state"], d["reason"]) for d in site.services.deliveries()} == {("suppressed", "no_channel")}
    # When the number replies START an hour later
    site.services.clock.advance(hours=1)
    assert reply(site, "START").status_code == 200
    # Then both have SMS back, and their next coupon is texted
    assert sms_consent(site, "c1") and sms_consent(site, "c2")
    site.services.clock.advance(days=2)
    order(site, "e3", "c1")
    site.services.relay_and_send()
    assert [r.path for r in site.services.http.requests] == [f"/sms/{SHARED_PHONE}"]


def test_a_checkout_newer_than_stop_decides_again_and_start_gives_back_only_what_stop_took(site):
    site.post("/events", order_paid("e1", customer_id="c1", occurred_at=site.services.clock(), consent=["email"],
                                   phone=SHARED_PHONE))
    # A customer who never agreed to texts does not get them by replying START
    reply(site, "START")
    assert not sms_consent(site, "c1")


def test_help_is_answered_with_the_help_line_in_the_customers_language(site):
    site.post("/events", order_paid("e1", customer_id="c1", occurred_at=site.services.clock(), country="BR",
                                   currency="BRL", consent=["sms"], phone="+5511987654321", locale="pt-BR"))
    answer = reply(site, "help", sender="+5511987654321")
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/xml")
    assert "<Message>" in answer.text and "Responda STOP" in answer.text
    assert sms_consent(site, "c1")  # HELP changes nothing


def test_a_reply_signed_with_another_token_or_for_another_url_is_401_and_changes_nothing(site):
    order(site, "e1", "c1")
    assert reply(site, "STOP", token="x" * 32).status_code == 401
    assert reply(site, "STOP", url="https://elsewhere.example.com" + INBOUND).status_code == 401
    assert sms_consent(site, "c1")


def test_a_reply_signed_for_the_url_it_was_posted_to_is_obeyed_beside_the_public_one(site):
    """A number's webhook pointed straight at `encore serve` (no proxy): Twilio signs the
    URL it called, which is not ENCORE_PUBLIC_URL."""
    order(site, "e1", "c1")
    assert reply(site, "STOP", url="http://testserver" + INBOUND).status_code == 200
    assert not sms_consent(site, "c1")


def test_without_a_twilio_token_replies_are_401_and_change_nothing(untokened):
    """SPEC section 3: without ENCORE_TWILIO_AUTH_TOKEN the endpoint answers 401."""
    site = untokened
    order(site, "e1", "c1")
    answer = reply(site, "STOP")
    assert answer.status_code == 401
    assert "ENCORE_TWILIO_AUTH_TOKEN" in answer.json()["error"]
    assert sms_consent(site, "c1")


# ------------------------------------------------------------------ email feedback

FEEDBACK = "/webhooks/email/feedback"


def test_a_complaint_suppresses_the_next_email_and_the_delivery_moves_to_sms(site):
    services = site.services
    # Given a customer whose first coupon was emailed
    site.post("/events", order_paid("e1", customer_id="c1", occurred_at=services.clock(), timezone="UTC",
                                   consent=["email"], email="ana@example.com"))
    services.relay_and_send()
    assert len(services.smtp.messages) == 1
    # When the mailbox provider reports a complaint
    answer = site.post(FEEDBACK, {"type": "complaint", "email": "Ana@Example.com",
                                 "occurred_at": services.clock().isoformat()})
    assert answer.status_code == 200 and answer.json() == {"suppressed": 1, "transient": 0}
    # Then the next coupon is not emailed: suppressed at planning, with the reason
    services.clock.advance(days=2)
    site.post("/events", order_paid("e2", customer_id="c1", occurred_at=services.clock(), timezone="UTC",
                                   consent=["email"], email="ana@example.com"))
    services.relay_and_send()
    assert len(services.smtp.messages) == 1
    assert [(d["state"], d["reason"]) for d in services.deliveries()][-1] == ("suppressed", "email_suppressed")
    # and a customer who also agreed to texts gets the coupon by SMS instead
    site.post("/events", order_paid("e3", customer_id="c2", occurred_at=services.clock(), timezone="UTC",
                                   consent=["email", "sms"], email="ana@example.com", phone="+15555550123"))
    services.relay_and_send()
    assert len(services.smtp.messages) == 1
    assert [r.path for r in services.http.requests] == ["/sms/+15555550123"]
    # with email named as passed over (SPEC rule 16's `skipped`)
    sms = [d for d in services.deliveries() if d["customer_id"] == "c2"][-1]
    assert (sms["channel"], sms["skipped"]) == ("sms", [{"channel": "email", "reason": "email_suppressed"}])


def test_a_complaint_stops_an_email_already_scheduled_at_send_time(site):
    services = site.services
    from tests.support import zone_where_local_hour_is

    night = zone_where_local_hour_is(23, services.clock())
    site.post("/events", order_paid("e1", customer_id="c1", occurred_at=services.clock(), timezone=night,
                                   consent=["email"], email="ana@example.com"))
    site.post(FEEDBACK, {"type": "bounce", "email": "ana@example.com", "permanent": True,
                        "occurred_at": services.clock().isoformat()})
    services.clock.advance(hours=12)
    services.relay_and_send()
    assert services.smtp.messages == []
    [delivery] = services.deliveries()
    assert (delivery["state"], delivery["reason"]) == ("suppressed", "email_suppressed")
    assert (delivery["channel"], delivery["skipped"]) == (None, [{"channel": "email", "reason": "email_suppressed"}])


def test_a_transient_bounce_counts_against_the_delivery_and_it_is_sent_again(site):
    services = site.services
    site.post("/events", order_paid("e1", customer_id="c1", occurred_at=services.clock(), timezone="UTC",
                                   consent=["email"], email="ana@example.com"))
    services.relay_and_send()
    services.clock.advance(minutes=5)
    answer = site.post(FEEDBACK, [{"type": "bounce", "email": "ana@example.com", "permanent": False,
                                  "occurred_at": services.clock().isoformat()}])
    assert answer.json() == {"suppressed": 0, "transient": 1}
    [delivery] = services.deliveries()
    assert delivery["state"] == "scheduled" and delivery["attempts"] == 2
    with services.session() as session:
        assert session.scalars(select(EmailSuppression)).all() == []
    services.clock.advance(hours=1)  # past the backoff
    services.relay_and_send()
    assert len(services.smtp.messages) == 2
    assert services.deliveries()[0]["state"] == "sent"


def test_a_broken_notice_is_400_naming_the_field_and_an_unsigned_one_401(site):
    answer = site.post(FEEDBACK, [{"type": "complaint", "email": "a@example.com", "occurred_at": "2026-03-10T12:00:00Z"},
                                 {"type": "bounce", "email": "b@example.com", "occurred_at": "2026-03-10T12:00:00Z"}])
    assert answer.status_code == 400
    assert answer.json()["error"] == "[1].permanent: must be true or false"
    assert site.post(FEEDBACK, {"type": "complaint", "email": "a@example.com", "occurred_at": "2026-03-10T12:00:00Z"},
                    sign=False).status_code == 401
    with site.services.session() as session:
        assert session.scalars(select(EmailSuppression)).all() == []
    assert json.loads(site.post(FEEDBACK, b"nope").text)["error"].startswith("body:")


# ------------------------------------------------------------ rule 17: the state from Shopify


def test_a_shopify_order_shipped_to_texas_makes_a_texan_read_central_time(site):
    from coupons.markets import load_markets
    from coupons.timing import customer_zone
    from store.rows import customer_value
    from tests.support import shopify_order

    payload = shopify_order(processed_at=site.services.clock(), sms_consent="subscribed")
    payload["shipping_address"]["province_code"] = "TX"
    assert web_tier.post_shopify(site, payload, "w-tx").status_code == 200
    with site.services.session() as session:
        [customer] = session.scalars(select(Customer)).all()
        assert customer.region == "US-TX"
        assert customer_zone(customer_value(customer), load_markets().for_country("US")) == "America/Chicago"
