"""Rule 15 in-process: a platform shop's code exists at its checkout before the message
that carries it goes out, prices the offer right there, and stops working when its
coupon is void. The shops are the stand-ins of tests/standins (they enforce Shopify's
and WooCommerce's documented contracts); the shop is `default`, so events need no
`shop` field."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import select, update

from services.code_sync import claim_due, platform_for, remove_due_codes, shape_of, sync_due_codes
from store.models import Attempt, Coupon, Delivery
from tests.standins.shopify_admin import CheckoutRefused, ShopifyAdmin
from tests.standins.woocommerce import WooCommerceStandIn
from tests.support import FakeClock, order_paid, zone_where_local_hour_is

SHOP_CODE = re.compile(r"\b[A-HJ-KM-NP-Z2-9]{15}\b")
"""A platform shop's code as its message shows it: no dashes (what the shop holds)."""


@pytest.fixture()
def clock() -> FakeClock:
    # Real time (the WooCommerce adapter refuses an offer that expired by the wall clock).
    return FakeClock(datetime.now(UTC).replace(microsecond=0))


@pytest.fixture()
def shopify(clock):
    admin = ShopifyAdmin(wall_clock=clock, bulk_delay=0.0)
    admin.seed_variant("shampoo", "20.00")
    admin.seed_variant("shampoo-refill", "20.00")
    admin.seed_variant("serum", "40.00")
    with admin:
        yield admin


def shops_file(tmp_path, body: str) -> str:
    path = tmp_path / "shops.toml"
    path.write_text(body)
    return str(path)


@pytest.fixture()
def services(make_services, shopify, tmp_path):
    path = shops_file(tmp_path, f'[shops.default]\nplatform = "shopify"\ndomain = "glow-us.myshopify.com"\n'
                                f'api_url = "{shopify.url}"\ntoken_env = "GLOW_TOKEN"\n'
                                f'webhook_secret_env = "GLOW_SECRET"\n')
    return make_services(ENCORE_SHOPS_FILE=path, GLOW_TOKEN=shopify.token, GLOW_SECRET="s3cret")


def buyer(services, event_id: str, customer_id: str, items: list[dict] | None = None, **kwargs) -> dict:
    """A US buyer at local noon, reachable by email."""
    now = services.clock()
    return order_paid(event_id, customer_id=customer_id, occurred_at=now, items=items,
                      timezone=zone_where_local_hour_is(12, now), **kwargs)


def coupon_of(services, customer_id: str) -> Coupon:
    with services.session() as session:
        coupon = session.scalars(select(Coupon).where(Coupon.customer_id == customer_id)).one()
        session.expunge(coupon)
        return coupon


def sent_codes(services) -> list[str]:
    return [SHOP_CODE.search(m.get_body(("plain",)).get_content()).group(0) for m in services.smtp.messages]


def test_the_message_goes_out_only_after_its_code_exists_in_the_shop(services, shopify):
    # Given an order of a shop on Shopify
    services.emit(buyer(services, "e1", "c1"))
    code = coupon_of(services, "c1").code
    assert "-" not in code
    assert "tasks.sync.sync_codes" in services.doorbell.names()  # planning rang the sync after its commit
    # When the relay runs before the sync: nothing is due, nothing is sent
    assert services.relay_and_send() == 0 and services.smtp.messages == []
    # When the code is synced
    report = sync_due_codes(services.runtime)
    # Then it is in the shop, the relay is rung, and the message carries it as the shop holds it
    assert report.synced == 1 and code in shopify.codes()
    assert "tasks.relay.relay" in services.doorbell.names()
    assert services.relay_and_send() == 1
    assert sent_codes(services) == [code]
    assert coupon_of(services, "c1").code_synced_at is not None


def test_the_send_claim_refuses_a_delivery_whose_code_is_not_in_the_shop_however_it_became_due(services):
    services.emit(buyer(services, "e1", "c1"))
    with services.session() as session:  # made due by hand (a replay, a bug): still not sent
        session.execute(update(Delivery).values(next_attempt_at=services.clock()))
    assert services.relay_and_send() == 1
    assert services.smtp.messages == []
    assert services.deliveries()[0]["state"] == "scheduled"


