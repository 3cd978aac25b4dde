"""The WooCommerce stand-in refuses what WooCommerce refuses, so that a client passing
against it is not passing against a permissive echo. Requests here are made by hand (and
OAuth signed by oauthlib, a standard implementation), not by Encore's client."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import requests
from oauthlib.oauth1 import SIGNATURE_HMAC_SHA256, SIGNATURE_TYPE_QUERY
from requests_oauthlib import OAuth1

from coupons.codes import new_codes
from platforms.base import DiscountShape
from platforms.woocommerce import WooCommercePlatform
from tests.standins.woocommerce import CouponRefused, WooCommerceStandIn
from tests.support import FakeClock, free_port, wait_until

KEY, SECRET = "ck_glow", "cs_glow"
NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
API = "/wp-json/wc/v3/"


@pytest.fixture()
def clock() -> FakeClock:
    return FakeClock(NOW)


@pytest.fixture()
def shop(clock: FakeClock) -> Iterator[WooCommerceStandIn]:
    """Reached over HTTPS through a TLS proxy, so that HTTP Basic is WooCommerce's way in."""
    with WooCommerceStandIn(consumer_key=KEY, consumer_secret=SECRET, clock=clock, behind_tls=True) as standin:
        standin.add_product("SERUM", "40.00")
        standin.add_product("CLEANSER", "10.00")
        yield standin


def batch(shop: WooCommerceStandIn, body: dict) -> requests.Response:
    return requests.post(shop.url + API + "coupons/batch", json=body, auth=(KEY, SECRET), timeout=10)


def coupon(code: str, **fields) -> dict:
    return {"code": code, "discount_type": "percent", "amount": "10", **fields}


def errors(response: requests.Response) -> list[str | None]:
    return [(item.get("error") or {}).get("code") for item in response.json()["create"]]


# -- authentication -----------------------------------------------------------------------


def test_a_request_without_credentials_fails_the_routes_permission_check(shop):
    answer = requests.get(shop.url + API + "coupons", timeout=10)

    assert answer.status_code == 401 and answer.json()["code"] == "woocommerce_rest_cannot_view"


def test_basic_auth_over_plain_http_is_not_read(clock):
    """WooCommerce reads HTTP Basic only over HTTPS; over HTTP it wants OAuth 1.0a."""
    with WooCommerceStandIn(consumer_key=KEY, consumer_secret=SECRET, clock=clock) as plain:
        answer = requests.get(plain.url + API + "coupons", auth=(KEY, SECRET), timeout=10)

    assert answer.status_code == 401 and answer.json()["code"] == "woocommerce_rest_cannot_view"


def test_a_wrong_secret_over_basic_is_named(shop):
    answer = requests.get(shop.url + API + "coupons", auth=(KEY, "cs_wrong"), timeout=10)

    assert answer.status_code == 401 and answer.json()["message"] == "Consumer secret is invalid."


def test_a_standard_oauth1_signature_is_accepted_once(clock):
    clock.now = datetime.now(UTC)  # oauthlib stamps requests with the real time
    with WooCommerceStandIn(consumer_key=KEY, consumer_secret=SECRET, clock=clock) as plain:
        plain.add_product("SERUM", "40.00")
        signed = requests.Request("GET", plain.url + API + "products", params={"sku": "SERUM"},
                                  auth=OAuth1(KEY, SECRET, signature_method=SIGNATURE_HMAC_SHA256,
                                              signature_type=SIGNATURE_TYPE_QUERY)).prepare()
        with requests.Session() as session:
            first = session.send(signed, timeout=10)
            replay = session.send(signed, timeout=10)
            tampered = session.get(signed.url.replace("sku=SERUM", "sku=CLEANSER"), timeout=10)
        clock.now += timedelta(minutes=16)
        stale = requests.Session().send(
            requests.Request("GET", plain.url + API + "products",
                             auth=OAuth1(KEY, SECRET, signature_method=SIGNATURE_HMAC_SHA256,
                                         signature_type=SIGNATURE_TYPE_QUERY)).prepare(), timeout=10)

    assert first.status_code == 200 and first.json()[0]["sku"] == "SERUM"
    assert replay.status_code == 401 and "nonce has already been used" in replay.json()["message"]
    assert tampered.status_code == 401 and "signature does not match" in tampered.json()["message"]
    assert stale.status_code == 401 and stale.json()["message"] == "Invalid timestamp."


