"""The Shopify Admin stand-in refuses what Shopify refuses.

A stand-in that echoes anything back proves nothing about the client; these tests
keep it honest: GraphQL types and required arguments, the token, the cost bucket,
the input array limit and the asynchronous bulk creation.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import requests

from platforms.shopify_api import API_VERSION
from tests.standins.shopify_admin import SCHEMA_VERSION, CheckoutRefused, ShopifyAdmin
from tests.support import wait_until

NOW = datetime.now(UTC).replace(microsecond=0)

BULK_ADD = """mutation Add($discountId: ID!, $codes: [DiscountRedeemCodeInput!]!) {
  discountRedeemCodeBulkAdd(discountId: $discountId, codes: $codes) {
    bulkCreation { id done } userErrors { code field message } } }"""
BULK_STATUS = """query Status($id: ID!) {
  discountRedeemCodeBulkCreation(id: $id) { done importedCount failedCount
    codes(first: 10) { nodes { code errors { code message } } } } }"""
CREATE = """mutation Create($input: DiscountCodeBasicInput!) {
  discountCodeBasicCreate(basicCodeDiscount: $input) { codeDiscountNode { id } userErrors { code field message } } }"""


@pytest.fixture()
def shop():
    admin = ShopifyAdmin(bulk_delay=0.0)
    admin.seed_variant("SERUM", "30.00")
    with admin:
        yield admin


def post(shop: ShopifyAdmin, query: str, variables: dict | None = None, *, token: str | None = None) -> requests.Response:
    return requests.post(shop.url, json={"query": query, "variables": variables or {}},
                         headers={"X-Shopify-Access-Token": token or shop.token}, timeout=10)


def basic_input(shop: ShopifyAdmin, code: str, **changes) -> dict:
    variant = next(iter(shop._variants))
    base = {
        "title": "Spring", "code": code, "startsAt": (NOW - timedelta(minutes=1)).isoformat(),
        "endsAt": (NOW + timedelta(days=7)).isoformat(), "usageLimit": 1, "context": {"all": "ALL"},
        "customerGets": {"value": {"percentage": 0.2}, "items": {"products": {"productVariantsToAdd": [variant]}}},
    }
    base.update(changes)
    return base


def test_the_stand_in_serves_the_version_the_client_pins():
    # Bumping API_VERSION without re-reading the docs and the stand-in's schema fails here.
    assert SCHEMA_VERSION == API_VERSION


def test_a_wrong_type_is_a_graphql_error_not_an_echo(shop):
    answer = post(shop, CREATE, {"input": basic_input(shop, "SPRING", usageLimit="one")})
    assert answer.status_code == 200
    body = answer.json()
    assert "data" not in body or body["data"] is None
    assert "Int cannot represent" in body["errors"][0]["message"]
    assert shop.codes() == set()


def test_a_missing_required_argument_and_an_unknown_field_are_refused(shop):
    missing = post(shop, "mutation { discountRedeemCodeBulkAdd(discountId: \"x\") { userErrors { message } } }").json()
    assert "codes" in missing["errors"][0]["message"]
    unknown = post(shop, "{ shop { name planName } }").json()
    assert "planName" in unknown["errors"][0]["message"]
    bad_input_field = post(shop, CREATE, {"input": {**basic_input(shop, "X1"), "customerEligibility": "ALL"}}).json()
    assert "customerEligibility" in bad_input_field["errors"][0]["message"]


def test_fields_required_when_creating_come_back_as_user_errors(shop):
    given = basic_input(shop, "SPRING")
    del given["title"], given["context"]
    payload = post(shop, CREATE, {"input": given}).json()["data"]["discountCodeBasicCreate"]
    assert payload["codeDiscountNode"] is None
    assert {(e["code"], e["field"][-1]) for e in payload["userErrors"]} == {("BLANK", "title"), ("BLANK", "context")}
    out_of_range = post(shop, CREATE, {"input": basic_input(shop, "SPRING", customerGets={
        "value": {"percentage": 30}, "items": {"products": {"productVariantsToAdd": [next(iter(shop._variants))]}}})})
    assert out_of_range.json()["data"]["discountCodeBasicCreate"]["userErrors"][0]["code"] == "VALUE_OUTSIDE_RANGE"


def test_a_code_is_unique_in_the_shop_whatever_its_case(shop):
    assert not post(shop, CREATE, {"input": basic_input(shop, "SPRING")}).json()["data"]["discountCodeBasicCreate"]["userErrors"]
    again = post(shop, CREATE, {"input": basic_input(shop, "spring")}).json()["data"]["discountCodeBasicCreate"]
    assert again["userErrors"][0]["code"] == "TAKEN"


def test_the_token_content_type_and_path_are_checked(shop):
    refused = post(shop, "{ shop { name } }", token="shpat_wrong")
    assert refused.status_code == 401
    assert "Invalid API key or access token" in refused.json()["errors"]
    as_form = requests.post(shop.url, data="query={shop{name}}", headers={"X-Shopify-Access-Token": shop.token,
                            "Content-Type": "application/x-www-form-urlencoded"}, timeout=10)
    assert as_form.status_code == 400
    other_version = requests.post(shop.url.replace(SCHEMA_VERSION, "2025-07"), json={"query": "{ shop { name } }"},
                                  headers={"X-Shopify-Access-Token": shop.token}, timeout=10)
    assert other_version.status_code == 404


def test_every_answer_reports_its_cost_and_the_bucket():
    with ShopifyAdmin(bucket=100, restore=1) as shop:
        shop.seed_variant("SERUM", "30.00")
        body = post(shop, "{ productVariants(first: 25, query: \"sku:SERUM\") { nodes { id price } } }").json()
        cost = body["extensions"]["cost"]
        assert cost["requestedQueryCost"] == 2 + 25 * 1
        assert cost["actualQueryCost"] == 2 + 1 * 1  # one variant came back: the rest is refunded
        assert cost["throttleStatus"]["maximumAvailable"] == 100
        assert cost["throttleStatus"]["currentlyAvailable"] <= 100 - 3 + 1


def test_a_request_dearer_than_the_bucket_holds_is_throttled_without_running():
    with ShopifyAdmin(bucket=100, restore=1) as shop:
        for number in range(40):
            shop.seed_variant(f"S{number}", "30.00")
        query = "{ productVariants(first: 60) { nodes { id } } }"  # requests 62 points, costs 42
        assert "data" in post(shop, query).json()
        throttled = post(shop, query)  # about 58 points left
        assert throttled.status_code == 200
        body = throttled.json()
        assert body["errors"][0]["extensions"]["code"] == "THROTTLED"
        assert body["extensions"]["cost"]["actualQueryCost"] is None
        assert "data" not in body
        assert shop.stats.throttled == 1


def test_a_single_request_over_1000_points_is_refused(shop):
    page = "productVariants(first: 250) { nodes { id product { id } } }"
    body = post(shop, "{ a: " + page + " b: " + page + " }").json()
    assert body["errors"][0]["extensions"]["code"] == "MAX_COST_EXCEEDED"


def test_bulk_add_takes_at_most_250_codes(shop):
    discount = post(shop, CREATE, {"input": basic_input(shop, "FIRST")}).json()
    discount_id = discount["data"]["discountCodeBasicCreate"]["codeDiscountNode"]["id"]
    body = post(shop, BULK_ADD, {"discountId": discount_id, "codes": [{"code": f"C{i}"} for i in range(251)]}).json()
    assert body["errors"][0]["extensions"]["code"] == "MAX_INPUT_SIZE_EXCEEDED"
    assert shop.codes() == {"FIRST"}


def test_bulk_codes_work_only_once_their_creation_is_done(shop):
    discount = post(shop, CREATE, {"input": basic_input(shop, "FIRST")}).json()
    discount_id = discount["data"]["discountCodeBasicCreate"]["codeDiscountNode"]["id"]
    shop.hold_bulk_jobs()
    added = post(shop, BULK_ADD, {"discountId": discount_id,
                                  "codes": [{"code": "SECOND"}, {"code": "first"}]}).json()
    bulk = added["data"]["discountRedeemCodeBulkAdd"]["bulkCreation"]
    assert bulk["done"] is False
    assert post(shop, BULK_STATUS, {"id": bulk["id"]}).json()["data"]["discountRedeemCodeBulkCreation"]["done"] is False
    with pytest.raises(CheckoutRefused, match="unknown code"):
        shop.checkout("SECOND", {"SERUM": 1})
    shop.release_bulk_jobs()
    status = post(shop, BULK_STATUS, {"id": bulk["id"]}).json()["data"]["discountRedeemCodeBulkCreation"]
    assert (status["done"], status["importedCount"], status["failedCount"]) == (True, 1, 1)
    failed = [node for node in status["codes"]["nodes"] if node["errors"]]
    assert failed[0]["code"] == "first" and failed[0]["errors"][0]["code"] == "TAKEN"
    assert shop.checkout("SECOND", {"SERUM": 1}) == 24


def test_search_values_are_quoted_and_escaped_as_shopify_reads_them(shop):
    shop.seed_variant('KIT "MINI" 2\\B', "12.00")
    query = 'query F($q: String!) { productVariants(first: 5, query: $q) { nodes { sku } } }'
    found = post(shop, query, {"q": 'sku:"KIT \\"MINI\\" 2\\\\B"'}).json()["data"]["productVariants"]["nodes"]
    assert [node["sku"] for node in found] == ['KIT "MINI" 2\\B']


def test_a_separate_process_can_run_and_inspect_it(tmp_path):
    import subprocess
    import sys

    process = subprocess.Popen(
        [sys.executable, "-m", "tests.standins.shopify_admin", "--seed-sku", "SERUM=30.00", "--latency-ms", "1"],
        stdout=subprocess.PIPE, text=True)
    try:
        url = process.stdout.readline().strip() if process.stdout else ""
        assert url.endswith(f"/admin/api/{SCHEMA_VERSION}/graphql.json")
        body = requests.post(url, json={"query": "{ productVariants(first: 1) { nodes { sku price } } }"},
                             headers={"X-Shopify-Access-Token": "shpat_standin"}, timeout=10).json()
        assert body["data"]["productVariants"]["nodes"] == [{"sku": "SERUM", "price": "30.00"}]
        base = url.split("/admin/")[0]
        assert requests.get(base + "/_standin/codes", timeout=10).json() == {"codes": []}
        refused = requests.post(base + "/_standin/checkout", json={"code": "NOPE", "lines": {"SERUM": 1}}, timeout=10)
        assert refused.json() == {"refused": "unknown code"}
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_held_jobs_are_pending_until_released(shop):
    discount = post(shop, CREATE, {"input": basic_input(shop, "FIRST")}).json()
    discount_id = discount["data"]["discountCodeBasicCreate"]["codeDiscountNode"]["id"]
    shop.hold_bulk_jobs()
    post(shop, BULK_ADD, {"discountId": discount_id, "codes": [{"code": "LATER"}]})
    assert shop.pending_bulk_jobs() == 1
    shop.release_bulk_jobs()
    wait_until(lambda: "LATER" in shop.codes())