@pytest.mark.parametrize(("items", "lines", "total"), [
    # refill: the refill SKU at 0.70 x 20.00 = 14.00 for one unit
    ([{"sku": "shampoo", "name": "Shampoo", "unit_price": "20.00", "quantity": 1, "refill_sku": "shampoo-refill"}],
     {"shampoo-refill": 1}, Decimal("14.00")),
    # second_half_price: two units of the SKU, the second at half price
    ([{"sku": "serum", "name": "Serum", "unit_price": "40.00", "quantity": 2}], {"serum": 2}, Decimal("60.00")),
    # percent_off: the US market's 10 % off that SKU
    ([{"sku": "serum", "name": "Serum", "unit_price": "40.00", "quantity": 1}], {"serum": 1}, Decimal("36.00")),
], ids=["refill", "second_half_price", "percent_off"])
def test_each_offer_prices_right_at_the_shops_checkout_and_works_once(services, shopify, items, lines, total):
    services.emit(buyer(services, "e1", "c1", items=items))
    sync_due_codes(services.runtime)
    code = coupon_of(services, "c1").code
    assert shopify.checkout(code, lines) == total
    with pytest.raises(CheckoutRefused, match="usage limit"):
        shopify.checkout(code, lines)


def test_the_code_stops_working_at_the_coupons_expiry(services, shopify):
    services.emit(buyer(services, "e1", "c1"))
    sync_due_codes(services.runtime)
    coupon = coupon_of(services, "c1")
    with pytest.raises(CheckoutRefused, match="expired"):
        shopify.checkout(coupon.code, {"shampoo-refill": 1}, at=coupon.expires_at)


def test_an_unknown_sku_ends_the_delivery_shop_rejected_with_the_shops_words_and_sends_nothing(services, shopify):
    from services.dead_letters import list_dead_letters

    items = [{"sku": "not-in-shop", "name": "Mystery", "unit_price": "10.00", "quantity": 1}]
    services.emit(buyer(services, "e1", "c1", items=items))
    report = sync_due_codes(services.runtime)
    assert report.rejected == 1
    assert services.relay_and_send() == 0 and services.smtp.messages == []
    [row] = services.deliveries()
    assert (row["state"], row["reason"]) == ("failed", "shop_rejected")
    with services.session() as session:
        [letter] = [r for r in list_dead_letters(session) if r["kind"] == "delivery"]
    assert letter["reason"] == "shop_rejected" and "not-in-shop" in letter["raw"]
    assert shopify.codes() == set()


def test_a_refused_token_is_permanent(services, shopify):
    shopify.refuse_token()
    services.emit(buyer(services, "e1", "c1"))
    sync_due_codes(services.runtime)
    assert services.deliveries()[0]["reason"] == "shop_rejected"


def test_a_shop_outage_holds_the_message_until_its_code_exists(services, shopify):
    # Given the shop answers 503 for a while
    services.emit(buyer(services, "e1", "c1"))
    shopify.fail_requests(503)
    report = sync_due_codes(services.runtime)
    assert report.transient == 1 and report.synced == 0
    # Then nothing is sent while the code is missing, retry after retry
    services.clock.advance(minutes=1)
    sync_due_codes(services.runtime)
    assert services.relay_and_send() == 0 and services.smtp.messages == []
    # When the shop is back, the next retry syncs and the message follows
    shopify.clear_faults()
    services.clock.advance(minutes=10)
    assert sync_due_codes(services.runtime).synced == 1
    assert services.relay_and_send() == 1
    assert sent_codes(services) == [coupon_of(services, "c1").code]


def test_a_shop_down_until_the_deadline_expires_the_delivery_with_the_shops_reason(services, shopify):
    services.emit(buyer(services, "e1", "c1"))
    shopify.fail_requests(503)
    sync_due_codes(services.runtime)
    services.clock.advance(hours=25)
    remove_due_codes(services.runtime)  # the sync's beat sweep
    [row] = services.deliveries()
    assert (row["state"], row["reason"]) == ("expired", "shop_unavailable")
    assert services.smtp.messages == []