def test_a_read_only_key_cannot_write(clock):
    with WooCommerceStandIn(consumer_key=KEY, consumer_secret=SECRET, clock=clock, behind_tls=True,
                            permissions="read") as read_only:
        assert requests.get(read_only.url + API + "coupons", auth=(KEY, SECRET), timeout=10).status_code == 200
        answer = batch(read_only, {"create": [coupon("A1")]})

    assert answer.status_code == 401
    assert answer.json()["message"] == "The API key provided does not have write permissions."


# -- batches and coupon fields ------------------------------------------------------------


def test_more_than_100_items_is_refused_whole(shop):
    answer = batch(shop, {"create": [coupon(f"C{i}") for i in range(101)]})

    assert answer.status_code == 413
    assert answer.json()["code"] == "woocommerce_rest_request_entity_too_large"
    assert answer.json()["message"] == "Unable to accept more than 100 items for this request."
    assert shop.codes() == set()


def test_a_bad_item_is_refused_alone_inside_a_200(shop):
    answer = batch(shop, {"create": [
        coupon("GOOD-1"),
        coupon("NUMBER", amount=10),
        coupon("BOGO", discount_type="buy_x_get_y"),
        coupon(""),
        coupon("good-1"),
        coupon("NEGATIVE", amount="-5"),
        coupon("WITH-ID", id=7),
        coupon("IDS-AS-TEXT", product_ids="5"),
    ]})

    assert answer.status_code == 200
    assert errors(answer) == [
        None,
        "rest_invalid_param",
        "coupon_invalid_discount_type",
        "woocommerce_rest_empty_coupon_code",
        "woocommerce_rest_coupon_code_already_exists",
        "coupon_invalid_amount",
        "woocommerce_rest_shop_coupon_exists",
        "rest_invalid_param",
    ]
    assert answer.json()["create"][1]["id"] == 0
    assert shop.codes() == {"good-1"}  # stored lower case: a code is case-insensitive


def test_fields_that_would_change_a_checkout_unmodelled_are_refused(shop):
    answer = batch(shop, {"create": [coupon("SALE", exclude_sale_items=True)]})

    assert errors(answer) == ["standin_unsupported"]


def test_date_expires_gmt_is_ignored_and_a_date_without_offset_is_site_time(clock):
    """WC_Coupon has no setter for date_expires_gmt, and reads an offset-less date in the
    site's zone: the traps a client must avoid."""
    with WooCommerceStandIn(consumer_key=KEY, consumer_secret=SECRET, clock=clock, behind_tls=True,
                            site_timezone="Asia/Jakarta") as jakarta:
        jakarta.add_product("SERUM", "40.00")
        batch(jakarta, {"create": [coupon("GMT-ONLY", date_expires_gmt="2026-03-20T00:00:00"),
                                   coupon("LOCAL", date_expires="2026-03-20T07:00:00"),
                                   coupon("OFFSET", date_expires="2026-03-20T00:00:00+02:00"),
                                   coupon("GARBLED", date_expires="in two weeks")]})

        assert jakarta.coupon("GMT-ONLY").date_expires is None
        assert jakarta.coupon("LOCAL").date_expires == datetime(2026, 3, 20, 0, 0, tzinfo=UTC)
        assert jakarta.coupon("OFFSET").date_expires == datetime(2026, 3, 19, 22, 0, tzinfo=UTC)
        # strtotime() fails and PHP carries on with 0: the coupon is created already expired.
        with pytest.raises(CouponRefused, match="expired"):
            jakarta.checkout("GARBLED", [("SERUM", 1)])


def test_a_batch_delete_removes_for_good_and_names_unknown_ids(shop):
    created = batch(shop, {"create": [coupon("GONE")]}).json()["create"][0]

    answer = batch(shop, {"delete": [created["id"], 999999]}).json()["delete"]

    assert answer[0]["code"] == "gone"
    assert answer[1]["error"]["code"] == "woocommerce_rest_shop_coupon_invalid_id"
    assert requests.get(shop.url + API + "coupons", params={"code": "GONE"}, auth=(KEY, SECRET),
                        timeout=10).json() == []


def test_products_by_sku_find_variations(shop):
    parent = shop.add_product("KIT", "25.00", type="variable")
    shop.add_product("KIT-ROSE", "27.00", type="variation", parent_id=parent)

    found = requests.get(shop.url + API + "products", params={"sku": "KIT-ROSE"}, auth=(KEY, SECRET),
                         timeout=10).json()

    assert [(p["sku"], p["type"], p["parent_id"], p["price"]) for p in found] == [
        ("KIT-ROSE", "variation", parent, "27.00")]


