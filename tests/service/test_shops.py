"""Several shops in one install (SPEC section 7), on real SQLite and PostgreSQL: events
name their shop, ids are scoped to it, messages are signed with its brand, and every
report can be narrowed to one shop."""

from __future__ import annotations

import json
import os
import re

import pytest
from sqlalchemy import select

from store.models import Coupon, Customer, DeadLetter, Delivery, InboxEvent
from tests.support import order_paid

SHOPS_FILE = """
[shops.default]
platform = "none"

[shops.glow]
platform = "none"
brand = "Glow"

[shops.lumi]
platform = "none"
"""


def in_shop(shop: str | None, event: dict) -> dict:
    return event if shop is None else {**event, "shop": shop}


@pytest.fixture()
def shops_file(tmp_path):
    path = tmp_path / "shops.toml"
    path.write_text(SHOPS_FILE)
    return path


@pytest.fixture()
def shop_services(make_services, shops_file):
    return make_services(ENCORE_SHOPS_FILE=str(shops_file))


def deliveries_of(services, shop: str) -> list[dict]:
    from services.reports import deliveries

    with services.session() as session:
        return deliveries(session, shop=shop, shops=services.runtime.settings.shops)


def sms_customer(customer_id: str = "c1", **extra) -> dict:
    return dict(customer_id=customer_id, consent=["sms"], phone="+15551230001", timezone="UTC", **extra)


# ------------------------------------------------------------------------------ events


def test_an_event_of_an_unknown_shop_is_rejected_naming_shop_and_the_others_are_kept(shop_services):
    services = shop_services
    now = services.clock()
    # Given a batch where one event names a shop the shops file does not define
    rejected = services.emit(in_shop("glow", order_paid("e1", occurred_at=now)),
                             in_shop("nowhere", order_paid("e2", occurred_at=now)),
                             in_shop("not a name!", order_paid("e3", occurred_at=now)),
                             order_paid("e4", occurred_at=now))
    # Then that event alone is refused, naming the field, and the others are kept
    assert [number for number, _ in rejected] == [2, 3]
    assert rejected[0][1].startswith("shop: unknown shop 'nowhere'")
    assert "glow" in rejected[0][1] and "lumi" in rejected[0][1]  # it says which shops exist
    assert rejected[1][1].startswith("shop: must be the name of a shop")
    assert sorted((row["shop"], row["customer_id"]) for row in services.deliveries()) == [
        ("default", "c1"), ("glow", "c1")]
    with services.session() as session:
        letters = session.scalars(select(DeadLetter)).all()
    assert len(letters) == 2 and {letter.shop for letter in letters} == {"default"}


def test_without_a_shops_file_an_event_naming_another_shop_is_rejected(services):
    rejected = services.emit(in_shop("glow", order_paid("e1", occurred_at=services.clock())),
                             in_shop("default", order_paid("e2", occurred_at=services.clock())))
    assert rejected == [(1, "shop: unknown shop 'glow': without ENCORE_SHOPS_FILE the only shop is default")]
    [row] = services.deliveries()
    assert (row["shop"], row["customer_id"]) == ("default", "c1")


def test_ids_in_control_characters_are_refused_so_no_id_spells_another_shops_key(shop_services):
    rejected = shop_services.emit(order_paid("e1", customer_id="glow\x1fc1", occurred_at=shop_services.clock()))
    assert rejected == [(1, "data.customer.id: must not contain control characters")]


# ------------------------------------------------------------------------------ scoping


