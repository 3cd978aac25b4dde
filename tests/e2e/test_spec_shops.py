"""SPEC section 7 and rule 15 as an acceptance check runs them: the installed `encore`
command in separate processes (emit, worker, beat, deliveries, status, dead-letters,
check) on PostgreSQL and Redis, with a shops file written exactly as SPEC section 7
shows it (only `api_url` and the WooCommerce `domain` point at the stand-ins), the
secrets in the variables the file names, and events naming their shop."""

from __future__ import annotations

import json
import os
import subprocess
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from channels.sinks import SmtpSink
from tests.standins.shopify_admin import CheckoutRefused, ShopifyAdmin
from tests.standins.woocommerce import CouponRefused, WooCommerceStandIn
from tests.support import (
    ENCORE_SCRIPT, SPEC_SHOPS_FILE, EncoreDaemon, free_port, order_paid, shopify_headers, signed_headers, shopify_order,
    stream_ended, wait_until, zone_where_local_hour_is,
)

SPEC_API_URL = "https://glow-us.myshopify.com/admin/api/2025-07/graphql.json"



def shops_file(shopify: ShopifyAdmin, woo: WooCommerceStandIn) -> str:
    """The SPEC's file with the two addresses a test points at its stand-ins."""
    text = SPEC_SHOPS_FILE.replace(SPEC_API_URL, shopify.url)
    assert text != SPEC_SHOPS_FILE
    return text.replace('domain = "https://glow.example"', f'domain = "{woo.url}"')


