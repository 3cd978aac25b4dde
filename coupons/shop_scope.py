"""Ids scoped to their shop (SPEC section 7): an event's ids as they are stored.

The same customer, order or stream id in two shops is two customers, orders or streams:
intake stores every id as `coupons.shops.shop_key(shop, id)`, and what it shows a user
(deliveries, status, dead letters) is the id as the shop sent it plus a `shop` field.
"""

from __future__ import annotations

from .events import CouponRedeemed, CustomerOptedOut, Event, OrderPaid, OrderRefunded, StreamEnded
from .shops import DEFAULT_SHOP, shop_key


def stored_keys(event: Event) -> Event:
    """The event with its ids as they are stored: each scoped to the event's shop
    (`coupons.shops.shop_key`), so the same customer, order or stream id in two shops is
    two rows. The default shop's keys are its ids: its events come back unchanged.
    The codes of `coupon.redeemed` and `discount_codes` are Encore's own, not scoped."""
    if event.shop == DEFAULT_SHOP:
        return event
    shop, data = event.shop, event.data

    def key(raw: str | None) -> str | None:
        return None if raw is None else shop_key(shop, raw)

    if isinstance(data, OrderPaid):
        data = data.model_copy(update={"order_id": key(data.order_id), "stream_id": key(data.stream_id),
                                       "customer": data.customer.model_copy(update={"id": key(data.customer.id)})})
    elif isinstance(data, StreamEnded):
        data = data.model_copy(update={"stream_id": key(data.stream_id)})
    elif isinstance(data, OrderRefunded):
        data = data.model_copy(update={"order_id": key(data.order_id)})
    elif isinstance(data, CustomerOptedOut):
        data = data.model_copy(update={"customer_id": key(data.customer_id)})
    elif isinstance(data, CouponRedeemed):
        data = data.model_copy(update={"order_id": key(data.order_id), "customer_id": key(data.customer_id)})
    return event.model_copy(update={"id": shop_key(shop, event.id), "data": data})