def test_the_same_customer_id_in_two_shops_is_two_customers_with_their_own_cap_consent_and_coupons(shop_services):
    services = shop_services
    now = services.clock()
    # Given customer "c1" of shop glow and customer "c1" of shop lumi, each buying once
    services.emit(in_shop("glow", order_paid("e1", order_id="o1", occurred_at=now, **sms_customer())),
                  in_shop("lumi", order_paid("e1", order_id="o1", occurred_at=now, **sms_customer())))
    # Then each gets a coupon: neither order is a repeat of the other, nor hits the other's cap
    rows = sorted(services.deliveries(), key=lambda row: row["shop"])
    assert [(row["shop"], row["customer_id"], row["state"]) for row in rows] == [
        ("glow", "c1", "scheduled"), ("lumi", "c1", "scheduled")]
    assert rows[0]["code"] != rows[1]["code"]
    with services.session() as session:
        assert sorted(session.scalars(select(Customer.shop))) == ["glow", "lumi"]
        assert sorted(session.scalars(select(InboxEvent.shop))) == ["glow", "lumi"]
    # When c1 opts out of SMS in shop glow only
    services.emit(in_shop("glow", {"id": "e2", "type": "customer.opted_out", "occurred_at": now.isoformat(),
                                   "data": {"customer_id": "c1", "channels": ["sms"]}}))
    services.relay_and_send()
    # Then glow's c1 is not texted, and lumi's c1 is
    states = {row["shop"]: (row["state"], row["reason"]) for row in services.deliveries()}
    assert states["lumi"] == ("sent", None)
    assert states["glow"][0] in ("suppressed", "failed")
    assert services.http.count == 1
    # And a second order of lumi's c1 the next hour hits lumi's cap, not glow's
    services.clock.advance(hours=1)
    services.emit(in_shop("lumi", order_paid("e3", order_id="o3", occurred_at=services.clock(), **sms_customer())))
    lumi = [row for row in deliveries_of(services, "lumi") if row["state"] != "sent"]
    assert [(row["state"], row["reason"]) for row in lumi] == [("suppressed", "frequency_cap")]


def test_deliveries_filtered_by_shop_and_by_a_customer_id_as_the_shop_sent_it(shop_services):
    services = shop_services
    now = services.clock()
    services.emit(in_shop("glow", order_paid("e1", occurred_at=now)), in_shop("lumi", order_paid("e1", occurred_at=now)),
                  order_paid("e1", customer_id="c2", occurred_at=now))
    shops = services.runtime.settings.shops
    from services.reports import deliveries

    with services.session() as session:
        assert sorted(row["shop"] for row in deliveries(session, "c1", shops=shops)) == ["glow", "lumi"]
        assert [row["shop"] for row in deliveries(session, "c1", shop="glow", shops=shops)] == ["glow"]
        assert [row["customer_id"] for row in deliveries(session, shop="default", shops=shops)] == ["c2"]
        # SPEC section 7's fields: the shop, the coupon's expiry, and no sync for platform none
        row = deliveries(session, shop="glow", shops=shops)[0]
        assert row["expires_at"].endswith("Z") and row["code_synced_at"] is None


def test_status_of_one_shop_counts_only_its_events_and_deliveries(shop_services):
    services = shop_services
    now = services.clock()
    services.emit(in_shop("glow", order_paid("e1", occurred_at=now)), in_shop("glow", order_paid("e2", customer_id="c2",
                                                                                                occurred_at=now)),
                  in_shop("lumi", order_paid("e1", occurred_at=now)), in_shop("lumi", {"id": "bad"}))
    from services.reports import status

    with services.session() as session:
        glow, lumi, every = status(session, "glow"), status(session, "lumi"), status(session)
    assert glow["events"] == {"accepted": 2, "rejected": 0}
    assert lumi["events"] == {"accepted": 1, "rejected": 1}  # the bad line named lumi
    assert glow["deliveries"]["scheduled"] == 2 and lumi["deliveries"]["scheduled"] == 1
    assert every["deliveries"]["scheduled"] == 3 and every["events"] == {"accepted": 3, "rejected": 1}


def test_a_stream_of_one_shop_triggers_only_its_own_buyers(shop_services):
    services = shop_services
    now = services.clock()
    # Given buyers of stream "live-1" in two shops, and only glow's stream ends
    services.emit(in_shop("glow", order_paid("e1", stream_id="live-1", occurred_at=now)),
                  in_shop("lumi", order_paid("e1", stream_id="live-1", occurred_at=now)),
                  in_shop("glow", {"id": "end", "type": "stream.ended", "occurred_at": now.isoformat(),
                                   "data": {"stream_id": "live-1"}}))
    # Then only glow's buyer has a coupon; lumi's waits for lumi's stream
    assert [(row["shop"], row["trigger"]) for row in services.deliveries()] == [("glow", "stream")]


# ------------------------------------------------------------------------------ redemption