def test_a_shop_failing_near_the_deadline_gets_its_last_try_before_it(services, shopify):
    # Given the shop fails with many tries behind it (the backoff is long by now)
    services.emit(buyer(services, "e1", "c1"))
    deadline = datetime.fromisoformat(services.deliveries()[0]["deadline_at"].replace("Z", "+00:00"))
    shopify.fail_requests(503)
    with services.session() as session:
        session.execute(update(Coupon).values(sync_attempts=12))
    services.clock.now = deadline - timedelta(minutes=10)
    with services.session() as session:
        session.execute(update(Coupon).values(sync_due_at=services.clock()))
    sync_due_codes(services.runtime)
    # Then the retry is due before the deadline, not after it
    retry_at = coupon_of(services, "c1").sync_due_at
    assert services.clock() < retry_at < deadline
    # When the shop is back by then, the message still goes out in time
    shopify.clear_faults()
    services.clock.now = retry_at
    assert sync_due_codes(services.runtime).synced == 1
    assert services.relay_and_send() == 1 and len(services.smtp.messages) == 1


def test_capped_customers_get_no_code_in_the_shop(services, shopify):
    services.emit(buyer(services, "e1", "c1"))
    services.clock.advance(hours=1)
    services.emit(buyer(services, "e2", "c1"))  # inside the 24 h cap: suppressed
    sync_due_codes(services.runtime)
    states = sorted(row["state"] for row in services.deliveries())
    assert states == ["scheduled", "suppressed"]
    assert len(shopify.codes()) == 1


def test_two_workers_never_claim_the_same_coupon(services):
    services.emit(*(buyer(services, f"e{n}", f"c{n}") for n in range(6)))
    with services.session() as session:
        first = claim_due(session, ["default"], services.clock(), "a" * 32, limit=4)
    with services.session() as session:
        second = claim_due(session, ["default"], services.clock(), "b" * 32, limit=4)
    assert len(first) == 4 and len(second) == 2
    assert not {c.id for c in first} & {c.id for c in second}


def test_a_worker_that_died_between_creating_and_recording_leaves_no_orphan_and_no_missing_code(services, shopify):
    # Given a worker claimed the codes and made them in the shop, then died before recording
    services.emit(*(buyer(services, f"e{n}", f"c{n}") for n in range(3)))
    with services.session() as session:
        claimed = claim_due(session, ["default"], services.clock(), "d" * 32)
    outcome = platform_for(services.runtime.settings, "default").create_codes(
        shape_of(claimed[0]), [c.code for c in claimed])
    assert len(outcome.synced) == 3
    # Then nothing is sent while the dead worker's lease runs
    assert sync_due_codes(services.runtime).claimed == 0
    assert services.relay_and_send() == 0
    # When the lease has run out, another worker finds the codes already in our discount
    services.clock.advance(minutes=6)
    assert sync_due_codes(services.runtime).synced == 3
    assert services.relay_and_send() == 3
    # Then every code sent exists, once, and no code exists that was not sent
    assert sorted(sent_codes(services)) == sorted(shopify.codes())
    assert len({shopify.discount_of(code).gid for code in shopify.codes()}) == 1


def test_a_refund_after_the_message_removes_the_code_from_the_shop(services, shopify):
    services.emit(buyer(services, "e1", "c1", order_id="o1"))
    sync_due_codes(services.runtime)
    services.relay_and_send()
    code = coupon_of(services, "c1").code
    services.emit({"id": "r1", "type": "order.refunded", "occurred_at": services.clock().isoformat(),
                   "data": {"order_id": "o1"}})
    assert coupon_of(services, "c1").code_removal_due_at is not None
    assert remove_due_codes(services.runtime).removed == 1
    assert code not in shopify.codes()
    assert coupon_of(services, "c1").code_removed_at is not None


def test_a_refund_while_the_sync_is_in_flight_leaves_no_working_code(services, shopify):
    services.emit(buyer(services, "e1", "c1", order_id="o1"))
    with services.session() as session:
        [claimed] = claim_due(session, ["default"], services.clock(), "f" * 32)
    services.emit({"id": "r1", "type": "order.refunded", "occurred_at": services.clock().isoformat(),
                   "data": {"order_id": "o1"}})
    remove_due_codes(services.runtime)  # nothing in the shop yet
    # the in-flight worker's code lands after the removal; its record marks it again
    from services.code_sync import SyncReport, _Claim, _record

    outcome = platform_for(services.runtime.settings, "default").create_codes(shape_of(claimed), [claimed.code])
    _record(services.runtime, [claimed], outcome, _Claim("f" * 32, {}), SyncReport())
    remove_due_codes(services.runtime)
    assert shopify.codes() == set()
    assert services.smtp.messages == []


