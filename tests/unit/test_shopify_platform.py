"""Encore's codes work at a Shopify checkout: the client against the Admin stand-in.

The stand-in executes real GraphQL over the documented schema, keeps a cost bucket
and runs bulk creation asynchronously, and its checkout prices an order the way
Shopify applies each discount type; so these tests check what a shopper would see.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import requests

from platforms.base import DiscountShape, PlatformError
from platforms.shopify import ShopifyPlatform
from platforms.shopify_api import API_VERSION, CostPacer
from tests.standins.shopify_admin import CheckoutRefused, ShopifyAdmin
from tests.support import free_port, wait_until

NOW = datetime.now(UTC).replace(microsecond=0)
EXPIRY = NOW + timedelta(days=7)


def shape(offer: str = "percent_off", sku: str = "CREAM", *, price: str | None = None, percent: str | None = None,
          currency: str = "USD", expires_at: datetime = EXPIRY) -> DiscountShape:
    if offer == "percent_off" and percent is None:
        percent = "30"
    if offer == "second_half_price":
        percent = "50"
    return DiscountShape(offer, sku, currency, None if price is None else Decimal(price),  # type: ignore[arg-type]
                         None if percent is None else Decimal(percent), NOW - timedelta(minutes=1), expires_at)


def codes(prefix: str, count: int) -> list[str]:
    return [f"{prefix}{number:05d}" for number in range(count)]


@pytest.fixture()
def shop():
    # Shopify's standard bucket, restored ten times faster than the plan's 100 points/s
    # so that a test waits less; the pacing tests below use buckets of their own.
    admin = ShopifyAdmin(bulk_delay=0.02, restore=1000)
    for sku, price in {"REFILL-1": "20.00", "SERUM": "30.00", "SERUM-XL": "45.00", "CREAM": "50.00",
                       "OTHER": "10.00"}.items():
        admin.seed_variant(sku, price)
    with admin:
        yield admin


def client_for(shop: ShopifyAdmin, **options) -> ShopifyPlatform:
    return ShopifyPlatform(shop.domain, shop.token, api_url=shop.url, **options)


@pytest.fixture()
def client(shop):
    return client_for(shop)


class Crash(BaseException):
    """Stands for the worker being killed: nothing in the client catches it."""


class CrashAfter(requests.Session):
    """A session whose process dies right after Shopify answered `operation`."""

    def __init__(self, operation: str) -> None:
        super().__init__()
        self.operation = operation

    def post(self, url, **kwargs):
        response = super().post(url, **kwargs)
        if kwargs["json"]["operationName"] == self.operation:
            raise Crash()
        return response


# --- each offer prices right at the checkout ------------------------------------------


def test_refill_one_unit_costs_exactly_the_offer_price(shop, client):
    outcome = client.create_codes(shape("refill", "REFILL-1", price="14.00"), ["REFILLA", "REFILLB"])
    assert outcome.synced == {"REFILLA", "REFILLB"}
    assert shop.checkout("REFILLA", {"REFILL-1": 1}) == Decimal("14.00")
    # The offer is one unit: a second unit in the same order costs the shop's price.
    assert shop.checkout("REFILLB", {"REFILL-1": 2}) == Decimal("34.00")


def test_second_half_price_gives_the_second_unit_at_half(shop, client):
    outcome = client.create_codes(shape("second_half_price", "SERUM"), ["HALFA", "HALFB", "HALFC"])
    assert outcome.synced == {"HALFA", "HALFB", "HALFC"}
    assert shop.checkout("HALFA", {"SERUM": 2}) == Decimal("45.00")
    assert shop.checkout("HALFB", {"SERUM": 4}) == Decimal("105.00")  # once per order
    with pytest.raises(CheckoutRefused):
        shop.checkout("HALFC", {"SERUM": 1})


def test_percent_off_takes_that_share_off_that_sku_only(shop, client):
    assert client.create_codes(shape("percent_off", "CREAM", percent="30"), ["PCTA", "PCTB"]).synced == {"PCTA", "PCTB"}
    assert shop.checkout("PCTA", {"CREAM": 1, "OTHER": 1}) == Decimal("45.00")
    with pytest.raises(CheckoutRefused, match="does not apply"):
        shop.checkout("PCTB", {"OTHER": 2})


def test_a_code_works_once(shop, client):
    client.create_codes(shape(), ["ONCE1"])
    shop.checkout("ONCE1", {"CREAM": 1})
    with pytest.raises(CheckoutRefused, match="usage limit"):
        shop.checkout("ONCE1", {"CREAM": 1})


def test_a_code_stops_working_at_the_coupons_expiry(shop, client):
    client.create_codes(shape(), ["LATE1", "LATE2"])
    discount = shop.discount_of("LATE1")
    assert discount is not None and discount.ends_at == EXPIRY and discount.usage_limit == 1
    assert shop.checkout("LATE1", {"CREAM": 1}, at=EXPIRY - timedelta(seconds=1)) == Decimal("35.00")
    with pytest.raises(CheckoutRefused, match="expired"):
        shop.checkout("LATE2", {"CREAM": 1}, at=EXPIRY)


def test_skus_with_quotes_spaces_or_a_longer_twin_are_found_exactly(shop, client):
    shop.seed_variant('KIT "MINI" 2\\B', "12.00")
    assert client.create_codes(shape("percent_off", 'KIT "MINI" 2\\B', percent="50"), ["KIT1"]).synced == {"KIT1"}
    assert shop.checkout("KIT1", {'KIT "MINI" 2\\B': 1}) == Decimal("6.00")
    # "SERUM" is a prefix of "SERUM-XL": the discount must be on SERUM alone.
    client.create_codes(shape("percent_off", "SERUM", percent="10"), ["TWIN1"])
    with pytest.raises(CheckoutRefused):
        shop.checkout("TWIN1", {"SERUM-XL": 1})


# --- sharing, bulk and idempotency ----------------------------------------------------


def test_codes_of_identical_offers_share_one_discount_across_workers(shop):
    first, second = client_for(shop), client_for(shop)  # two processes, two caches
    first.create_codes(shape("refill", "REFILL-1", price="14.00"), ["SAME1"])
    second.create_codes(shape("refill", "REFILL-1", price="14"), ["SAME2"])
    first.create_codes(shape("refill", "REFILL-1", price="15.00"), ["OTHER1"])
    assert shop.discount_of("SAME1") is shop.discount_of("SAME2")
    assert shop.discount_of("OTHER1") is not shop.discount_of("SAME1")
    assert len(shop.discounts()) == 2


def test_600_codes_go_in_bulk_and_count_only_once_the_jobs_are_done(shop, client):
    batch = codes("BULK", 600)
    shop.hold_bulk_jobs()
    result = {}
    worker = threading.Thread(target=lambda: result.update(outcome=client.create_codes(shape(), batch)))
    worker.start()

    def polls() -> int:
        return sum(1 for operation, _cost, _left in shop.stats.costs if operation == "EncoreBulkStatus")

    # Once it has asked about the three jobs more than once, it must still be waiting:
    # no code is reported before Shopify finished its job.
    wait_until(lambda: polls() > 3 or not worker.is_alive())
    assert worker.is_alive() and shop.pending_bulk_jobs() == 3
    assert shop.codes() == {batch[0]}  # the discount's own code; the bulk codes are not usable yet
    shop.release_bulk_jobs()
    worker.join(timeout=60)
    assert result["outcome"].synced == set(batch)
    assert shop.stats.bulk_add_sizes == [250, 250, 99]
    assert shop.codes() == set(batch)


def test_a_bulk_job_that_does_not_finish_in_time_leaves_its_codes_to_retry(shop):
    batch = codes("SLOW", 30)
    shop.hold_bulk_jobs()
    outcome = client_for(shop, bulk_timeout=0.3).create_codes(shape(), batch)
    assert outcome.synced == {batch[0]}
    assert set(outcome.transient) == set(batch[1:])
    assert "not done" in outcome.transient[batch[1]]
    shop.release_bulk_jobs()
    again = client_for(shop).create_codes(shape(), batch)
    assert again.synced == set(batch) and not again.transient and not again.permanent
    assert shop.codes() == set(batch)
    assert len(shop.discounts()) == 1


def test_running_a_batch_twice_changes_nothing(shop, client):
    batch = codes("TWICE", 300)
    assert client.create_codes(shape(), batch).synced == set(batch)
    again = client.create_codes(shape(), batch)
    assert again.synced == set(batch) and not again.transient and not again.permanent
    assert shop.codes() == set(batch)
    assert len(shop.discounts()) == 1


@pytest.mark.parametrize("dies_after", ["EncoreCreateBasic", "EncoreBulkAdd"])
def test_a_worker_killed_mid_sync_leaves_no_orphan_and_no_missing_code(shop, dies_after):
    batch = codes("CRASH", 600)
    with pytest.raises(Crash):
        client_for(shop, session=CrashAfter(dies_after)).create_codes(shape(), batch)
    outcome = client_for(shop).create_codes(shape(), batch)  # the retry, in a fresh process
    assert outcome.synced == set(batch) and not outcome.transient and not outcome.permanent
    assert shop.codes() == set(batch)
    assert len(shop.discounts()) == 1


def test_a_code_already_in_another_discount_is_refused_the_others_go_in(shop, client):
    client.create_codes(shape("percent_off", percent="30"), ["CLASH"])
    outcome = client.create_codes(shape("percent_off", percent="20"), ["CLASH", "FRESH1", "FRESH2"])
    assert outcome.synced == {"FRESH1", "FRESH2"}
    assert "already exists in the shop" in outcome.permanent["CLASH"]
    assert shop.checkout("FRESH1", {"CREAM": 1}) == Decimal("40.00")


# --- refusals -------------------------------------------------------------------------


def test_an_unknown_sku_is_permanent_for_every_code(shop, client):
    outcome = client.create_codes(shape("percent_off", "NO-SUCH-SKU"), ["U1", "U2"])
    assert not outcome.synced and not outcome.transient
    assert set(outcome.permanent) == {"U1", "U2"}
    assert "'NO-SUCH-SKU'" in outcome.permanent["U1"]
    assert shop.discounts() == []


def test_a_sku_on_two_variants_is_permanent(shop, client):
    shop.seed_variant("CREAM", "55.00")
    outcome = client.create_codes(shape(), ["D1"])
    assert "exactly one" in outcome.permanent["D1"]


def test_a_refill_the_shop_sells_no_dearer_than_the_offer_is_permanent(shop, client):
    outcome = client.create_codes(shape("refill", "OTHER", price="14.00"), ["CHEAP1"])
    assert "nothing to take off" in outcome.permanent["CHEAP1"]


def test_a_refill_priced_in_another_currency_is_permanent(shop, client):
    outcome = client.create_codes(shape("refill", "REFILL-1", price="12.00", currency="EUR"), ["EURO1"])
    assert "sells in USD but the offer is in EUR" in outcome.permanent["EURO1"]


def test_a_refused_token_is_permanent(shop, client):
    shop.refuse_token()
    outcome = client.create_codes(shape(), ["T1", "T2"])
    assert set(outcome.permanent) == {"T1", "T2"}
    assert "refused the access token (HTTP 401)" in outcome.permanent["T1"]
    with pytest.raises(PlatformError) as refused:
        client.check()
    assert refused.value.transient is False


def test_an_outage_is_transient_and_the_retry_syncs_everything(shop, client):
    shop.fail_requests(503)
    outcome = client.create_codes(shape(), codes("DOWN", 5))
    assert set(outcome.transient) == set(codes("DOWN", 5))
    assert "HTTP 503" in outcome.transient["DOWN00000"]
    shop.clear_faults()
    assert client.create_codes(shape(), codes("DOWN", 5)).synced == set(codes("DOWN", 5))


def test_an_outage_in_the_middle_of_the_bulk_adds_is_transient_for_the_unconfirmed_codes(shop, client):
    batch = codes("MID", 400)
    shop.fail_requests(503, count=0)
    original = shop.answer

    def answer(path, headers, body):  # the second bulk add meets an outage
        if b"EncoreBulkAdd" in body and shop.stats.mutations["discountRedeemCodeBulkAdd"] == 1:
            shop.fail_requests(503, count=1)
        return original(path, headers, body)

    shop.answer = answer
    outcome = client.create_codes(shape(), batch)
    assert outcome.synced == {batch[0]}
    assert set(outcome.transient) == set(batch[1:])
    shop.answer = original
    assert client.create_codes(shape(), batch).synced == set(batch)
    assert shop.codes() == set(batch)


def test_an_unreachable_shop_is_transient():
    client = ShopifyPlatform("glow-us.myshopify.com", "shpat_x",
                             api_url=f"http://127.0.0.1:{free_port()}/admin/api/{API_VERSION}/graphql.json")
    outcome = client.create_codes(shape(), ["NET1"])
    assert "could not reach Shopify" in outcome.transient["NET1"]
    with pytest.raises(PlatformError) as unreachable:
        client.check()
    assert unreachable.value.transient is True


# --- the cost-based rate limit ----------------------------------------------------------


def test_a_burst_of_offers_never_runs_the_bucket_dry():
    # Eight offers in a row spend 160 points on mutations alone (10 each, never
    # refunded) from a bucket of 100: sent as fast as the client can, the sixth would
    # be throttled.
    with ShopifyAdmin(bucket=100, restore=100, bulk_delay=0.01) as shop:
        for number in range(8):
            shop.seed_variant(f"SKU-{number}", "40.00")
        client = client_for(shop)
        for number in range(8):
            batch = codes(f"B{number}-", 30)
            assert client.create_codes(shape("percent_off", f"SKU-{number}"), batch).synced == set(batch)
        assert sum(shop.stats.mutations.values()) == 16
        assert shop.stats.throttled == 0
        assert shop.stats.lowest_available >= 0


def test_a_throttled_call_waits_for_the_points_it_lacks_and_retries():
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        import time
        time.sleep(seconds)

    with ShopifyAdmin(bucket=100, restore=200, bulk_delay=0.01) as shop:
        shop.seed_variant("CREAM", "50.00")
        client = client_for(shop, sleep=sleep)
        client.check()  # the client now believes the bucket is nearly full
        shop._bucket.take(90)  # another worker of the same app spends it meanwhile
        outcome = client.create_codes(shape(), ["WAIT1"])
        assert outcome.synced == {"WAIT1"}
        assert shop.stats.throttled == 1
        # It waited for (requested + reserve - available) / restore, not a blind backoff.
        assert any(0.2 < seconds < 0.5 for seconds in slept)


def test_the_pacer_waits_for_the_points_a_call_needs_plus_a_reserve():
    now = [0.0]
    pacer = CostPacer(lambda: now[0])
    assert pacer.book(50) == 0.0  # nothing known yet: the first answer tells
    pacer.observe({"maximumAvailable": 1000.0, "currentlyAvailable": 30.0, "restoreRate": 100.0})
    assert pacer.book(50) == pytest.approx((50 + 100 - 30) / 100)
    assert pacer.book(10) == pytest.approx((10 + 100 - (30 - 50)) / 100)  # the first call is booked
    now[0] = 10.0
    assert pacer.book(10) == 0.0  # ten seconds restored a thousand points


# --- removing codes ---------------------------------------------------------------------


def test_disabled_codes_stop_working_and_unknown_ones_count_as_done(shop, client):
    client.create_codes(shape(), ["KEEP", "VOID1", "VOID2"])
    outcome = client.disable_codes(["VOID1", "void2", "NEVERMADE"])
    assert outcome.synced == {"VOID1", "void2", "NEVERMADE"} and not outcome.transient
    for code in ("VOID1", "VOID2"):
        with pytest.raises(CheckoutRefused, match="unknown code"):
            shop.checkout(code, {"CREAM": 1})
    assert shop.checkout("KEEP", {"CREAM": 1}) == Decimal("35.00")


def test_a_code_in_a_discount_encore_did_not_make_is_left_alone(shop, client):
    variant = next(gid for gid, v in shop._variants.items() if v.sku == "CREAM")
    requests.post(shop.url, headers={"X-Shopify-Access-Token": shop.token}, timeout=10, json={
        "query": """mutation($input: DiscountCodeBasicInput!) {
          discountCodeBasicCreate(basicCodeDiscount: $input) { userErrors { message } } }""",
        "variables": {"input": {
            "title": "Summer sale", "code": "SUMMER", "startsAt": NOW.isoformat(), "context": {"all": "ALL"},
            "customerGets": {"value": {"percentage": 0.1}, "items": {"products": {"productVariantsToAdd": [variant]}}},
        }}})
    outcome = client.disable_codes(["SUMMER"])
    assert "'Summer sale'" in outcome.permanent["SUMMER"]
    assert "SUMMER" in shop.codes()


# --- the shape and the connection ---------------------------------------------------------


def test_check_names_the_shop(client):
    assert client.check() == f"Glow (glow-us.myshopify.com, USD, Admin API {API_VERSION})"


def test_the_default_endpoint_is_the_pinned_version_on_the_shops_domain():
    client = ShopifyPlatform("https://glow-us.myshopify.com/", "shpat_x")
    assert client.api_url == f"https://glow-us.myshopify.com/admin/api/{API_VERSION}/graphql.json"


def test_equal_offers_have_one_key_and_different_ones_another():
    base = shape("refill", "REFILL-1", price="14.00")
    same = DiscountShape("refill", "REFILL-1", "usd", Decimal("14"), None,
                         base.starts_at.astimezone(__import__("zoneinfo").ZoneInfo("Asia/Jakarta")), base.expires_at)
    assert same.key() == base.key()
    assert base.key().startswith("encore-") and len(base.key()) == len("encore-") + 16
    assert shape("refill", "REFILL-1", price="14.00", expires_at=EXPIRY + timedelta(days=1)).key() != base.key()
    with pytest.raises(ValueError, match="aware"):
        DiscountShape("refill", "R", "USD", Decimal(1), None, datetime(2026, 1, 1), EXPIRY).key()


@pytest.mark.parametrize("version", ["2025-07", "2025-10", API_VERSION])
def test_codes_work_at_the_version_the_api_url_names(version):
    # SPEC section 7's example names 2025-07, whose discount inputs have no `context`
    # (from 2025-10): every offer must still become a working code there
    admin = ShopifyAdmin(bulk_delay=0.02, restore=1000, path_version=version)
    admin.seed_variant("REFILL-1", "20.00")
    admin.seed_variant("SERUM", "30.00")
    with admin:
        client = client_for(admin)
        assert client.check().endswith(f"Admin API {version})")
        for offer, made in ((shape("refill", "REFILL-1", price="14.00"), ["R0", "R1"]),
                            (shape("second_half_price", "SERUM"), ["H0", "H1"]),
                            (shape("percent_off", "SERUM"), ["P0", "P1"])):
            outcome = client.create_codes(offer, made)
            assert (outcome.synced, outcome.permanent, outcome.transient) == (frozenset(made), {}, {})
        assert admin.checkout("R1", {"REFILL-1": 1}) == Decimal("14.00")
        assert admin.checkout("H0", {"SERUM": 2}) == Decimal("45.00")
        assert admin.checkout("P1", {"SERUM": 1}) == Decimal("21.00")