def test_a_code_redeems_only_for_its_own_customer_and_only_in_its_own_shop(shop_services):
    services = shop_services
    now = services.clock()
    services.emit(in_shop("glow", order_paid("e1", order_id="o1", occurred_at=now)))
    [coupon] = services.deliveries()
    services.clock.advance(days=1)
    later = services.clock()

    def order_with_code(event_id: str, shop: str, customer_id: str) -> dict:
        event = in_shop(shop, order_paid(event_id, order_id=event_id, customer_id=customer_id, occurred_at=later))
        event["data"]["discount_codes"] = [coupon["code"].lower()]
        return event

    # When another customer of glow, then c1 of lumi, pay with c1's code
    services.emit(order_with_code("o2", "glow", "c2"), order_with_code("o3", "lumi", "c1"))
    # Then the coupon is still unredeemed
    assert [row["redeemed_at"] for row in deliveries_of(services, "glow") if row["code"] == coupon["code"]] == [None]
    # And when c1 of glow uses it, it is redeemed with that order
    services.emit(order_with_code("o4", "glow", "c1"))
    with services.session() as session:
        row = session.scalar(select(Coupon).where(Coupon.code == coupon["code"]))
        assert row.redeemed_at is not None and row.redeemed_order_id == "glow\x1fo4"


def test_a_coupon_redeemed_event_of_another_shop_or_customer_redeems_nothing(shop_services):
    from services.redemption import redeem_alone

    services = shop_services
    services.emit(in_shop("glow", order_paid("e1", occurred_at=services.clock())))
    [coupon] = services.deliveries()

    def redeemed(shop: str, event_id: str, **data) -> bool:
        services.emit(in_shop(shop, {"id": event_id, "type": "coupon.redeemed",
                                     "occurred_at": services.clock().isoformat(),
                                     "data": {"code": coupon["code"], "order_id": f"o-{event_id}", **data}}))
        return deliveries_of(services, "glow")[0]["redeemed_at"] is not None

    assert not redeemed("lumi", "r1")
    assert not redeemed("glow", "r2", customer_id="c2")
    assert redeemed("glow", "r3", customer_id="c1")
    # the checkout's own call finds the code's shop: a second redemption is refused as usual
    assert redeem_alone(services.runtime.database_url, coupon["code"], "o9", services.clock()).status == \
        "already_redeemed"


# ------------------------------------------------------------------------------ brand


def test_messages_are_signed_with_the_shops_brand_else_its_name(shop_services):
    services = shop_services
    now = services.clock()
    services.emit(in_shop("glow", order_paid("e1", occurred_at=now, **sms_customer("c1"))),
                  in_shop("lumi", order_paid("e1", occurred_at=now, **sms_customer("c2", ))),
                  order_paid("e1", occurred_at=now, **sms_customer("c3")))
    services.relay_and_send()
    bodies = {request.json["message"].split(":")[0] for request in services.http.requests}
    # glow has a brand; lumi has none and is signed with its name; the default shop stays Encore
    assert bodies == {"Glow", "lumi", "Encore"}


def test_an_email_is_signed_with_the_shops_brand(shop_services):
    services = shop_services
    services.emit(in_shop("glow", order_paid("e1", occurred_at=services.clock(), timezone="UTC")))
    services.relay_and_send()
    [message] = services.smtp.messages
    text = message.get_body(("plain",)).get_content()
    assert "Glow" in text and "Encore" not in text


def test_the_unsubscribe_link_of_another_shops_customer_opts_out_that_customer_only(make_services, shops_file):
    from coupons.unsubscribe import mint_token
    from services.unsubscribe import read_unsubscribe_link, unsubscribe_by_link

    secret = "test-webhook-secret-0123456789"
    services = make_services(ENCORE_SHOPS_FILE=str(shops_file), ENCORE_WEBHOOK_SECRET=secret)
    now = services.clock()
    services.emit(in_shop("glow", order_paid("e1", occurred_at=now)), in_shop("lumi", order_paid("e1", occurred_at=now)))
    token = mint_token(secret, "glow\x1fc1", "email")
    assert read_unsubscribe_link(services.runtime, token).brand == "Glow"
    unsubscribe_by_link(services.runtime, token, now)
    with services.session() as session:
        consent = dict(session.execute(select(Customer.shop, Customer.consent)).all())
    assert consent == {"glow": [], "lumi": ["email"]}


# ------------------------------------------------------------------------------ dead letters


