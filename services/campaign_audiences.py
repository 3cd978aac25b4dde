"""Who a campaign run reaches, and on which items: set-based SQL over indexed columns,
one keyset block of customers at a time (primary-key order, so each step reads one
block however large the table), evaluated as of the run's scheduled time.

A campaign reaches a customer at most once per purchase: someone it already reached
since their last relevant order is left out, so a daily refill reminder does not
repeat every day. The run itself (claim, chunks, progress) is `services.campaigns`.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from sqlalchemy import and_, case, func, or_, select
from sqlalchemy.orm import Session

from coupons.campaigns import Campaign, campaign_offer
from coupons.model import Item, Offer
from store.models import Coupon, Customer, Order, OrderItem

from .bootstrap import Runtime
from .planner import PLAN_CHUNK

log = logging.getLogger(__name__)


def _market_filter(runtime: Runtime, campaign: Campaign):
    """Customers.country for the campaign's markets; the default market is 'any other country'."""
    known = Customer.country != ""  # an opt-out remembered for a customer never seen
    if not campaign.markets:
        return known
    named: set[str] = set()
    others = {c for m in runtime.markets.by_name.values() if not m.is_default for c in m.country_timezones}
    wants_default = False
    for name in campaign.markets:
        market = runtime.markets.by_name[name]
        if market.is_default:
            wants_default = True
        named |= set(market.country_timezones)
    clauses = [Customer.country.in_(sorted(named))] if named else []
    if wants_default:
        clauses.append(Customer.country.not_in(sorted(others)))
    return and_(known, or_(*clauses))


def _last_reached(session: Session, campaign: Campaign, first: str, last: str) -> dict[str, datetime]:
    """When this campaign last created a coupon for each customer of an id range.

    A separate statement rather than NOT EXISTS inside the audience query: PostgreSQL
    planned that anti-join as a scan of all the campaign's coupons per customer, which
    grows quadratic while a run inserts them."""
    return dict(session.execute(
        select(Coupon.customer_id, func.max(Coupon.created_at))
        .where(Coupon.campaign == campaign.name, Coupon.customer_id.between(first, last))
        .group_by(Coupon.customer_id)).all())


def _not_reached_since(reached: dict[str, datetime], customer_id: str, last_at: datetime) -> bool:
    """A campaign reaches a customer once per purchase: not again if it did since `last_at`."""
    at = reached.get(customer_id)
    return at is None or at < last_at


def _due_lines(campaign: Campaign, as_of: datetime, where):
    """replenishment_due: (customer, product line) whose last purchase, of the consumable
    or its refill, is at least `days` old, and the line holds a consumable purchase."""
    cutoff = as_of - timedelta(days=campaign.days)
    last_at = func.max(OrderItem.occurred_at)
    return (
        select(OrderItem.customer_id, OrderItem.line_key, last_at.label("last_at"))
        .where(where)
        .group_by(OrderItem.customer_id, OrderItem.line_key)
        .having(last_at <= cutoff, func.max(case((OrderItem.refill_sku.is_not(None), 1), else_=0)) == 1)
        .subquery("due")
    )


def _last_orders(campaign: Campaign, as_of: datetime, where):
    """lapsed: last order at least `days` old; recent_buyers: an order in the `days` before the run."""
    cutoff = as_of - timedelta(days=campaign.days)
    last_at = func.max(Order.occurred_at)
    query = select(Order.customer_id, last_at.label("last_at")).where(where).group_by(Order.customer_id)
    if campaign.audience == "lapsed":
        query = query.having(last_at <= cutoff)
    else:
        query = query.where(Order.occurred_at > cutoff, Order.occurred_at <= as_of)
    return query.subquery("due")


def customer_block(session: Session, runtime: Runtime, campaign: Campaign, after: str,
                   limit: int = PLAN_CHUNK) -> list[str]:
    """The next `limit` customer ids of the campaign's markets after `after`: the keyset a
    run walks (primary-key order, so each step reads one block, however large the table)."""
    return list(session.scalars(
        select(Customer.id).where(Customer.id > after, _market_filter(runtime, campaign))
        .order_by(Customer.id).limit(limit)))


