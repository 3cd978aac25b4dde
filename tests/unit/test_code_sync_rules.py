"""The pure parts of code sync (services/code_sync.py): which shops sync, how a code is
written for a shop, which discount a coupon's code belongs to, and when a failing shop
gets its last try."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from types import SimpleNamespace

from coupons.codes import new_code
from coupons.shops import parse_shops
from services.code_sync import LAST_TRY_BEFORE_DEADLINE, _last_chance, platform_shops, shape_of, shop_code

NOW = datetime(2026, 3, 10, 12, 0, 30, 123456, tzinfo=UTC)


def coupon(**fields):
    base = dict(offer_type="refill", sku="shampoo-refill", currency="USD", price="14.00", percent=None,
                created_at=NOW, expires_at=NOW + timedelta(days=7))
    return SimpleNamespace(**{**base, **fields})


def test_only_shops_with_a_platform_sync_their_codes():
    shops = parse_shops('[shops.us]\nplatform = "shopify"\ndomain = "us.myshopify.com"\ntoken_env = "T"\n'
                        'webhook_secret_env = "S"\n[shops.wc]\nplatform = "woocommerce"\ndomain = "https://w.example"\n'
                        'key_env = "K"\nsecret_env = "C"\n[shops.default]\nplatform = "none"\n', "shops.toml")
    assert platform_shops(SimpleNamespace(shops=shops)) == ("us", "wc")


def test_a_platform_shops_code_is_the_same_symbols_without_dashes():
    code = new_code()
    assert shop_code(code) == code.replace("-", "") and len(shop_code(code)) == 15


def test_coupons_made_within_one_minute_share_one_discount():
    first, later = coupon(), coupon(created_at=NOW + timedelta(seconds=25))
    assert shape_of(first) == shape_of(later)
    assert shape_of(first).starts_at == NOW.replace(second=0, microsecond=0)
    assert shape_of(first).key() != shape_of(coupon(expires_at=NOW + timedelta(days=14))).key()


def test_each_offer_becomes_its_discounts_shape():
    assert shape_of(coupon()).price == Decimal("14.00")
    assert shape_of(coupon(offer_type="percent_off", price=None, percent="10")).percent == Decimal("10")
    half = shape_of(coupon(offer_type="second_half_price", sku="serum", price=None, percent=None))
    assert half.percent == Decimal("50")


def test_a_retry_after_the_deadline_comes_a_minute_before_it_instead():
    deadline = NOW + timedelta(hours=1)
    assert _last_chance(NOW + timedelta(minutes=5), deadline, NOW) == NOW + timedelta(minutes=5)
    assert _last_chance(NOW + timedelta(hours=2), deadline, NOW) == deadline - LAST_TRY_BEFORE_DEADLINE
    # inside the last minute: one more try right away, not one in the past
    late = deadline - timedelta(seconds=30)
    assert _last_chance(NOW + timedelta(hours=2), deadline, late) == late + timedelta(seconds=1)