def test_dead_letters_show_their_shop_and_can_be_listed_per_shop(shop_services):
    from services.dead_letters import list_dead_letters, replay

    services = shop_services
    bad = in_shop("lumi", order_paid("e1", occurred_at=services.clock()))
    bad["data"]["currency"] = "XXX1"
    services.emit(bad, {"id": "no-shop"})
    with services.session() as session:
        assert [(row["shop"], row["id"]) for row in list_dead_letters(session, shop="lumi")] == [("lumi", "L1")]
        assert [row["shop"] for row in list_dead_letters(session)] == ["lumi", "default"]
    # a fixed event is replayed into its shop
    bad["data"]["currency"] = "USD"
    with services.session() as session:
        result = replay(session, "L1", services.clock(), json.dumps(bad), services.runtime)
    assert result.ok and result.event_id == "lumi\x1fe1"
    with services.session() as session:
        assert session.get(InboxEvent, "lumi\x1fe1").shop == "lumi"


def test_rows_of_every_table_carry_their_shop(shop_services):
    services = shop_services
    now = services.clock()
    services.emit(in_shop("glow", order_paid("e1", occurred_at=now)))
    with services.session() as session:
        assert session.scalar(select(Coupon.shop)) == "glow"
        assert session.scalar(select(Delivery.shop)) == "glow"
        assert session.scalar(select(Delivery.customer_id)) == "glow\x1fc1"


# ------------------------------------------------------------------------------ Shopify, per shop

SHOPIFY_SHOPS_FILE = """
[shops.glow-us]
platform = "shopify"
domain = "glow-us.myshopify.com"
token_env = "GLOW_US_SHOPIFY_TOKEN"
webhook_secret_env = "GLOW_US_SHOPIFY_SECRET"
brand = "Glow"

[shops.glow-ca]
platform = "shopify"
domain = "glow-ca.myshopify.com"
token_env = "GLOW_CA_SHOPIFY_TOKEN"
webhook_secret_env = "GLOW_CA_SHOPIFY_SECRET"
"""
US_SECRET, CA_SECRET = "us-webhook-secret-0123456789", "ca-webhook-secret-0123456789"


@pytest.fixture()
def shopify_web(make_services, tmp_path):
    from fastapi.testclient import TestClient

    from web.app import create_app

    path = tmp_path / "shopify-shops.toml"
    path.write_text(SHOPIFY_SHOPS_FILE)

    def make(**env):
        services = make_services(**{"ENCORE_SHOPS_FILE": str(path), "ENCORE_WEBHOOK_SECRET": "test-webhook-secret-0123456789",
                                    "GLOW_US_SHOPIFY_SECRET": US_SECRET, "GLOW_CA_SHOPIFY_SECRET": CA_SECRET,
                                    "GLOW_US_SHOPIFY_TOKEN": "shpat_us", "GLOW_CA_SHOPIFY_TOKEN": "shpat_ca", **env})
        return services, TestClient(create_app(services.runtime))

    return make


def post_order(services, client, payload: dict, webhook_id: str, *, domain: str, secret: str):
    from tests.support import shopify_headers

    body = json.dumps(payload).encode()
    headers = {**shopify_headers(body, webhook_id, secret=secret), "X-Shopify-Shop-Domain": domain}
    response = client.post("/webhooks/shopify/orders-paid", content=body, headers=headers)
    services.answer_intake()
    return response


def test_a_shopify_webhook_is_taken_for_the_shop_of_its_domain_with_that_shops_secret(shopify_web):
    from tests.support import shopify_order

    services, client = shopify_web()
    order = shopify_order(processed_at=services.clock())
    # Given the same order id and customer id sent by two stores, each signed with its own secret
    assert post_order(services, client, order, "w-us", domain="glow-us.myshopify.com", secret=US_SECRET
                      ).status_code == 200
    assert post_order(services, client, order, "w-ca", domain="GLOW-CA.myshopify.com", secret=CA_SECRET
                      ).status_code == 200
    # Then each store's customer has a coupon of their own shop
    rows = sorted(services.deliveries(), key=lambda row: row["shop"])
    assert [(row["shop"], row["customer_id"]) for row in rows] == [
        ("glow-ca", "shopify:115310627314723954"), ("glow-us", "shopify:115310627314723954")]


