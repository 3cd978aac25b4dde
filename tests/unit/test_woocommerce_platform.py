"""The WooCommerce platform against the WooCommerce REST stand-in: codes that work at the
shop's checkout, priced as each offer promises, and every failure reported as the
pipeline needs it (transient: retry; permanent: the shop's own words)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from coupons.codes import new_codes
from platforms.base import DiscountShape, PlatformError
from platforms.woocommerce import WooCommercePlatform
from tests.standins.woocommerce import CouponRefused, WooCommerceStandIn
from tests.support import FakeClock

NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
KEY, SECRET = "ck_glow", "cs_glow"


@pytest.fixture()
def clock() -> FakeClock:
    return FakeClock(NOW)


@pytest.fixture()
def shop(clock: FakeClock) -> Iterator[WooCommerceStandIn]:
    with WooCommerceStandIn(consumer_key=KEY, consumer_secret=SECRET, clock=clock) as standin:
        standin.add_product("REFILL-50ML", "20.00")
        standin.add_product("SERUM", "40.00")
        standin.add_product("CLEANSER", "10.00")
        parent = standin.add_product("KIT", "25.00", type="variable")
        standin.add_product("KIT-ROSE", "25.00", type="variation", parent_id=parent)
        yield standin


@pytest.fixture()
def woo(shop: WooCommerceStandIn, clock: FakeClock) -> WooCommercePlatform:
    return WooCommercePlatform(shop.url, KEY, SECRET, clock=clock, timeout=10)


def shape(offer_type: str = "refill", sku: str = "REFILL-50ML", *, price: str | None = None,
          percent: str | None = None, currency: str = "USD", days: float = 14) -> DiscountShape:
    if offer_type == "refill" and price is None:
        price = "14.00"
    if offer_type == "second_half_price":
        percent = "50"
    return DiscountShape(offer_type, sku, currency, None if price is None else Decimal(price),  # type: ignore[arg-type]
                         None if percent is None else Decimal(percent), NOW, NOW + timedelta(days=days))


def synced(woo: WooCommercePlatform, offer: DiscountShape, count: int = 1) -> list[str]:
    codes = new_codes(count)
    outcome = woo.create_codes(offer, codes)
    assert outcome.synced == set(codes), (outcome.transient, outcome.permanent)
    return codes


# -- each offer at the checkout ---------------------------------------------------------


def test_refill_customer_pays_the_offers_price_for_one_unit(woo, shop):
    one, two = synced(woo, shape("refill", price="14.00"), 2)

    assert shop.checkout(one, [("REFILL-50ML", 1)]) == Decimal("14.00")
    # Only one unit is the offer's; a second one costs the shop's price.
    assert shop.checkout(two, [("REFILL-50ML", 2)]) == Decimal("34.00")


def test_refill_works_for_a_variations_sku(woo, shop):
    (code,) = synced(woo, shape("refill", "KIT-ROSE", price="17.50"))

    assert shop.checkout(code, [("KIT-ROSE", 1)]) == Decimal("17.50")


def test_percent_off_takes_the_percentage_off_the_next_unit_of_that_sku(woo, shop):
    one, two, other = synced(woo, shape("percent_off", "SERUM", percent="30"), 3)

    assert shop.checkout(one, [("SERUM", 1)]) == Decimal("28.00")
    # "Get 30% off your next serum": one unit, not the whole line.
    assert shop.checkout(two, [("SERUM", 2)]) == Decimal("68.00")
    # Other products in the cart keep their price.
    assert shop.checkout(other, [("SERUM", 1), ("CLEANSER", 3)]) == Decimal("58.00")


def test_percent_off_refuses_a_cart_without_the_sku(woo, shop):
    (code,) = synced(woo, shape("percent_off", "SERUM", percent="30"))

    with pytest.raises(CouponRefused, match="not applicable to selected products"):
        shop.checkout(code, [("CLEANSER", 2)])


def test_second_half_price_halves_one_unit(woo, shop):
    """WooCommerce core has no buy-one-get-one: the documented approximation gives half
    off one unit of the SKU, so two units cost 1.5 times the price, as promised."""
    two, three, one = synced(woo, shape("second_half_price", "SERUM"), 3)

    assert shop.checkout(two, [("SERUM", 2)]) == Decimal("60.00")
    assert shop.checkout(three, [("SERUM", 3)]) == Decimal("100.00")
    # The difference WOOCOMMERCE.md documents: one unit alone also gets half off.
    assert shop.checkout(one, [("SERUM", 1)]) == Decimal("20.00")


def test_each_code_can_be_used_once(woo, shop):
    (code,) = synced(woo, shape())
    shop.checkout(code, [("REFILL-50ML", 1)])

    with pytest.raises(CouponRefused, match="usage limit"):
        shop.checkout(code, [("REFILL-50ML", 1)])


def test_a_code_stops_working_at_the_coupons_expiry(woo, shop, clock):
    early, late = synced(woo, shape(days=14), 2)

    clock.now = NOW + timedelta(days=14) - timedelta(seconds=1)
    assert shop.checkout(early, [("REFILL-50ML", 1)]) == Decimal("14.00")
    clock.now = NOW + timedelta(days=14, seconds=1)
    with pytest.raises(CouponRefused, match="expired"):
        shop.checkout(late, [("REFILL-50ML", 1)])


def test_the_expiry_is_the_same_instant_whatever_the_sites_time_zone(clock):
    """A date without an offset is read in the site's zone: the client always sends one."""
    with WooCommerceStandIn(consumer_key=KEY, consumer_secret=SECRET, clock=clock,
                            site_timezone="Asia/Jakarta") as shop:
        shop.add_product("REFILL-50ML", "20.00")
        woo = WooCommercePlatform(shop.url, KEY, SECRET, clock=clock)
        offer = DiscountShape("refill", "REFILL-50ML", "USD", Decimal("14.00"), None, NOW,
                              datetime(2026, 3, 24, 16, 59, 59, 999999, tzinfo=UTC))
        (code,) = synced(woo, offer)

        coupon = shop.coupon(code)
        assert coupon is not None
        # Whole seconds, never later than the coupon's own expiry.
        assert coupon.date_expires == datetime(2026, 3, 24, 16, 59, 59, tzinfo=UTC)