def test_redemption_finds_a_code_typed_with_or_without_dashes(services):
    from services.redemption import redeem

    services.emit(buyer(services, "e1", "c1"))
    code = coupon_of(services, "c1").code
    grouped = "-".join(code[i:i + 5] for i in range(0, 15, 5)).lower()
    with services.session() as session:
        assert redeem(session, grouped, "o9", services.clock()).ok


def test_the_redeem_endpoints_lookup_finds_a_platform_shops_code_in_either_form(services):
    # POST /coupons/{code}/redeem finds the code's shop by the code: a platform shop's code
    # is stored without dashes, and the customer may type it with them or in lower case
    from services.redemption import ALREADY_REDEEMED, REDEEMED, redeem_alone

    services.emit(buyer(services, "e1", "c1"))
    code = coupon_of(services, "c1").code
    grouped = "-".join(code[i:i + 5] for i in range(0, 15, 5)).lower()
    assert redeem_alone(services.runtime.database_url, grouped, "o9", services.clock()).status == REDEEMED
    assert redeem_alone(services.runtime.database_url, code, "o10", services.clock()).status == ALREADY_REDEEMED


def test_the_sync_paces_itself_and_never_drains_the_bucket(make_services, tmp_path, clock):
    # A small bucket (200 points, 20/s) and 600 codes: the pacer keeps a reserve
    admin = ShopifyAdmin(wall_clock=clock, bulk_delay=0.0, bucket=200, restore=20)
    admin.seed_variant("serum", "40.00")
    with admin:
        path = shops_file(tmp_path, f'[shops.default]\nplatform = "shopify"\ndomain = "glow-us.myshopify.com"\n'
                                    f'api_url = "{admin.url}"\ntoken_env = "T"\nwebhook_secret_env = "S"\n')
        services = make_services(ENCORE_SHOPS_FILE=path, T=admin.token, S="x")
        items = [{"sku": "serum", "name": "Serum", "unit_price": "40.00", "quantity": 1}]
        services.emit(*(buyer(services, f"e{n}", f"c{n:04}", items=items) for n in range(600)))
        assert sync_due_codes(services.runtime).synced == 600
        assert len(admin.codes()) == 600
        assert admin.stats.throttled == 0
        assert admin.stats.lowest_available >= 10


def test_a_shop_without_a_platform_behaves_as_before(make_services, clock):
    services = make_services()
    now = clock()
    services.emit(order_paid("e1", customer_id="c1", occurred_at=now, timezone=zone_where_local_hour_is(12, now)))
    assert sync_due_codes(services.runtime).claimed == 0
    assert services.relay_and_send() == 1
    assert re.fullmatch(r"[A-Z2-9]{5}-[A-Z2-9]{5}-[A-Z2-9]{5}", coupon_of(services, "c1").code)
    assert coupon_of(services, "c1").sync_due_at is None


# ------------------------------------------------------------------------------ WooCommerce


@pytest.fixture()
def woo_services(make_services, tmp_path):
    with WooCommerceStandIn() as shop:
        shop.add_product("shampoo-refill", "20.00")
        shop.add_product("serum", "40.00")
        path = shops_file(tmp_path, f'[shops.default]\nplatform = "woocommerce"\ndomain = "{shop.url}"\n'
                                    f'key_env = "WC_KEY"\nsecret_env = "WC_SECRET"\n')
        yield make_services(ENCORE_SHOPS_FILE=path, WC_KEY="ck_standin", WC_SECRET="cs_standin"), shop


