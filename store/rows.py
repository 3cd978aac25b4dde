"""Between stored rows and the domain's values: the customer a row describes, and the
`order_items` rows of a stored order. Here because the planner, the sender, intake and
campaigns all use them, and each sits beside the others, not below."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import Row

from coupons.model import Customer as CustomerValue

from .models import Customer


def customer_value(row: Customer | Row, consent: frozenset[str] | None = None) -> CustomerValue:
    """The customer as the domain sees it, from an ORM object or a row with its column
    names. `consent`: the row's, when the caller decoded it already (the planner, once
    per distinct text)."""
    return CustomerValue(
        id=row.id, country=row.country, name=row.name, locale=row.locale, timezone=row.timezone,
        email=row.email, phone=row.phone, whatsapp=row.whatsapp, line_id=row.line_id,
        telegram_id=row.telegram_id, region=row.region, consent=frozenset(row.consent or ()) if consent is None else consent,
    )


def order_item_rows(order_id: str, customer_id: str, currency: str, occurred_at: datetime,
                    items: Iterable[dict], shop: str = "default") -> list[dict]:
    """The `order_items` rows of one stored order (written at intake, beside the order;
    read by campaign audiences). Ids are the stored keys of `shop`."""
    return [dict(order_id=order_id, customer_id=customer_id, shop=shop, line_key=item.get("refill_sku") or item["sku"],
                 sku=item["sku"], refill_sku=item.get("refill_sku"), name=item["name"],
                 unit_price=str(item["unit_price"]), quantity=int(item["quantity"]), currency=currency,
                 occurred_at=occurred_at)
            for item in items]