@pytest.mark.parametrize(("domain", "secret", "why"), [
    ("glow-us.myshopify.com", CA_SECRET, "X-Shopify-Hmac-Sha256: missing or wrong signature for shop glow-us"),
    ("other.myshopify.com", US_SECRET, "X-Shopify-Shop-Domain: 'other.myshopify.com' is not the domain of a Shopify "
                                       "shop in ENCORE_SHOPS_FILE"),
    ("", US_SECRET, "X-Shopify-Shop-Domain: '' is not the domain"),
])
def test_a_shopify_webhook_of_an_unknown_domain_or_signed_with_another_shops_secret_is_401(shopify_web, domain,
                                                                                           secret, why):
    from tests.support import shopify_order

    services, client = shopify_web()
    response = post_order(services, client, shopify_order(processed_at=services.clock()), "w1", domain=domain,
                          secret=secret)
    assert response.status_code == 401 and response.json()["error"].startswith(why)
    with services.session() as session:
        assert session.scalars(select(InboxEvent)).all() == [] and session.scalars(select(DeadLetter)).all() == []


def test_a_shopify_webhook_of_a_shop_whose_secret_is_not_set_is_401_naming_the_variable(shopify_web):
    from tests.support import shopify_order

    services, client = shopify_web(GLOW_CA_SHOPIFY_SECRET=None)
    response = post_order(services, client, shopify_order(processed_at=services.clock()), "w1",
                          domain="glow-ca.myshopify.com", secret=CA_SECRET)
    assert response.status_code == 401
    assert response.json()["error"] == "GLOW_CA_SHOPIFY_SECRET is not set: webhooks of shop glow-ca cannot be verified"


def test_a_shopify_order_redeems_a_code_of_its_own_store_and_customer_only(shopify_web):
    from tests.support import shopify_order

    services, client = shopify_web()
    post_order(services, client, shopify_order(1, processed_at=services.clock()), "w1",
               domain="glow-us.myshopify.com", secret=US_SECRET)
    [coupon] = services.deliveries()
    services.clock.advance(days=1)
    later = services.clock()
    # Another customer of the same store, then the same customer id in the other store, use the code
    post_order(services, client, shopify_order(2, customer_id=99, processed_at=later, discount_codes=[coupon["code"]]),
               "w2", domain="glow-us.myshopify.com", secret=US_SECRET)
    post_order(services, client, shopify_order(3, processed_at=later, discount_codes=[coupon["code"]]),
               "w3", domain="glow-ca.myshopify.com", secret=CA_SECRET)
    assert [row["redeemed_at"] for row in deliveries_of(services, "glow-us") if row["code"] == coupon["code"]] == [None]
    # The coupon's own customer, in its own store, redeems it
    post_order(services, client, shopify_order(4, processed_at=later, discount_codes=[coupon["code"]]),
               "w4", domain="glow-us.myshopify.com", secret=US_SECRET)
    assert [row["redeemed_at"] for row in deliveries_of(services, "glow-us") if row["code"] == coupon["code"]] != [None]


# ------------------------------------------------------------------------------ dashboard and metrics


@pytest.fixture()
def shop_web(make_services, shops_file):
    from fastapi.testclient import TestClient

    from web.app import create_app

    services = make_services(ENCORE_SHOPS_FILE=str(shops_file), ENCORE_WEBHOOK_SECRET="test-webhook-secret-0123456789")
    now = services.clock()
    services.emit(in_shop("glow", order_paid("e1", stream_id="live-1", occurred_at=now, timezone="UTC")),
                  in_shop("glow", {"id": "end", "type": "stream.ended", "occurred_at": now.isoformat(),
                                   "data": {"stream_id": "live-1"}}),
                  in_shop("lumi", order_paid("e1", occurred_at=now, timezone="UTC")),
                  in_shop("lumi", order_paid("e2", customer_id="c2", occurred_at=now, consent=[])),
                  in_shop("lumi", {"id": "bad"}))
    services.relay_and_send()
    return services, TestClient(create_app(services.runtime))


def test_metrics_carry_a_shop_label_when_there_are_several_shops(shop_web):
    _, client = shop_web
    text = client.get("/metrics").text
    assert 'encore_events_total{outcome="applied",shop="glow",type="order.paid"} 1.0' in text
    assert 'encore_events_total{outcome="rejected",shop="lumi",type="unknown"} 1.0' in text
    assert 'encore_deliveries{channel="email",shop="lumi",state="sent"} 1.0' in text
    assert 'encore_deliveries{channel="none",shop="lumi",state="suppressed"} 1.0' in text
    assert 'encore_deliveries{channel="email",shop="glow",state="sent"} 1.0' in text
    assert 'encore_send_latency_seconds_count{shop="default"} 0.0' in text
    assert 'encore_on_time_rate{shop="glow"} 1.0' in text and 'encore_due_backlog{shop="lumi"} 0.0' in text