def audience_in_block(session: Session, campaign: Campaign, as_of: datetime, block: list[str]) -> list[str]:
    """Who of one block of customers is in the audience: a statement over the block's id
    range, and one for whom the campaign already reached. (A single LIMIT query over the
    whole audience makes PostgreSQL aggregate every remaining customer for each chunk:
    quadratic in N.)"""
    if not block:
        return []
    first, last = block[0], block[-1]
    if campaign.audience == "replenishment_due":
        due = _due_lines(campaign, as_of, OrderItem.customer_id.between(first, last))
    else:
        due = _last_orders(campaign, as_of, Order.customer_id.between(first, last))
    reached = _last_reached(session, campaign, first, last)
    in_block = set(block)
    found = {customer_id for customer_id, last_at in session.execute(select(due.c.customer_id, due.c.last_at))
             if customer_id in in_block and _not_reached_since(reached, customer_id, last_at)}
    return sorted(found)


@dataclass(frozen=True)
class Member:
    customer_id: str
    items: list[Item]
    currency: str


def _item(sku: str, name: str, unit_price: str, quantity: int, refill_sku: str | None) -> Item:
    return Item(sku=sku, name=name, unit_price=Decimal(unit_price), quantity=int(quantity), refill_sku=refill_sku)


def audience_members(session: Session, campaign: Campaign, customer_ids: list[str], as_of: datetime) -> list[Member]:
    """The items each customer of a chunk is offered on (one or two statements per chunk):
    the due consumables for a refill reminder, the last order for a win-back, the window's
    orders for recent buyers. Only items in the currency of their latest purchase count."""
    if not customer_ids:
        return []
    picked: dict[str, list[tuple[datetime, str, Item]]] = defaultdict(list)
    if campaign.audience == "replenishment_due":
        first, last = min(customer_ids), max(customer_ids)
        due = _due_lines(campaign, as_of, OrderItem.customer_id.between(first, last))
        reached = _last_reached(session, campaign, first, last)
        rows = session.execute(
            select(OrderItem.customer_id, OrderItem.line_key, OrderItem.occurred_at, OrderItem.currency,
                   OrderItem.sku, OrderItem.name, OrderItem.unit_price, OrderItem.refill_sku, due.c.last_at)
            .join(due, and_(due.c.customer_id == OrderItem.customer_id, due.c.line_key == OrderItem.line_key))
            .where(OrderItem.refill_sku.is_not(None))
            .order_by(OrderItem.customer_id, OrderItem.occurred_at.desc(), OrderItem.id.desc())
        ).all()
        seen_lines: set[tuple[str, str]] = set()
        for customer_id, line, at, currency, sku, name, price, refill, line_last_at in rows:
            if (customer_id, line) in seen_lines or not _not_reached_since(reached, customer_id, line_last_at):
                continue  # an older purchase of a line already taken at its latest, or reminded already
            seen_lines.add((customer_id, line))
            picked[customer_id].append((at, currency, _item(sku, name, price, 1, refill)))
    else:
        due = _last_orders(campaign, as_of, Order.customer_id.between(min(customer_ids), max(customer_ids)))
        # the audience (customer_ids) is already filtered for "reached since"
        window = (Order.occurred_at == due.c.last_at if campaign.audience == "lapsed" else
                  and_(Order.occurred_at > as_of - timedelta(days=campaign.days), Order.occurred_at <= as_of))
        rows = session.execute(
            select(Order.customer_id, Order.occurred_at, Order.currency, Order.items)
            .join(due, due.c.customer_id == Order.customer_id).where(window)
            .order_by(Order.customer_id, Order.occurred_at.desc())
        ).all()
        for customer_id, at, currency, items in rows:
            for raw in items:
                picked[customer_id].append((at, currency, _item(raw["sku"], raw["name"], raw["unit_price"],
                                                                raw["quantity"], raw.get("refill_sku"))))
    members = []
    for customer_id in customer_ids:
        entries = picked.get(customer_id)
        if not entries:
            continue
        currency = max(entries, key=lambda e: e[0])[1]
        members.append(Member(customer_id, [item for _, cur, item in entries if cur == currency], currency))
    return members


def offers_for(runtime: Runtime, campaign: Campaign, session: Session,
            members: list[Member]) -> list[tuple[Member, Customer, Offer]]:
    customers = {c.id: c for c in session.scalars(select(Customer).where(
        Customer.id.in_([m.customer_id for m in members])))}
    chosen = []
    for member in members:
        row = customers[member.customer_id]
        market = runtime.markets.for_country(row.country)
        try:
            offer = campaign_offer(campaign, member.items, member.currency, market, runtime.settings.refill_ratio)
        except Exception:  # one customer's odd data must not stop the run
            log.exception("campaign %s: no offer for customer %s", campaign.name, member.customer_id)
            continue
        chosen.append((member, row, offer))
    return chosen
