"""Rule 3: which offer a trigger's items earn. Pure: items in, offer out.

Prices follow the one rule of `coupons.money`. An offer never promises an amount
that rounds to nothing: a refill whose price rounds to zero (a sub-cent product)
is no offer, so the next rule applies (half price on a second, else percent off),
and a regular price that rounds to zero is left out of the message.
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal

from .markets import Market
from .model import Item, Offer
from .money import amount_text

DEFAULT_REFILL_RATIO = Decimal("0.70")
SECOND_ITEM_PERCENT = Decimal("50")


def _dearest(items: Iterable[Item]) -> Item | None:
    """Highest unit price; ties go to the smallest SKU so the choice is stable."""
    return min(items, key=lambda item: (-item.unit_price, item.sku), default=None)


def _merge_quantities(items: list[Item]) -> list[Item]:
    """One line per SKU: two orders of one each count as bought twice."""
    merged: dict[str, Item] = {}
    for item in items:
        seen = merged.get(item.sku)
        if seen is None:
            merged[item.sku] = item
        else:
            merged[item.sku] = Item(
                sku=item.sku,
                name=seen.name,
                unit_price=max(seen.unit_price, item.unit_price),
                quantity=seen.quantity + item.quantity,
                refill_sku=seen.refill_sku or item.refill_sku,
            )
    return list(merged.values())


def _amount(value: Decimal, currency: str) -> Decimal:
    """Rounded and written by the money rule (IDR 132300, USD 14.00)."""
    return Decimal(amount_text(value, currency))


def _regular(value: Decimal, currency: str) -> Decimal | None:
    """The regular price to show, or None when it rounds to nothing."""
    amount = _amount(value, currency)
    return amount if amount > 0 else None


def choose_offer(
    items: list[Item],
    currency: str,
    market: Market,
    refill_ratio: Decimal = DEFAULT_REFILL_RATIO,
) -> Offer:
    """Refill of the dearest consumable, else half price on a second of the dearest
    multi-bought item, else the market's percent off the dearest item."""
    if not items:
        raise ValueError("items: a trigger needs at least one item")
    lines = _merge_quantities(items)
    consumable = _dearest(item for item in lines if item.refill_sku)
    # The dearest consumable has the dearest refill: if its price rounds to nothing, every one does.
    refill_price = None if consumable is None else _amount(consumable.unit_price * refill_ratio, currency)
    if consumable is not None and refill_price is not None and refill_price > 0:
        return Offer(
            type="refill",
            sku=consumable.refill_sku or consumable.sku,
            product_name=consumable.name,
            currency=currency,
            price=refill_price,
            regular_price=_regular(consumable.unit_price, currency),
        )
    multi = _dearest(item for item in lines if item.quantity >= 2)
    if multi is not None:
        return Offer(
            type="second_half_price",
            sku=multi.sku,
            product_name=multi.name,
            currency=currency,
            percent=SECOND_ITEM_PERCENT,
            regular_price=_regular(multi.unit_price, currency),
        )
    dearest = _dearest(lines)
    assert dearest is not None
    return Offer(
        type="percent_off",
        sku=dearest.sku,
        product_name=dearest.name,
        currency=currency,
        percent=market.depth_percent,
        regular_price=_regular(dearest.unit_price, currency),
    )