@pytest.mark.parametrize(("items", "lines", "total"), [
    ([{"sku": "shampoo", "name": "Shampoo", "unit_price": "20.00", "quantity": 1, "refill_sku": "shampoo-refill"}],
     [("shampoo-refill", 1)], Decimal("14.00")),
    # WooCommerce has no "buy one, get one at 50 %": a 50 % coupon on one unit of the SKU
    ([{"sku": "serum", "name": "Serum", "unit_price": "40.00", "quantity": 2}], [("serum", 2)], Decimal("60.00")),
    ([{"sku": "serum", "name": "Serum", "unit_price": "40.00", "quantity": 1}], [("serum", 1)], Decimal("36.00")),
], ids=["refill", "second_half_price", "percent_off"])
def test_woocommerce_codes_exist_before_sending_and_price_right(woo_services, items, lines, total):
    services, shop = woo_services
    services.emit(buyer(services, "e1", "c1", items=items))
    assert services.relay_and_send() == 0
    assert sync_due_codes(services.runtime).synced == 1
    assert services.relay_and_send() == 1
    code = coupon_of(services, "c1").code
    assert sent_codes(services) == [code]
    assert shop.checkout(code, lines) == total


def test_woocommerce_refund_removes_the_coupon(woo_services):
    services, shop = woo_services
    services.emit(buyer(services, "e1", "c1", order_id="o1"))
    sync_due_codes(services.runtime)
    services.relay_and_send()
    services.emit({"id": "r1", "type": "order.refunded", "occurred_at": services.clock().isoformat(),
                   "data": {"order_id": "o1"}})
    assert remove_due_codes(services.runtime).removed == 1
    assert shop.codes() == set()


def test_attempt_rows_of_a_shop_refusal_name_the_shop(services):
    items = [{"sku": "not-in-shop", "name": "Mystery", "unit_price": "10.00", "quantity": 1}]
    services.emit(buyer(services, "e1", "c1", items=items))
    sync_due_codes(services.runtime)
    with services.session() as session:
        [attempt] = session.scalars(select(Attempt)).all()
    assert (attempt.channel, attempt.outcome, attempt.reason) == ("shop", "permanent", "shop_rejected")


# ------------------------------------------------------------------------------ encore check


def test_encore_check_asks_each_shop_with_its_own_credentials(services, shopify, make_services, tmp_path):
    from services.check import _shops

    [line] = list(_shops(services.runtime.settings))
    assert line.ok and line.part == "shop default" and "Glow" in line.detail
    shopify.refuse_token()
    [line] = list(_shops(services.runtime.settings))
    assert not line.ok and "shop default" in str(line) and "token" in line.detail.lower()
    path = shops_file(tmp_path, '[shops.eu]\nplatform = "woocommerce"\ndomain = "https://eu.example"\n'
                                'key_env = "EU_KEY"\nsecret_env = "EU_SECRET"\n[shops.default]\nplatform = "none"\n')
    lines = {line.part: line for line in _shops(make_services(ENCORE_SHOPS_FILE=path).runtime.settings)}
    assert lines["shop default"].ok
    assert not lines["shop eu"].ok and "EU_KEY" in lines["shop eu"].detail


def test_replaying_a_shop_rejected_delivery_makes_its_code_first(services, shopify):
    from services.dead_letters import replay

    items = [{"sku": "late-sku", "name": "Late", "unit_price": "10.00", "quantity": 1}]
    services.emit(buyer(services, "e1", "c1", items=items))
    sync_due_codes(services.runtime)
    [row] = services.deliveries()
    assert row["reason"] == "shop_rejected"
    shopify.seed_variant("late-sku", "10.00")  # the seller adds the product
    with services.session() as session:
        assert replay(session, f"D{row['id']}", services.clock()).ok
    assert services.relay_and_send() == 0
    assert sync_due_codes(services.runtime).synced == 1
    assert services.relay_and_send() == 1
    assert sent_codes(services) == [coupon_of(services, "c1").code]


def test_a_synced_code_whose_message_will_never_go_out_is_removed_from_the_shop(services, shopify):
    # Given a code made in the shop, and then the customer opts out before the send
    services.emit(buyer(services, "e1", "c1"))
    sync_due_codes(services.runtime)
    code = coupon_of(services, "c1").code
    assert code in shopify.codes()
    services.emit({"id": "out-1", "type": "customer.opted_out", "occurred_at": services.clock().isoformat(),
                   "data": {"customer_id": "c1"}})
    services.relay_and_send()
    assert services.deliveries()[0]["state"] == "suppressed" and services.smtp.messages == []
    # Then the removal sweep takes the unsent code out of the shop
    remove_due_codes(services.runtime)
    assert code not in shopify.codes()
