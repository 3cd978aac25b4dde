"""Rule 15 with a real worker (PostgreSQL, Redis): codes are made in the Shopify stand-in
by the worker's sync task before its senders send them, through a shop outage and a
worker killed between Shopify's bulk add and the record of it; a refund takes the code
out of the shop within a minute. The shop is `default`, so events name no shop."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from sqlalchemy import func, select

from store.models import Coupon
from tests.standins.shopify_admin import ShopifyAdmin
from tests.support import WorkerProcess, order_paid, running_stack, stream_ended, wait_until, zone_where_local_hour_is

SHOP_CODE = re.compile(r"\b[A-HJ-KM-NP-Z2-9]{15}\b")


@pytest.fixture()
def shop():
    admin = ShopifyAdmin(bulk_delay=0.05)
    admin.seed_variant("shampoo", "20.00")
    admin.seed_variant("shampoo-refill", "20.00")
    with admin:
        yield admin


@pytest.fixture()
def stack(monkeypatch, tmp_path, postgres_url, redis_url, shop):
    path = tmp_path / "shops.toml"
    path.write_text(f'[shops.default]\nplatform = "shopify"\ndomain = "glow-us.myshopify.com"\n'
                    f'api_url = "{shop.url}"\ntoken_env = "GLOW_TOKEN"\nwebhook_secret_env = "GLOW_SECRET"\n')
    env = {"ENCORE_SHOPS_FILE": str(path), "GLOW_TOKEN": shop.token, "GLOW_SECRET": "s3cret"}
    with running_stack(monkeypatch, data_dir=tmp_path, database_url=postgres_url, broker_url=redis_url,
                       env=env) as running:
        yield running


def watch_arrivals(monkeypatch, stack, shop) -> list[str]:
    """Codes of messages that reached the SMTP stand-in while the shop did not hold them."""
    missing: list[str] = []
    collector = stack.smtp._received
    keep = collector.add

    def add(item) -> None:
        code = SHOP_CODE.search(item.message.get_body(("plain",)).get_content()).group(0)
        if code not in shop.codes():
            missing.append(code)
        keep(item)

    monkeypatch.setattr(collector, "add", add)
    return missing


def sent_codes(stack) -> list[str]:
    return [SHOP_CODE.search(m.get_body(("plain",)).get_content()).group(0) for m in stack.smtp.messages]


def buyer(event_id: str, customer_id: str, **kwargs) -> dict:
    return order_paid(event_id, customer_id=customer_id, timezone=zone_where_local_hour_is(13), **kwargs)


def test_a_stream_through_a_shop_outage_sends_every_message_after_its_code_exists(monkeypatch, stack, shop):
    # Given 40 buyers of a stream, and a shop that answers 503 for 3 seconds as it ends
    missing = watch_arrivals(monkeypatch, stack, shop)
    stack.emit(*(buyer(f"o{n}", f"c{n:02}", stream_id="live-1") for n in range(40)))
    shop.fail_requests(503, seconds=3)
    stack.emit(stream_ended("end-1", "live-1"))
    # Then every message goes out, each after its code existed in the shop
    assert stack.smtp.wait_for(40, timeout=120), stack.worker.log()
    assert missing == []
    assert sorted(sent_codes(stack)) == sorted(shop.codes())
    # and the outage was met (retried), and the shop was never throttled
    [(retried,)] = stack.query(select(func.count()).select_from(Coupon).where(Coupon.sync_attempts > 1))
    assert retried > 0
    assert shop.stats.throttled == 0


def test_a_worker_killed_between_the_bulk_add_and_its_record_leaves_no_orphan_and_no_missing_code(
        monkeypatch, stack, shop, tmp_path):
    # Given Shopify's bulk jobs are slow, and the worker is killed while it waits for one
    missing = watch_arrivals(monkeypatch, stack, shop)
    shop.hold_bulk_jobs()
    stack.emit(*(buyer(f"o{n}", f"c{n}") for n in range(5)))
    wait_until(lambda: shop.pending_bulk_jobs() > 0, timeout=60)
    stack.worker.kill()
    shop.release_bulk_jobs()
    assert stack.smtp.messages == []
    # When another worker starts (the dead one's lease runs out after ENCORE_LEASE_SECONDS)
    successor = WorkerProcess(stack.worker.env, Path(tmp_path) / "worker2.log").start()
    try:
        # Then every code is sent once, exists in the shop, and nothing else does
        assert stack.smtp.wait_for(5, timeout=120), successor.log()
        assert missing == []
        assert sorted(sent_codes(stack)) == sorted(shop.codes())
        assert len(set(sent_codes(stack))) == 5
    finally:
        successor.stop()


def test_a_refund_after_sending_takes_the_code_out_of_the_shop_within_a_minute(stack, shop):
    stack.emit(buyer("o1", "ann", order_id="order-1"))
    assert stack.smtp.wait_for(1, timeout=60)
    [code] = sent_codes(stack)
    assert code in shop.codes()
    stack.emit({"id": "r1", "type": "order.refunded", "occurred_at": order_paid("x")["occurred_at"],
                "data": {"order_id": "order-1"}})
    wait_until(lambda: code not in shop.codes(), timeout=60)


def test_each_offer_prices_right_at_the_shops_checkout_and_an_unknown_sku_sends_nothing(stack, shop):
    from decimal import Decimal

    shop.seed_variant("serum", "40.00")
    # Given a refill buyer, a buyer of two serums, a buyer of one, and one of a SKU the shop lacks
    serum = {"sku": "serum", "name": "Serum", "unit_price": "40.00"}
    stack.emit(buyer("o1", "refill"),
               buyer("o2", "two", items=[{**serum, "quantity": 2}]),
               buyer("o3", "one", items=[{**serum, "quantity": 1}]),
               buyer("o4", "mystery", items=[{"sku": "gone", "name": "Gone", "unit_price": "9.00", "quantity": 1}]))
    # Then three messages go out, and the fourth delivery fails with the shop's reason
    assert stack.smtp.wait_for(3, timeout=60)
    rows = {row["customer_id"]: row for row in stack.wait_for_states(4, ("sent", "failed"))}
    assert (rows["mystery"]["state"], rows["mystery"]["reason"]) == ("failed", "shop_rejected")
    # and each code prices its offer at the shop's checkout
    code = {customer: rows[customer]["code"] for customer in ("refill", "two", "one")}
    assert shop.checkout(code["refill"], {"shampoo-refill": 1}) == Decimal("14.00")
    assert shop.checkout(code["two"], {"serum": 2}) == Decimal("60.00")
    assert shop.checkout(code["one"], {"serum": 1}) == Decimal("36.00")
    assert len(stack.smtp.messages) == 3


def test_woocommerce_codes_exist_before_their_messages_and_a_refund_deletes_the_coupon(
        monkeypatch, tmp_path, postgres_url, redis_url):
    from decimal import Decimal

    from tests.standins.woocommerce import WooCommerceStandIn

    with WooCommerceStandIn() as woo:
        woo.add_product("shampoo-refill", "20.00")
        woo.add_product("serum", "40.00")
        path = tmp_path / "shops.toml"
        path.write_text(f'[shops.default]\nplatform = "woocommerce"\ndomain = "{woo.url}"\n'
                        'key_env = "WC_KEY"\nsecret_env = "WC_SECRET"\n')
        env = {"ENCORE_SHOPS_FILE": str(path), "WC_KEY": "ck_standin", "WC_SECRET": "cs_standin"}
        with running_stack(monkeypatch, data_dir=tmp_path, database_url=postgres_url, broker_url=redis_url,
                           env=env) as stack:
            missing: list[str] = []
            keep = stack.smtp._received.add

            def add(item) -> None:  # WooCommerce keeps codes in lower case
                code = SHOP_CODE.search(item.message.get_body(("plain",)).get_content()).group(0)
                if woo.coupon(code) is None:
                    missing.append(code)
                keep(item)

            monkeypatch.setattr(stack.smtp._received, "add", add)
            serum = {"sku": "serum", "name": "Serum", "unit_price": "40.00", "quantity": 2}
            stack.emit(buyer("o1", "ann", order_id="order-1"), buyer("o2", "bob", items=[serum]))
            assert stack.smtp.wait_for(2, timeout=60), stack.worker.log()
            assert missing == []
            rows = {row["customer_id"]: row for row in stack.wait_for_states(2, ("sent",))}
            # the second unit at half price: WooCommerce's 50 % coupon on one unit of two
            assert woo.checkout(rows["bob"]["code"], [("serum", 2)]) == Decimal("60.00")
            stack.emit({"id": "r1", "type": "order.refunded", "occurred_at": order_paid("x")["occurred_at"],
                        "data": {"order_id": "order-1"}})
            wait_until(lambda: woo.coupon(rows["ann"]["code"]) is None, timeout=60)