def test_an_unknown_route_is_rest_no_route(shop):
    answer = requests.get(shop.url + "/wp-json/wc/v3/nothing", auth=(KEY, SECRET), timeout=10)

    assert answer.status_code == 404 and answer.json()["code"] == "rest_no_route"


def test_injected_faults_answer_as_a_host_does(shop):
    shop.fail_next(1, status=503)

    answer = requests.get(shop.url + API + "coupons", auth=(KEY, SECRET), timeout=10)

    assert answer.status_code == 503 and answer.headers["Content-Type"] == "text/html"
    assert requests.get(shop.url + API + "coupons", auth=(KEY, SECRET), timeout=10).status_code == 200


# -- checkout -----------------------------------------------------------------------------


def test_checkout_refuses_what_woocommerce_refuses(shop, clock):
    product_ids = [p["id"] for p in requests.get(shop.url + API + "products", params={"sku": "SERUM"},
                                                 auth=(KEY, SECRET), timeout=10).json()]
    shop.add_coupon("ONLY-SERUM", discount_type="percent", amount="10", product_ids=product_ids)
    shop.add_coupon("BIG-SPEND", discount_type="fixed_cart", amount="5", minimum_amount="100")
    shop.add_coupon("FOR-ANA", discount_type="fixed_cart", amount="5", email_restrictions=["ana@example.com"])
    shop.add_coupon("PAST", discount_type="fixed_cart", amount="5", date_expires="2026-03-01T00:00:00Z")

    with pytest.raises(CouponRefused, match='Coupon "nope" does not exist!'):
        shop.checkout("NOPE", [("SERUM", 1)])
    with pytest.raises(CouponRefused, match="not applicable to selected products"):
        shop.checkout("ONLY-SERUM", [("CLEANSER", 1)])
    with pytest.raises(CouponRefused, match="minimum spend"):
        shop.checkout("BIG-SPEND", [("SERUM", 1)])
    with pytest.raises(CouponRefused, match="valid email"):
        shop.checkout("FOR-ANA", [("SERUM", 1)], email="bo@example.com")
    with pytest.raises(CouponRefused, match="expired"):
        shop.checkout("PAST", [("SERUM", 1)])
    assert shop.checkout("FOR-ANA", [("SERUM", 1)], email="Ana@Example.com") == Decimal("35.00")


def test_checkout_arithmetic_is_woocommerces(shop):
    shop.add_product("SAMPLE", "3.33")
    shop.add_product("MASK", "20.00")
    shop.add_product("PATCH", "4.00")
    shop.add_coupon("FIFTEEN", discount_type="percent", amount="15")
    shop.add_coupon("TEN-OFF-CART", discount_type="fixed_cart", amount="10")
    shop.add_coupon("FIVE-EACH", discount_type="fixed_product", amount="5")
    shop.add_coupon("FIVE-ONE", discount_type="fixed_product", amount="5", limit_usage_to_x_items=1)

    # 15% of 9.99 is 1.4985: floored per line to 1.49, then the cent the whole cart is owed.
    assert shop.checkout("FIFTEEN", [("SAMPLE", 3)]) == Decimal("8.49")
    # A fixed cart discount is spread over every unit in the cart.
    assert shop.checkout("TEN-OFF-CART", [("MASK", 1), ("PATCH", 2)]) == Decimal("18.00")
    assert shop.checkout("FIVE-EACH", [("SERUM", 2)]) == Decimal("70.00")
    assert shop.checkout("FIVE-ONE", [("SERUM", 2)]) == Decimal("75.00")


# -- another process ----------------------------------------------------------------------


def test_it_runs_as_a_process_that_encore_can_use(tmp_path):
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.standins.woocommerce", "--port", str(port), "--key", KEY,
         "--secret", SECRET, "--seed-sku", "SERUM=40.00"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until(lambda: _answers(url), timeout=30)
        woo = WooCommercePlatform(url, KEY, SECRET)
        now = datetime.now(UTC)
        offer = DiscountShape("percent_off", "SERUM", "USD", None, Decimal("20"), now, now + timedelta(days=7))
        codes = new_codes(3)

        assert woo.create_codes(offer, codes).synced == set(codes)
    finally:
        process.terminate()
        process.wait(timeout=10)


def _answers(url: str) -> bool:
    try:
        return requests.get(url + API + "coupons", timeout=1).status_code == 401
    except requests.ConnectionError:
        return False