def test_the_dashboard_shows_one_shop_when_asked_and_refuses_an_unknown_one(shop_web):
    _, client = shop_web
    every, glow, lumi = client.get("/"), client.get("/?shop=glow"), client.get("/?shop=lumi")
    assert every.status_code == glow.status_code == lumi.status_code == 200

    def kpi(page, label: str) -> str:
        return re.search(rf"<b>([\d,%–]+)</b><span>{label}</span>", page.text).group(1)

    assert (kpi(every, "buyers"), kpi(glow, "buyers"), kpi(lumi, "buyers")) == ("3", "1", "2")
    assert (kpi(every, "coupons issued"), kpi(glow, "coupons issued"), kpi(lumi, "coupons issued")) == ("3", "1", "2")
    assert "glow · live-1" in every.text and "live-1" in glow.text and "live-1" not in lumi.text
    assert "Glow (glow)" in glow.text and 'href="?shop=lumi"' in glow.text
    refused = client.get("/?shop=nowhere")
    assert refused.status_code == 400 and refused.json()["error"].startswith("shop: unknown shop 'nowhere'")


# ------------------------------------------------------------------------------ command line


@pytest.fixture()
def cli(shop_services, shops_file, database_url, tmp_path, monkeypatch, capsys):
    """`encore ...` in-process, on the database and shops file of `shop_services`."""
    from workers.cli import main

    for name in [name for name in os.environ if name.startswith("ENCORE_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("ENCORE_DATABASE_URL", database_url)
    monkeypatch.setenv("ENCORE_DATA_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("ENCORE_SHOPS_FILE", str(shops_file))
    monkeypatch.setenv("ENCORE_CAMPAIGNS_DIR", str(tmp_path / "no-campaigns"))

    def run(*args: str) -> tuple[int, str, str]:
        code = main(list(args))
        out, err = capsys.readouterr()
        return code, out, err

    return run


def test_the_command_line_narrows_status_deliveries_and_dead_letters_to_one_shop(shop_services, cli):
    services = shop_services
    now = services.clock()
    services.emit(in_shop("glow", order_paid("e1", occurred_at=now)), in_shop("lumi", order_paid("e1", occurred_at=now)),
                  in_shop("lumi", order_paid("e2", customer_id="c2", occurred_at=now)), in_shop("lumi", {"id": "x"}))
    code, out, _ = cli("status", "--json", "--shop", "lumi")
    assert code == 0 and json.loads(out)["deliveries"]["scheduled"] == 2
    assert json.loads(out)["events"] == {"accepted": 2, "rejected": 1}
    code, out, _ = cli("deliveries", "--json", "--shop", "glow")
    [row] = json.loads(out)
    assert (row["shop"], row["customer_id"], row["code_synced_at"]) == ("glow", "c1", None)
    assert row["expires_at"].endswith("Z")
    code, out, _ = cli("deliveries", "--json", "--customer", "c1")
    assert sorted(row["shop"] for row in json.loads(out)) == ["glow", "lumi"]
    code, out, _ = cli("deliveries", "--shop", "lumi")
    assert out.splitlines()[0].split()[:2] == ["shop", "customer"]
    assert sorted(line.split()[:2] for line in out.splitlines()[1:]) == [["lumi", "c1"], ["lumi", "c2"]]
    code, out, _ = cli("dead-letters", "--json", "--shop", "glow")
    assert json.loads(out) == []
    code, out, _ = cli("dead-letters", "--json", "--shop", "lumi")
    assert [row["shop"] for row in json.loads(out)] == ["lumi"]
    code, out, _ = cli("campaigns", "--json", "--shop", "lumi")
    assert code == 0 and json.loads(out)["campaigns"] == []


@pytest.mark.parametrize("command", [["status"], ["deliveries", "--json"], ["dead-letters"], ["campaigns"]])
def test_an_unknown_shop_on_the_command_line_is_refused_naming_the_option(cli, command):
    code, out, err = cli(*command, "--shop", "nowhere")
    assert code == 2 and out == ""
    assert err.startswith("encore: --shop: unknown shop 'nowhere'") and "glow, lumi" in err
