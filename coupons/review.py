"""A stream's review (SPEC section 9), and the one definition of "on time".

Pure arithmetic over plain rows that the store reads for one shop and one stream: the
buyers, their deliveries (each with its coupon's validity and redemption), and the orders
that may have redeemed or repurchased. No session, no clock.

Definitions (the README's "Rules where the spec is silent" repeats them):

- **On time**: the share of *finished* deliveries that were sent at or before their
  deadline. Finished is `sent` or `expired`, except deliveries that expired on arrival
  because their event was already older than its deadline (reason `late_event`: a
  backfill). Those were never Encore's to send on time; they are counted apart as
  `late_events` and never drag the rate down. With nothing finished the rate is 1.0, as
  `encore status` has always shown. In SQL: finished = `state IN ('sent','expired') AND NOT
  (state = 'expired' AND reason = 'late_event')`; on time = `state = 'sent' AND sent_at <=
  deadline_at`.
- **Coupons**: deliveries of the stream, less the held-out ones (the control group gets no
  coupon). Buyers include everyone who bought in the stream.
- **Redeemed**: coupons whose code was redeemed. **Revenue**: per currency, the sum over the
  redeeming orders of their items' `unit_price` x `quantity`, exact, then written by the
  money rule (`coupons.money.amount_text`); a refunded order brings no revenue.
- **Repurchase** (experiment groups): a customer of the group placed an order in the shop
  after their coupon's trigger and before it expired (`trigger_at < placed_at <
  valid_until`), redeeming or not, refunded orders aside. A held-out customer has no coupon,
  so the same window (the coupon they would have had) is used for every group alike; that is
  what makes the rates comparable. `ci95` is Newcombe's 95% interval for the group's rate
  minus the control group's (`coupons.stats`); null for the control group itself and where
  the experiment holds nobody out.
- **Last message**: seconds from the stream's end to the last message sent for it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from .campaigns import iso_utc
from .experiments import CONTROL
from .money import amount_text, discounted
from .states import DeliveryState, Reason
from .stats import newcombe_difference

RATE_DIGITS = 6


# ------------------------------------------------------------------ on time


def counts_toward_on_time(state: str, reason: str | None) -> bool:
    """A finished delivery that Encore could have sent on time."""
    return state == DeliveryState.SENT or (state == DeliveryState.EXPIRED and reason != Reason.LATE_EVENT)


def sent_on_time(state: str, sent_at: datetime | None, deadline_at: datetime) -> bool:
    return state == DeliveryState.SENT and sent_at is not None and sent_at <= deadline_at


def on_time_rate(on_time: int, finished: int) -> float:
    """on_time / finished, 1.0 when nothing has finished yet."""
    return round(on_time / finished, RATE_DIGITS) if finished else 1.0


@dataclass(frozen=True)
class OnTime:
    finished: int  # sent or expired, backfills aside
    on_time: int
    late_events: int  # expired on arrival (reason late_event), shown apart

    @property
    def rate(self) -> float:
        return on_time_rate(self.on_time, self.finished)


# ------------------------------------------------------------------ rows


@dataclass(frozen=True)
class Buyer:
    customer_id: str
    market: str


@dataclass(frozen=True)
class DeliveryRow:
    """One coupon of the stream with its delivery. `valid_until` is the coupon's expiry
    (held-out customers' too: the window their coupon would have had)."""

    customer_id: str
    market: str
    channel: str | None
    state: str
    reason: str | None
    trigger_at: datetime
    deadline_at: datetime
    sent_at: datetime | None
    valid_until: datetime
    redeemed_order_id: str | None = None
    experiment_id: str | None = None
    variant: str | None = None


@dataclass(frozen=True)
class OrderLine:
    unit_price: Decimal
    quantity: int


@dataclass(frozen=True)
class OrderRow:
    """An order of one of the stream's customers in the shop: a redeeming order, or any
    later one (a repurchase)."""

    id: str
    customer_id: str
    placed_at: datetime
    currency: str
    lines: tuple[OrderLine, ...]
    refunded: bool = False

    @property
    def items_total(self) -> Decimal:
        return sum((line.unit_price * line.quantity for line in self.lines), Decimal(0))


@dataclass(frozen=True)
class StreamFacts:
    shop: str
    stream: str
    ended_at: datetime | None
    buyers: Sequence[Buyer]
    deliveries: Sequence[DeliveryRow]
    orders: Sequence[OrderRow]


# ------------------------------------------------------------------ arithmetic


def on_time_of(deliveries: Iterable[DeliveryRow]) -> OnTime:
    finished = on_time = late = 0
    for row in deliveries:
        if row.state == DeliveryState.EXPIRED and row.reason == Reason.LATE_EVENT:
            late += 1
        elif counts_toward_on_time(row.state, row.reason):
            finished += 1
            on_time += sent_on_time(row.state, row.sent_at, row.deadline_at)
    return OnTime(finished, on_time, late)


def revenue(orders: Iterable[OrderRow]) -> dict[str, str]:
    """Per currency, the exact sum of the orders' items, written by the money rule."""
    totals: dict[str, Decimal] = {}
    for order in orders:
        if not order.refunded:
            totals[order.currency] = totals.get(order.currency, Decimal(0)) + order.items_total
    return {currency: amount_text(total, currency) for currency, total in sorted(totals.items())}


def discount_given(offer_type: str, regular_price: Decimal | None, price: Decimal | None,
                   percent: Decimal | None, currency: str) -> Decimal:
    """What a redeemed coupon gave away on one unit: the regular price less the offer's
    (a refill's price; half of a second unit; the percent off). 0 when the regular price
    is not known (a campaign coupon of an explicit offer may not carry one)."""
    if regular_price is None:
        return Decimal(0)
    if offer_type == "refill" and price is not None:
        return max(Decimal(0), regular_price - price)
    if percent is not None:
        return regular_price - discounted(regular_price, percent, currency)
    return Decimal(0)


def money_totals(amounts: Iterable[tuple[str, Decimal]]) -> dict[str, str]:
    """(currency, amount) pairs summed per currency, exact, written by the money rule."""
    totals: dict[str, Decimal] = {}
    for currency, amount in amounts:
        totals[currency] = totals.get(currency, Decimal(0)) + amount
    return {currency: amount_text(total, currency) for currency, total in sorted(totals.items())}


def _figures(deliveries: Sequence[DeliveryRow], orders_by_id: dict[str, OrderRow]) -> dict:
    """The counts shown for the whole stream, a market or a channel."""
    coupons = [row for row in deliveries if row.variant != CONTROL]
    timing = on_time_of(coupons)
    redeemed = [row.redeemed_order_id for row in coupons if row.redeemed_order_id is not None]
    return {
        "coupons": len(coupons),
        "sent": sum(row.state == DeliveryState.SENT for row in coupons),
        "sent_on_time": timing.on_time,
        "on_time_rate": timing.rate,
        "late_events": timing.late_events,
        "redeemed": len(redeemed),
        "revenue": revenue(orders_by_id[order_id] for order_id in dict.fromkeys(redeemed) if order_id in orders_by_id),
    }


def _repurchased(windows: list[tuple[datetime, datetime]], orders: list[OrderRow]) -> bool:
    return any(start < order.placed_at < end for order in orders if not order.refunded for start, end in windows)


def _rate(part: int, whole: int) -> float | None:
    return round(part / whole, RATE_DIGITS) if whole else None


def experiment_groups(deliveries: Iterable[DeliveryRow], orders: Iterable[OrderRow]) -> list[dict]:
    """Each experiment's groups, control first: customers, repurchases, the rate, and the 95%
    interval of (group's rate - control's rate)."""
    orders_of: dict[str, list[OrderRow]] = {}
    for order in orders:
        orders_of.setdefault(order.customer_id, []).append(order)
    windows: dict[tuple[str, str], dict[str, list[tuple[datetime, datetime]]]] = {}
    for row in deliveries:
        if row.experiment_id is not None and row.variant is not None:
            group = windows.setdefault((row.experiment_id, row.variant), {})
            group.setdefault(row.customer_id, []).append((row.trigger_at, row.valid_until))
    counted = {key: (len(members), sum(_repurchased(spans, orders_of.get(customer, []))
                                       for customer, spans in members.items()))
               for key, members in windows.items()}
    groups = []
    for experiment_id, variant in sorted(counted, key=lambda key: (key[0], key[1] != CONTROL, key[1])):
        customers, repurchased = counted[(experiment_id, variant)]
        control = counted.get((experiment_id, CONTROL))
        interval = None
        if variant != CONTROL and control is not None:
            interval = newcombe_difference(repurchased, customers, control[1], control[0])
        groups.append({
            "experiment": experiment_id,
            "variant": variant,
            "customers": customers,
            "repurchased": repurchased,
            "repurchase_rate": _rate(repurchased, customers),
            "ci95": None if interval is None else [round(limit, RATE_DIGITS) for limit in interval],
        })
    return groups


def stream_review(facts: StreamFacts, previous: StreamFacts | None = None) -> dict:
    """The review as `encore review --json` prints it: the stream's totals, a row per
    market and per channel, the experiment groups, and the previous stream's review (whose
    own `previous` is null) beside it."""
    orders_by_id = {order.id: order for order in facts.orders}
    deliveries = list(facts.deliveries)
    sent_times = [row.sent_at for row in deliveries if row.state == DeliveryState.SENT and row.sent_at is not None]
    last_sent = max(sent_times, default=None)
    buyers_in: dict[str, set[str]] = {}
    for buyer in facts.buyers:
        buyers_in.setdefault(buyer.market, set()).add(buyer.customer_id)
    markets = sorted(set(buyers_in) | {row.market for row in deliveries})
    channels = sorted({row.channel for row in deliveries if row.variant != CONTROL}, key=lambda channel: (channel is None, channel or ""))
    return {
        "shop": facts.shop,
        "stream": facts.stream,
        "ended_at": None if facts.ended_at is None else iso_utc(facts.ended_at),
        "buyers": len({buyer.customer_id for buyer in facts.buyers}),
        **_figures(deliveries, orders_by_id),
        "last_message_at": None if last_sent is None else iso_utc(last_sent),
        "last_message_seconds": (None if last_sent is None or facts.ended_at is None
                                 else (last_sent - facts.ended_at).total_seconds()),
        "markets": [{"market": market, "buyers": len(buyers_in.get(market, ())),
                     **_figures([row for row in deliveries if row.market == market], orders_by_id)}
                    for market in markets],
        "channels": [{"channel": channel,
                      **_figures([row for row in deliveries if row.channel == channel], orders_by_id)}
                     for channel in channels],
        "groups": experiment_groups(deliveries, facts.orders),
        "previous": None if previous is None else stream_review(previous),
    }