# -- batches, retries and crashes -------------------------------------------------------


def test_250_codes_go_in_three_batch_calls_of_at_most_100(woo, shop):
    codes = new_codes(250)

    outcome = woo.create_codes(shape("percent_off", "SERUM", percent="20"), codes)

    assert outcome.synced == set(codes) and not outcome.transient and not outcome.permanent
    assert [call.items for call in shop.calls("coupons/batch")] == [100, 100, 50]
    assert shop.codes() == {code.lower() for code in codes}


def test_a_rerun_after_a_crash_makes_no_duplicate_and_syncs_every_code(woo, shop):
    """A worker dies after the shop created a batch but before Encore recorded it: the
    rerun sends the same codes, finds them by their shape key and counts them synced."""
    offer = shape("percent_off", "SERUM", percent="20")
    codes = new_codes(150)
    shop.lose_next_answer("coupons/batch")  # the shop creates the first 100; Encore never hears of it
    lost = woo.create_codes(offer, codes)
    assert not lost.synced and set(lost.transient) == set(codes)

    rerun = woo.create_codes(offer, codes)

    assert rerun.synced == set(codes), (rerun.transient, rerun.permanent)
    assert len(shop.codes()) == 150
    assert all(shop.coupon(code).description.endswith(f"[{offer.key()}]") for code in codes)


def test_a_code_the_seller_already_uses_is_a_permanent_failure(woo, shop):
    (taken,) = new_codes(1)
    shop.add_coupon(taken, discount_type="fixed_cart", amount="5")
    fresh = new_codes(1)[0]

    outcome = woo.create_codes(shape(), [taken, fresh])

    assert outcome.synced == {fresh}
    assert "not Encore's" in outcome.permanent[taken]
    # The seller's coupon is left as it was.
    assert shop.coupon(taken).discount_type == "fixed_cart"