def encore(*args: str, env: dict, stdin: str | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([ENCORE_SCRIPT, *args], input=stdin, text=True, capture_output=True, env=env, timeout=timeout)


def jsonl(*events: dict) -> str:
    return "".join(json.dumps(event) + "\n" for event in events)



@pytest.fixture()
def stand_ins():
    shopify = ShopifyAdmin(token="shpat_glow_us", path_version="2025-07", bulk_delay=0.05)
    shopify.seed_variant("shampoo-refill", "20.00")
    shopify.seed_variant("IPOD2008BLACK", "199.00")  # what tests.support.shopify_order buys
    with shopify, WooCommerceStandIn(consumer_key="ck_glow_wc", consumer_secret="cs_glow_wc") as woo:
        woo.add_product("serum", "40.00")
        yield shopify, woo


@pytest.fixture()
def env(tmp_path, postgres_url, redis_url, stand_ins):
    shopify, woo = stand_ins
    path = tmp_path / "shops.toml"
    path.write_text(shops_file(shopify, woo))
    smtp = SmtpSink().start()
    settings = {k: v for k, v in os.environ.items() if not k.startswith("ENCORE_")}
    settings.update({
        "ENCORE_SHOPS_FILE": str(path),
        "ENCORE_DATA_DIR": str(tmp_path),
        "ENCORE_DATABASE_URL": postgres_url,
        "ENCORE_BROKER_URL": redis_url,
        "ENCORE_CHANNEL_EMAIL": f"mailto://127.0.0.1:{smtp.port}?from=shop@example.com&to={{email}}",
        "ENCORE_RETRY_BASE_SECONDS": "0.2",
        "ENCORE_WEBHOOK_SECRET": "spec-shops-webhook-secret-0123",
        "ENCORE_SHOPIFY_SECRET": "the-install-wide-secret-unused-with-shops",
        "GLOW_US_SHOPIFY_TOKEN": shopify.token,
        "GLOW_US_SHOPIFY_SECRET": "glow-us-webhook-secret",
        "GLOW_WC_KEY": "ck_glow_wc",
        "GLOW_WC_SECRET": "cs_glow_wc",
    })
    try:
        yield settings, smtp
    finally:
        smtp.stop()


def daytime_country(now: datetime) -> str:
    """A country whose main zone is between 10:00 and 19:00 now: a Shopify order carries no
    timezone, so its customer lives in the country's main zone and quiet hours would hold
    the message."""
    from zoneinfo import ZoneInfo

    zones = {"MX": "America/Mexico_City", "US": "America/New_York", "BR": "America/Sao_Paulo",
             "GB": "Europe/London", "DE": "Europe/Berlin", "AE": "Asia/Dubai", "IN": "Asia/Kolkata",
             "ID": "Asia/Jakarta", "JP": "Asia/Tokyo", "NZ": "Pacific/Auckland"}
    return next(country for country, zone in zones.items() if 10 <= now.astimezone(ZoneInfo(zone)).hour < 19)


class Serve(EncoreDaemon):
    """`encore serve` on a free port, ready when it answers."""

    def __init__(self, env: dict, log: Path) -> None:
        import httpx

        self.env = env
        self.url = f"http://127.0.0.1:{(port := free_port())}"
        super().__init__(["serve", "--port", str(port)], env, log)

        def ready() -> bool:
            assert self.process.poll() is None, self.log()
            try:
                return httpx.get(self.url + "/healthz", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(ready, timeout=60, interval=0.2)

    def events(self, events: list[dict]):
        import httpx

        body = json.dumps(events).encode()
        return httpx.post(f"{self.url}/events", content=body, timeout=10,
                          headers=signed_headers(body, self.env["ENCORE_WEBHOOK_SECRET"]))

    def redeem(self, code: str, order_id: str):
        import httpx

        body = json.dumps({"code": code, "order_id": order_id}).encode()
        return httpx.post(f"{self.url}/coupons/{code}/redeem", content=body, timeout=10,
                          headers=signed_headers(body, self.env["ENCORE_WEBHOOK_SECRET"]))

    def shopify(self, payload: dict, webhook_id: str, secret: str, domain: str = "glow-us.myshopify.com"):
        import httpx

        body = json.dumps(payload).encode()
        headers = {**shopify_headers(body, webhook_id, secret), "X-Shopify-Shop-Domain": domain}
        return httpx.post(self.url + "/webhooks/shopify/orders-paid", content=body, headers=headers, timeout=10)


def buyer(event_id: str, customer_id: str, shop: str | None, **kwargs) -> dict:
    event = order_paid(event_id, customer_id=customer_id, timezone=zone_where_local_hour_is(13), **kwargs)
    if shop is not None:
        event["shop"] = shop
    return event


def test_codes_of_two_shops_exist_in_their_own_store_before_their_messages(tmp_path, env, stand_ins):
    settings, smtp = env
    shopify, woo = stand_ins
    serum = {"sku": "serum", "name": "Serum", "unit_price": "40.00", "quantity": 2}
    processes = [Serve(settings, tmp_path / "serve.log")]
    try:
        serve = processes[0]
        # Given a Shopify order of glow-us, by webhook: signed with glow-us's secret it is
        # taken; with the install's ENCORE_SHOPIFY_SECRET, or from a domain of no shop, refused
        country = daytime_country(datetime.now(UTC))
        order = shopify_order(5001, customer_id=7001, country=country, email="jo@example.com")
        secret = settings["GLOW_US_SHOPIFY_SECRET"]
        assert serve.shopify(order, "w-0", settings["ENCORE_SHOPIFY_SECRET"]).status_code == 401
        assert serve.shopify(order, "w-1", secret, domain="glow-eu.myshopify.com").status_code == 401
        taken = serve.shopify(order, "w-2", secret, domain="GLOW-US.myshopify.com")
        assert taken.status_code == 200, taken.text
        posted = serve.events([buyer("http-1", "eve", "glow-eu")])
        assert posted.status_code == 400 and posted.json()["rejected"][0]["error"].startswith("shop: "), posted.text
        # ...the same customer "ann" buying in both shops, a WooCommerce buyer of a SKU the
        # store lacks, an event without a shop (the file has no `default`) and one of an unknown shop
        emitted = encore("emit", "-", env=settings, stdin=jsonl(
            buyer("us-1", "ann", "glow-us", order_id="o-1"),
            buyer("wc-1", "ann", "glow-wc", order_id="o-1", items=[serum]),
            buyer("wc-2", "bob", "glow-wc",
                  items=[{"sku": "gone", "name": "Gone", "unit_price": "9.00", "quantity": 1}]),
            buyer("wc-3", "cat", "glow-wc", stream_id="live-1", items=[{**serum, "quantity": 1}]),
            buyer("us-3", "dee", "glow-us", stream_id="live-1"),
            {**stream_ended("end-1", "live-1"), "shop": "glow-wc"},
            buyer("none-1", "cid", None),
            buyer("eu-1", "dan", "glow-eu"),
        ))
        # Then the two events without a shop of the file are rejected, naming `shop`
        assert (emitted.returncode, emitted.stdout.strip()) == (1, "accepted 6, rejected 2"), emitted.stderr
        errors = emitted.stderr.strip().splitlines()
        assert [line.split(":", 2)[:2] for line in errors] == [["line 7", " shop"], ["line 8", " shop"]], errors
        assert "glow-eu" in errors[1]

        # When a worker runs (the scheduler's rings are for retries and removals: the first
        # sync of a code is rung by its planning, so nothing here waits for `encore beat`)
        processes.append(EncoreDaemon(["worker", "--concurrency", "2", "-n", f"spec-shops-{os.getpid()}@%h"],
                                    settings, tmp_path / "worker.log"))

        def deliveries() -> list[dict]:
            shown = encore("deliveries", "--json", env=settings)
            assert shown.returncode == 0, shown.stderr
            return json.loads(shown.stdout)

        def finished() -> list[dict] | None:
            rows = deliveries()
            done = len(rows) == 5 and all(row["state"] in ("sent", "failed") for row in rows)
            return rows if done else None

        rows = wait_until(finished, timeout=60, interval=0.5)
        assert smtp.wait_for(sum(row["state"] == "sent" for row in rows), timeout=10)
        by_key = {(row["shop"], row["customer_id"]): row for row in rows}
        # (glow-wc's stream live-1 ended, glow-us's stream of the same id did not: dee waits)
        assert set(by_key) == {("glow-us", "ann"), ("glow-wc", "ann"), ("glow-wc", "bob"),
                               ("glow-us", "shopify:7001"), ("glow-wc", "cat")}
        cat = by_key["glow-wc", "cat"]
        assert (cat["state"], cat["trigger"]) == ("sent", "stream") and woo.coupon(cat["code"]) is not None
        us, wc, bob = by_key["glow-us", "ann"], by_key["glow-wc", "ann"], by_key["glow-wc", "bob"]
        jo = by_key["glow-us", "shopify:7001"]
        # Then the same customer id in two shops is two customers, each with a coupon of their own
        assert [(r["state"], r["reason"]) for r in (us, wc, jo)] == [("sent", None)] * 3, rows
        assert len({us["code"], wc["code"], jo["code"]}) == 3
        for row in (us, wc, jo):
            assert row["expires_at"] and row["code_synced_at"] and row["sent_at"]
            assert datetime.fromisoformat(row["code_synced_at"]) <= datetime.fromisoformat(row["sent_at"])
            assert datetime.fromisoformat(row["expires_at"]) > datetime.fromisoformat(row["sent_at"])
        # ...each message carries its code, signed by its shop
        bodies = [message.get_body(("plain",)).get_content() for message in smtp.messages]
        assert len(bodies) == 4
        assert any(us["code"] in body and "Glow" in body for body in bodies)
        assert any(wc["code"] in body for body in bodies) and any(jo["code"] in body for body in bodies)
        # ...each code is in its own store only, stops working at the coupon's expiry, and works there once
        assert {us["code"], jo["code"]} <= shopify.codes() and woo.coupon(us["code"]) is None
        assert woo.coupon(wc["code"]) is not None and wc["code"] not in shopify.codes()
        expires = datetime.fromisoformat(us["expires_at"])
        assert shopify.discount_of(us["code"]).ends_at == expires
        assert woo.coupon(wc["code"]).date_expires == datetime.fromisoformat(wc["expires_at"])
        assert woo.coupon(wc["code"]).usage_limit == 1
        with pytest.raises(CheckoutRefused, match="expired"):
            shopify.checkout(us["code"], {"shampoo-refill": 1}, at=expires)
        assert shopify.checkout(us["code"], {"shampoo-refill": 1}) == Decimal("14.00")
        with pytest.raises(CheckoutRefused):
            shopify.checkout(us["code"], {"shampoo-refill": 1})
        percent = Decimal(jo["offer"]["percent"])
        assert shopify.checkout(jo["code"], {"IPOD2008BLACK": 1}) == Decimal("199.00") * (100 - percent) / 100
        assert woo.checkout(wc["code"], [("serum", 2)]) == Decimal("60.00")
        with pytest.raises(CouponRefused):
            woo.checkout(wc["code"], [("serum", 2)])
        # And the SKU the WooCommerce store lacks ends failed, shop_rejected, with no message
        assert (bob["state"], bob["reason"], bob["sent_at"]) == ("failed", "shop_rejected", None)
        assert bob["code_synced_at"] is None
        # ...with the store's own words in the shop's dead letters
        dead = json.loads(encore("dead-letters", "--json", "--shop", "glow-wc", env=settings).stdout)
        [letter] = [row for row in dead if row["kind"] == "delivery"]
        assert (letter["shop"], letter["source"], letter["reason"]) == ("glow-wc", "bob", "shop_rejected")
        assert "gone" in letter["raw"], letter
        assert "shop_rejected" not in encore("dead-letters", "--json", "--shop", "glow-us", env=settings).stdout
        # When the seller adds the SKU and replays it, the code is made in the store, then sent
        woo.add_product("gone", "9.00")
        replayed = encore("replay", letter["id"], env=settings)
        assert replayed.returncode == 0, replayed.stdout + replayed.stderr
        bob = wait_until(lambda: next((r for r in deliveries() if r["customer_id"] == "bob" and r["state"] == "sent"),
                                      None), timeout=60, interval=0.5)
        assert woo.coupon(bob["code"]) is not None and bob["code_synced_at"] <= bob["sent_at"]

        # When glow-us's next order uses jo's code (Shopify's orders/paid with the code)
        again = shopify_order(5002, customer_id=7001, country=country, email="jo@example.com",
                              discount_codes=[jo["code"].lower()])
        assert serve.shopify(again, "w-3", secret).status_code == 200
        # Then the coupon is redeemed (rule 13)
        wait_until(lambda: next(r for r in deliveries() if r["code"] == jo["code"])["redeemed_at"], timeout=60,
                   interval=0.5)

        # And a code redeems once by `POST /coupons/{code}/redeem`, in any case (rule 13)
        assert serve.redeem(wc["code"].lower(), "wc-order-9").status_code == 200
        assert serve.redeem(wc["code"], "wc-order-10").status_code == 409

        # When glow-us refunds order o-1 (glow-wc has an order o-1 too)
        refund = {"id": "r-1", "type": "order.refunded", "occurred_at": order_paid("x")["occurred_at"],
                  "shop": "glow-us", "data": {"order_id": "o-1"}}
        assert encore("emit", "-", env=settings, stdin=jsonl(refund)).returncode == 0
        processes.append(EncoreDaemon(["beat"], settings, tmp_path / "beat.log"))  # removals run on its schedule
        # Then glow-us's coupon is void and its code leaves the Shopify store within a minute;
        # glow-wc's coupon of its own order o-1 stays, in its store
        wait_until(lambda: us["code"] not in shopify.codes(), timeout=60, interval=0.5)
        rows = {row["code"]: row for row in deliveries()}
        assert rows[us["code"]]["void"] is True and rows[wc["code"]]["void"] is False
        assert woo.coupon(wc["code"]) is not None
    except AssertionError as failure:
        raise AssertionError(f"{failure}\n" + "\n".join(f"{p.process.args[1]}:\n{p.log()}" for p in processes)) \
            from failure
    finally:
        for process in processes:
            process.stop()

    # And the reports per shop say what happened in each
    status = json.loads(encore("status", "--json", "--shop", "glow-wc", env=settings).stdout)
    assert (status["deliveries"]["sent"], status["deliveries"]["failed"]) == (3, 0)
    status = json.loads(encore("status", "--json", "--shop", "glow-us", env=settings).stdout)
    assert (status["deliveries"]["sent"], status["deliveries"]["failed"]) == (2, 0)
    # ...and a customer id found in both shops shows both coupons
    both = json.loads(encore("deliveries", "--customer", "ann", "--json", env=settings).stdout)
    assert sorted(row["shop"] for row in both) == ["glow-us", "glow-wc"]


def test_check_prints_one_line_per_shop_and_names_the_shop_whose_token_is_wrong(env, stand_ins):
    settings, _smtp = env

    def shop_lines(result: subprocess.CompletedProcess) -> dict[str, str]:
        lines = [line for line in result.stdout.splitlines() if "glow-us" in line or "glow-wc" in line]
        assert len(lines) == 2, result.stdout
        return {("glow-us" if "glow-us" in line else "glow-wc"): line for line in lines}

    good = encore("check", env=settings)
    assert good.returncode == 0, good.stdout + good.stderr
    lines = shop_lines(good)
    assert all("ERROR" not in line and "FAIL" not in line.upper() for line in lines.values()), lines
    bad = encore("check", env={**settings, "GLOW_US_SHOPIFY_TOKEN": "shpat_wrong"})
    assert bad.returncode == 1, bad.stdout
    lines = shop_lines(bad)
    assert "ERROR" in lines["glow-us"] and "ERROR" not in lines["glow-wc"], lines
    bad = encore("check", env={**settings, "GLOW_WC_SECRET": "cs_wrong"})
    assert bad.returncode == 1, bad.stdout
    lines = shop_lines(bad)
    assert "ERROR" in lines["glow-wc"] and "ERROR" not in lines["glow-us"], lines


@pytest.mark.parametrize("command", [["emit", "-"], ["worker"], ["beat"], ["deliveries", "--json"],
                                     ["status", "--json"], ["dead-letters"], ["check"]])
def test_a_broken_shops_file_stops_every_command_naming_the_file_the_shop_and_the_field(
        tmp_path, env, command):
    settings, _smtp = env
    path = Path(settings["ENCORE_SHOPS_FILE"])
    path.write_text(path.read_text().replace('domain = "glow-us.myshopify.com"', 'domain = "glow-us.example"'))
    result = encore(*command, env=settings, stdin="", timeout=60)
    assert result.returncode not in (0, None), result.stdout + result.stderr
    said = result.stderr if command != ["check"] else result.stdout + result.stderr  # check reports on stdout
    assert str(path) in said and "shops.glow-us.domain" in said, result.stdout + result.stderr


def test_the_demo_under_a_shops_file_without_default_says_why_nothing_was_accepted_and_stops(tmp_path, env):
    # The demo's sample events name no shop, so under SPEC section 7's file they belong to
    # no shop: it says so at once instead of waiting for deliveries that cannot come
    settings, _smtp = env
    settings = {k: v for k, v in settings.items() if k not in ("ENCORE_DATABASE_URL", "ENCORE_BROKER_URL")}
    demo = subprocess.run([ENCORE_SCRIPT, "demo", "--buyers", "2"], cwd=tmp_path, env=settings, text=True,
                          capture_output=True, timeout=90)
    assert demo.returncode == 1, demo.stdout + demo.stderr
    assert "shop: unknown shop 'default'" in demo.stdout and "no sample event was accepted" in demo.stdout