def test_a_code_of_another_encore_offer_is_a_permanent_failure(woo, shop):
    (code,) = synced(woo, shape(price="14.00"))

    outcome = woo.create_codes(shape(price="12.00"), [code])

    assert "another Encore offer" in outcome.permanent[code]


def test_a_shop_that_lowered_the_batch_limit_still_gets_every_code(clock):
    with WooCommerceStandIn(consumer_key=KEY, consumer_secret=SECRET, clock=clock, batch_limit=30) as shop:
        shop.add_product("SERUM", "40.00")
        woo = WooCommercePlatform(shop.url, KEY, SECRET, clock=clock)
        codes = new_codes(100)

        outcome = woo.create_codes(shape("percent_off", "SERUM", percent="20"), codes)

        assert outcome.synced == set(codes)
        assert max(call.items for call in shop.calls("coupons/batch") if call.status == 200) <= 30


# -- failures ---------------------------------------------------------------------------


def test_an_unknown_sku_is_permanent_and_creates_nothing(woo, shop):
    codes = new_codes(3)

    outcome = woo.create_codes(shape("percent_off", "NOT-IN-SHOP", percent="20"), codes)

    assert set(outcome.permanent) == set(codes)
    assert "'NOT-IN-SHOP'" in outcome.permanent[codes[0]]
    assert shop.calls("coupons/batch") == [] and shop.codes() == set()


def test_a_revoked_key_is_permanent_with_the_shops_words(woo, shop):
    shop.revoke_key()
    codes = new_codes(2)

    outcome = woo.create_codes(shape("percent_off", "SERUM", percent="20"), codes)

    assert set(outcome.permanent) == set(codes)
    assert "401" in outcome.permanent[codes[0]] and "Consumer key is invalid." in outcome.permanent[codes[0]]


def test_a_read_only_key_is_permanent(clock):
    with WooCommerceStandIn(consumer_key=KEY, consumer_secret=SECRET, clock=clock, permissions="read") as shop:
        shop.add_product("SERUM", "40.00")
        woo = WooCommercePlatform(shop.url, KEY, SECRET, clock=clock)
        (code,) = new_codes(1)

        outcome = woo.create_codes(shape("percent_off", "SERUM", percent="20"), [code])

        assert "does not have write permissions" in outcome.permanent[code]


@pytest.mark.parametrize("status", [503, 429, 500])
def test_an_unavailable_shop_is_transient_and_a_retry_syncs(woo, shop, status):
    offer = shape("percent_off", "SERUM", percent="20")
    synced(woo, offer)  # the product is known from here on
    codes = new_codes(150)
    shop.fail_next(1, status=status)

    outcome = woo.create_codes(offer, codes)

    assert set(outcome.transient) == set(codes) and not outcome.permanent
    assert str(status) in outcome.transient[codes[0]]
    assert woo.create_codes(offer, codes).synced == set(codes)


def test_a_shop_out_of_reach_is_transient(clock):
    woo = WooCommercePlatform("http://127.0.0.1:9", KEY, SECRET, clock=clock, timeout=2)
    (code,) = new_codes(1)

    outcome = woo.create_codes(shape(), [code])

    assert "connection failed" in outcome.transient[code]


def test_a_refill_priced_in_another_currency_is_permanent(woo, shop):
    (code,) = new_codes(1)

    outcome = woo.create_codes(shape(currency="EUR"), [code])

    assert "sells in USD" in outcome.permanent[code]


def test_a_refill_at_or_above_the_shop_price_is_permanent(woo, shop):
    (code,) = new_codes(1)

    outcome = woo.create_codes(shape(price="20.00"), [code])

    assert "no discount to give" in outcome.permanent[code]


def test_a_refill_of_a_variable_product_needs_a_variations_sku(woo, shop):
    (code,) = new_codes(1)

    outcome = woo.create_codes(shape("refill", "KIT", price="17.50"), [code])

    assert "variation's own SKU" in outcome.permanent[code]


def test_an_offer_already_expired_never_reaches_the_shop(woo, shop):
    (code,) = new_codes(1)

    outcome = woo.create_codes(shape(days=-1), [code])

    assert "expired" in outcome.permanent[code]
    assert shop.calls() == []


# -- disabling ----------------------------------------------------------------------------


def test_disabled_codes_no_longer_work_and_others_stay(woo, shop):
    void, kept = synced(woo, shape(), 2)
    (never_synced,) = new_codes(1)
    (sellers,) = new_codes(1)
    shop.add_coupon(sellers, discount_type="percent", amount="10")

    outcome = woo.disable_codes([void, never_synced, sellers])

    assert outcome.synced == {void, never_synced, sellers}
    with pytest.raises(CouponRefused, match="does not exist"):
        shop.checkout(void, [("REFILL-50ML", 1)])
    assert shop.checkout(kept, [("REFILL-50ML", 1)]) == Decimal("14.00")
    # Encore never removes a coupon that is not its own.
    assert shop.coupon(sellers) is not None


def test_disabling_during_an_outage_is_transient(woo, shop):
    (code,) = synced(woo, shape())

    with shop.outage():
        outcome = woo.disable_codes([code])

    assert code in outcome.transient
    assert woo.disable_codes([code]).synced == {code}
    assert shop.coupon(code) is None


# -- check ----------------------------------------------------------------------------------


def test_check_names_the_shop_and_its_currency(woo, shop):
    assert woo.check() == f"WooCommerce at {shop.url}: key accepted, store currency USD"


def test_check_names_a_refused_key(woo, shop):
    synced(woo, shape())  # what the instance has cached must not hide a key revoked since
    shop.revoke_key()

    with pytest.raises(PlatformError) as refused:
        woo.check()

    assert not refused.value.transient
    assert shop.url in refused.value.message and "Consumer key is invalid." in refused.value.message


def test_check_during_an_outage_is_transient(woo, shop):
    shop.fail_next(1)

    with pytest.raises(PlatformError) as failed:
        woo.check()

    assert failed.value.transient and "503" in failed.value.message


def test_a_site_without_the_rest_api_is_named(clock, shop):
    woo = WooCommercePlatform(shop.url, KEY, SECRET, api_url=f"{shop.url}/wp-json/wc/v9/", clock=clock)

    with pytest.raises(PlatformError, match="is WooCommerce active"):
        woo.check()


# -- authentication -------------------------------------------------------------------------


def test_over_https_the_key_goes_as_http_basic(clock):
    """`behind_tls`: the site is reached over HTTPS (a TLS proxy in front of WordPress)."""
    with WooCommerceStandIn(consumer_key=KEY, consumer_secret=SECRET, clock=clock, behind_tls=True) as shop:
        shop.add_product("SERUM", "40.00")
        for auth in ("basic", "query"):
            woo = WooCommercePlatform(shop.url, KEY, SECRET, auth=auth, clock=clock)  # type: ignore[arg-type]
            synced(woo, shape("percent_off", "SERUM", percent="20"))
        assert all("oauth_signature" not in call.query for call in shop.calls())


def test_https_urls_use_basic_and_http_urls_sign_with_oauth():
    assert WooCommercePlatform("https://glow.example", KEY, SECRET)._auth == "basic"
    assert WooCommercePlatform("http://glow.example", KEY, SECRET)._auth == "oauth1"
    with pytest.raises(ValueError, match="domain"):
        WooCommercePlatform("glow.example", KEY, SECRET)


def test_a_wrong_secret_is_refused(shop, clock):
    woo = WooCommercePlatform(shop.url, KEY, "cs_wrong", clock=clock)

    with pytest.raises(PlatformError, match="Invalid signature"):
        woo.check()
