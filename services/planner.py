"""Turn triggers into coupons and deliveries, in bulk.

A trigger is (trigger key, customer): `order:<order_id>` for a plain order,
`stream:<stream_id>` for everything one customer bought in a stream. The unique
key on coupons makes planning idempotent: a rerun inserts nothing new.

Planning is isolated per trigger (`plan_isolated`): a chunk is planned in bulk,
and if that raises, trigger by trigger, so one bad row (an absurd timestamp, a
broken item) ends as a "plan" dead letter and its orders are marked
`plan_failed_at`, while the rest of the chunk and the stream go on.
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal
from operator import attrgetter

from sqlalchemy import Row, Text, cast, select, update
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from coupons.codes import new_codes
from coupons.delivery_rules import Plan, plan_delivery
from coupons.experiments import Experiment, apply_variant, assign, experiment_for
from coupons.markets import Market
from coupons.model import ADDRESS_FIELD, Item, Offer
from coupons.offers import choose_offer
from coupons.shops import shop_of_key
from coupons.states import DeliveryState, Reason
from coupons.timing import FREQUENCY_CAP, coupon_expires_at, customer_zone, stream_fallback_at
from store.bulk import fill_where_null, insert_new, insert_new_rows, one_of
from store.models import Coupon, Customer, Delivery, EmailSuppression, Order, Stream
from store.rows import customer_value

from .bootstrap import Runtime
from .failures import failure_reason, store_dead_letter
from .code_sync import shop_code, shop_uses_platform
from .ports import SYNC_CODES

log = logging.getLogger(__name__)

PLAN_CHUNK = 1000
"""Customers planned per transaction: big enough for bulk inserts to pay, small
enough that sending starts while a 100,000-buyer stream is still being planned."""


@dataclass(frozen=True)
class PlanRequest:
    trigger_key: str
    customer_id: str
    trigger_at: datetime
    order_ids: tuple[str, ...]
    # A campaign's coupon: its offer is chosen by the campaign, and no order stands behind it.
    offer: Offer | None = None
    campaign: str | None = None
    # A campaign's own experiment (SPEC section 9); without one the market's applies.
    experiment: Experiment | None = None


def _recent_triggers(session: Session, customer_ids: list[str], earliest: datetime,
                     latest: datetime) -> dict[str, list[datetime]]:
    rows = session.connection().execute(
        select(Delivery.customer_id, Delivery.trigger_at).where(
            one_of(session, Delivery.customer_id, customer_ids),
            # A held-out trigger counts toward the cap as a sent one (the groups stay alike).
            Delivery.state.in_((DeliveryState.SCHEDULED, DeliveryState.SENDING, DeliveryState.SENT))
            | ((Delivery.state == DeliveryState.SUPPRESSED) & (Delivery.reason == Reason.HOLDOUT)),
            Delivery.trigger_at > earliest - FREQUENCY_CAP,
            Delivery.trigger_at < latest + FREQUENCY_CAP,
        )
    )
    found: dict[str, list[datetime]] = defaultdict(list)
    for customer_id, trigger_at in rows:
        found[customer_id].append(trigger_at)
    return found


CUSTOMER_COLUMNS = (Customer.id, Customer.shop, Customer.country, Customer.name, Customer.locale, Customer.timezone,
                    Customer.email, Customer.phone, Customer.whatsapp, Customer.line_id, Customer.telegram_id,
                    Customer.region, cast(Customer.consent, Text).label("consent"), cast(Customer.opted_out, Text).label("opted_out"))
"""A customer as the planner reads it: the channel lists as their JSON text (see `_ChunkDecisions.channels`)."""


class _ChunkDecisions:
    """What many triggers of one chunk share, computed once: a stream's buyers mostly
    bought the same few things at the same time in a handful of zones, so the offer,
    the delivery's timing, the expiry and the market are the same for thousands of
    them. Each is a pure function of its key; a failure is not remembered (the next
    trigger with that key raises again, and is dead-lettered on its own)."""

    def __init__(self, runtime: Runtime, now: datetime) -> None:
        self.runtime, self.now = runtime, now
        self._markets: dict[str, Market] = {}
        self._offers: dict[tuple, Offer] = {}
        self._timings: dict[tuple, tuple[Plan, datetime]] = {}
        self._channel_sets: dict[str | None, frozenset[str]] = {}

    def market(self, country: str) -> Market:
        market = self._markets.get(country)
        if market is None:
            market = self._markets[country] = self.runtime.markets.for_country(country)
        return market

    def offer(self, orders: list[Row], market: Market) -> Offer:
        """Rule 3 for these orders' items; keyed by the items' stored JSON text."""
        key = (market.name, orders[0].currency, *(order.items for order in orders))
        offer = self._offers.get(key)
        if offer is None:
            items = [
                Item(sku=i["sku"], name=i["name"], unit_price=Decimal(i["unit_price"]),
                     quantity=int(i["quantity"]), refill_sku=i.get("refill_sku"))
                for order in orders for i in json.loads(order.items)
            ]
            offer = self._offers[key] = choose_offer(items, orders[0].currency, market,
                                                     self.runtime.settings.refill_ratio)
        return offer

    def channels(self, stored: str | None) -> frozenset[str]:
        """A consent or opt-out list from its JSON text: a handful of distinct lists per chunk."""
        channels = self._channel_sets.get(stored)
        if channels is None:
            channels = self._channel_sets[stored] = frozenset(json.loads(stored) or ()) if stored else frozenset()
        return channels

    def timing(self, trigger_at: datetime, row: Row, market: Market, capped: bool,
               email_suppressed: bool = False) -> tuple[Plan, datetime]:
        """The delivery's plan (rules 8-10, 17, 18) and the coupon's expiry. Both read of
        the customer only the country, zone, state, consent, opt-outs, which addresses
        are set and whether their email is suppressed -- the key -- so buyers alike in those (most of a stream) share one
        computation; `now` and the configured channels are the same for the whole chunk."""
        key = (trigger_at, row.country, row.timezone, row.region, row.consent, row.opted_out,
               *map(bool, _addresses(row)), capped, email_suppressed)
        timing = self._timings.get(key)
        if timing is None:
            customer = customer_value(row, consent=self.channels(row.consent))
            plan = plan_delivery(trigger_at=trigger_at, now=self.now, customer=customer, market=market,
                                 configured=self.runtime.configured_channels,
                                 opted_out=self.channels(row.opted_out), capped=capped,
                                 suppressed=("email",) if email_suppressed else ())
            expires_at = coupon_expires_at(trigger_at, market.valid_days, customer_zone(customer, market))
            timing = self._timings[key] = (plan, expires_at)
        return timing


_addresses = attrgetter(*ADDRESS_FIELD.values())


def plan_coupons(session: Session, runtime: Runtime, requests: list[PlanRequest], now: datetime) -> int:
    """Create the coupon and delivery for each request; returns how many are scheduled.

    Plain rows (no ORM objects), one array-parameter statement per table (store.bulk):
    a 10,000-buyer stream is planned in 10 such chunks while its first sends go out."""
    requests = merge_requests(requests)
    if not requests:
        return 0
    session.flush()  # reads below bypass the ORM session (and so its autoflush)
    connection = session.connection()
    customer_ids = sorted({r.customer_id for r in requests})
    customers = {row.id: row for row in connection.execute(
        select(*CUSTOMER_COLUMNS).where(one_of(session, Customer.id, customer_ids)))}
    order_ids = sorted({o for r in requests for o in r.order_ids})
    orders = {row.id: row for row in connection.execute(
        select(Order.id, Order.currency, Order.refunded_at, cast(Order.items, Text).label("items"))
        .where(one_of(session, Order.id, order_ids)))} if order_ids else {}
    recent = _recent_triggers(session, customer_ids, min(r.trigger_at for r in requests),
                              max(r.trigger_at for r in requests))
    suppressed_emails = set(connection.execute(select(EmailSuppression.email).where(one_of(
        session, EmailSuppression.email, sorted({row.email.lower() for row in customers.values() if row.email})))).scalars())
    shared = _ChunkDecisions(runtime, now)
    codes = iter(new_codes(len(requests)))
    coupon_rows, delivery_plans = [], {}
    for request in sorted(requests, key=lambda r: r.trigger_at):
        row = customers[request.customer_id]
        market = shared.market(row.country)
        live_orders = [orders[o] for o in request.order_ids if o in orders and orders[o].refunded_at is None]
        if not live_orders and request.offer is None:
            continue  # everything refunded before planning: nothing to promise
        offer = request.offer or shared.offer(live_orders, market)
        capped = any(abs(request.trigger_at - t) < FREQUENCY_CAP for t in recent[request.customer_id])
        plan, expires_at = shared.timing(request.trigger_at, row, market, capped,
                                         bool(row.email) and row.email.lower() in suppressed_emails)
        # Only who passed every rule joins an experiment's group: the groups are alike (SPEC 9).
        experiment = experiment_for(market.experiment, request.experiment)
        assignment = (assign(experiment, row.shop, request.customer_id)
                      if experiment is not None and plan.state == DeliveryState.SCHEDULED else None)
        treatment = apply_variant(offer, market.framing, assignment)
        offer = treatment.offer
        if plan.state == DeliveryState.SCHEDULED:
            recent[request.customer_id].append(request.trigger_at)
            if assignment is not None and assignment.held_out:  # no message, no code in any shop
                plan = replace(plan, state=DeliveryState.SUPPRESSED, reason=Reason.HOLDOUT)
        key = (request.trigger_key, request.customer_id)
        # Rule 15: a platform shop's code is made in the shop before its message goes out,
        # and only when that message will be sent (services.code_sync); never for the held out.
        in_shop = shop_uses_platform(runtime.settings, row.shop)
        sync = in_shop and plan.state == DeliveryState.SCHEDULED
        delivery_plans[key] = (request, plan, assignment, sync)
        code = next(codes)
        coupon_rows.append(dict(
            code=shop_code(code) if in_shop else code, sync_due_at=now if sync else None,
            trigger_key=request.trigger_key, customer_id=request.customer_id, shop=row.shop,
            market=market.name, offer_type=offer.type, sku=offer.sku, product_name=offer.product_name,
            currency=offer.currency, price=None if offer.price is None else str(offer.price),
            percent=None if offer.percent is None else str(offer.percent),
            regular_price=None if offer.regular_price is None else str(offer.regular_price),
            created_at=now, expires_at=expires_at,
            campaign=request.campaign,
            framing=None if treatment.framing == market.framing else treatment.framing, template=treatment.template,
        ))
    if not coupon_rows:
        return 0
    inserted = insert_new_rows(session, Coupon, coupon_rows, ["trigger_key", "customer_id"],
                               ("id", "trigger_key", "customer_id"))
    delivery_rows = []
    for coupon_id, trigger_key, customer_id in inserted:
        request, plan, assignment, sync = delivery_plans[(trigger_key, customer_id)]
        delivery_rows.append(dict(
            coupon_id=coupon_id, customer_id=customer_id, shop=customers[customer_id].shop, state=plan.state,
            reason=plan.reason,
            trigger_at=request.trigger_at, due_at=plan.due_at, deadline_at=plan.deadline_at,
            next_attempt_at=None if sync else plan.due_at, attempts=0, channel_attempts=0, failed_channels=[],
            updated_at=now,
            experiment=None if assignment is None else assignment.experiment_id,
            variant=None if assignment is None else assignment.variant,
        ))
    insert_new(session, Delivery, delivery_rows, ["coupon_id"], "id")
    if any(delivery_plans[(key, customer)][3] for _, key, customer in inserted):  # (…, assignment, sync)
        runtime.doorbell.ring_after_commit(session, SYNC_CODES)
    new_keys = {(trigger_key, customer_id) for _, trigger_key, customer_id in inserted}
    _rechoose_unsent_offers(session, [row for row in coupon_rows if row["trigger_key"].startswith("stream:")
                                      and (row["trigger_key"], row["customer_id"]) not in new_keys], now)
    _attach_orders(session, requests, {(key, customer): coupon_id for coupon_id, key, customer in inserted})
    return sum(1 for row in delivery_rows if row["state"] == DeliveryState.SCHEDULED)


OFFER_COLUMNS = ("offer_type", "sku", "product_name", "currency", "price", "percent", "regular_price")


def _rechoose_unsent_offers(session: Session, coupon_rows: list[dict], now: datetime) -> None:
    """A stream coupon that already existed gets the offer chosen from all the
    customer's orders (rule 2) while nobody can have seen it: its delivery is still
    scheduled and was never attempted. The code, timing and expiry stay.

    The delivery row is written first: on PostgreSQL that locks it, so a sender's
    claim (`scheduled → sending`) waits for this commit and then reads the new
    offer; a delivery already claimed is not `scheduled` and keeps its offer.
    """
    for row in coupon_rows:
        coupon_id = session.scalar(select(Coupon.id).where(
            Coupon.trigger_key == row["trigger_key"], Coupon.customer_id == row["customer_id"]))
        if coupon_id is None:
            continue
        unseen = session.execute(
            update(Delivery).where(Delivery.coupon_id == coupon_id, Delivery.state == DeliveryState.SCHEDULED,
                                   Delivery.attempts == 0).values(updated_at=now)
        ).rowcount
        if unseen:
            # A code that may already be in its shop keeps the offer it was made with there.
            session.execute(update(Coupon).where(Coupon.id == coupon_id, Coupon.redeemed_at.is_(None),
                                                 Coupon.sync_attempts == 0, Coupon.code_synced_at.is_(None))
                            .values(**{column: row[column] for column in OFFER_COLUMNS}))


def merge_requests(requests: list[PlanRequest]) -> list[PlanRequest]:
    """One request per (trigger, customer), with all its orders (rule 2).

    Two late orders of one customer in an ended stream, applied in one batch, each
    ask for the stream's coupon; the coupon must be chosen from both, not from
    whichever came first. The latest trigger time wins, as `stream_requests` would
    compute it from all the orders.
    """
    merged: dict[tuple[str, str], PlanRequest] = {}
    for request in requests:
        key = (request.trigger_key, request.customer_id)
        seen = merged.get(key)
        if seen is None:
            merged[key] = request
            continue
        order_ids = seen.order_ids + tuple(o for o in request.order_ids if o not in seen.order_ids)
        merged[key] = PlanRequest(request.trigger_key, request.customer_id,
                                  max(seen.trigger_at, request.trigger_at), order_ids,
                                  offer=seen.offer or request.offer, campaign=seen.campaign or request.campaign,
                                  experiment=seen.experiment or request.experiment)
    return list(merged.values())


def plan_isolated(session: Session, runtime: Runtime, requests: list[PlanRequest], now: datetime,
                  on_failure: Callable[[PlanRequest, Exception], None] | None = None) -> int:
    """Plan the batch in bulk; if that fails, plan each trigger alone so one bad
    trigger is dead-lettered instead of taking the batch down with it. A database
    outage (OperationalError) is not a bad trigger: it propagates, and the caller retries."""
    requests = merge_requests(requests)
    if not requests:
        return 0
    try:
        with session.begin_nested():
            return plan_coupons(session, runtime, requests, now)
    except OperationalError:
        raise
    except Exception:
        log.warning("bulk planning of %d triggers failed; planning them one by one", len(requests))
    scheduled = 0
    for request in requests:
        try:
            with session.begin_nested():
                scheduled += plan_coupons(session, runtime, [request], now)
        except OperationalError:
            raise
        except Exception as exc:
            if on_failure is not None:
                on_failure(request, exc)
            else:
                record_plan_failure(session, request.trigger_key, request.customer_id, request.order_ids, exc, now)
    return scheduled


def record_plan_failure(session: Session, trigger_key: str, customer_id: str, order_ids: Iterable[str],
                        exc: Exception, now: datetime) -> None:
    """A "plan" dead letter whose text says what to replan, and a mark on the orders
    so the sweep does not retry (and dead-letter) the same trigger every minute."""
    log.error("planning %s for customer %s failed: %s", trigger_key, customer_id, failure_reason(exc))
    log.debug("planning %s failed", trigger_key, exc_info=(type(exc), exc, exc.__traceback__))
    store_dead_letter(session, "plan", json.dumps({"trigger_key": trigger_key, "customer_id": customer_id}),
                      failure_reason(exc), now, shop_of_key(customer_id))
    ids = list(order_ids)
    if ids:
        session.execute(update(Order).where(Order.id.in_(ids), Order.coupon_id.is_(None))
                        .values(plan_failed_at=now))
    session.flush()


def replan(session: Session, runtime: Runtime, trigger_key: str, customer_id: str, now: datetime) -> int:
    """Plan one trigger again: the replay of a "plan" dead letter, whose text is
    `{"trigger_key": ..., "customer_id": ...}`. Clears the failure mark and plans;
    returns how many deliveries were scheduled (0 when a stream trigger is not due
    yet: the sweep plans it then). Raises, leaving nothing changed, if it still fails."""
    kind, _, ref = trigger_key.partition(":")
    if kind == "order":
        orders = [o for o in [session.get(Order, ref)] if o is not None and o.customer_id == customer_id]
    elif kind == "stream":
        orders = list(session.scalars(select(Order).where(Order.stream_id == ref, Order.customer_id == customer_id)))
    else:
        raise ValueError(f"trigger_key: unknown trigger {trigger_key!r}")
    if not orders:
        raise ValueError(f"trigger_key: no orders of customer {customer_id!r} behind {trigger_key!r}")
    with session.begin_nested():
        session.execute(update(Order).where(Order.id.in_([o.id for o in orders])).values(plan_failed_at=None))
        if kind == "order":
            requests = [PlanRequest(trigger_key, customer_id, orders[0].occurred_at, (orders[0].id,))]
        else:
            ended_at = session.scalar(select(Stream.ended_at).where(Stream.id == ref))
            requests = stream_requests(session, ref, ended_at, [customer_id], now)
        return plan_coupons(session, runtime, requests, now)


def _attach_orders(session: Session, requests: list[PlanRequest], coupon_ids: dict[tuple[str, str], int]) -> None:
    """Link each order to its coupon, so refunds can find what they void (one batched
    UPDATE, however many orders). `coupon_ids`: the coupons just created; the others
    (a late order for a coupon that exists) are looked up."""
    missing = [r for r in requests if (r.trigger_key, r.customer_id) not in coupon_ids]
    if missing:
        found = session.connection().execute(
            select(Coupon.trigger_key, Coupon.customer_id, Coupon.id).where(
                one_of(session, Coupon.trigger_key, {r.trigger_key for r in missing}),
                one_of(session, Coupon.customer_id, {r.customer_id for r in missing}))
        ).all()
        coupon_ids = {**coupon_ids, **{(key, customer): coupon_id for key, customer, coupon_id in found}}
    fill_where_null(session, Order, "id", "coupon_id", {
        order_id: coupon_ids[(r.trigger_key, r.customer_id)]
        for r in requests if (r.trigger_key, r.customer_id) in coupon_ids
        for order_id in r.order_ids
    })


def stream_requests(session: Session, stream_id: str, ended_at: datetime | None, customer_ids: list[str],
                    now: datetime, on_error: Callable[[str, list[str], Exception], None] | None = None,
                    ) -> list[PlanRequest]:
    """One request per customer of the stream whose orders have no coupon yet and are due to trigger.

    With `on_error`, a customer whose trigger time cannot be computed (an absurd
    order time) is handed to it and skipped, instead of failing the whole chunk.
    """
    session.flush()  # the read below bypasses the ORM session (and so its autoflush)
    rows = session.connection().execute(
        select(Order.customer_id, Order.id, Order.occurred_at).where(
            Order.stream_id == stream_id, one_of(session, Order.customer_id, customer_ids))
    ).all()
    per_customer: dict[str, list[tuple[str, datetime]]] = defaultdict(list)
    for customer_id, order_id, occurred_at in rows:
        per_customer[customer_id].append((order_id, occurred_at))
    requests = []
    for customer_id, orders in per_customer.items():
        try:
            trigger_at = _stream_trigger(orders, ended_at, now)
        except Exception as exc:
            if on_error is None:
                raise
            on_error(customer_id, [o for o, _ in orders], exc)
            continue
        if trigger_at is not None:
            requests.append(PlanRequest(f"stream:{stream_id}", customer_id, trigger_at, tuple(o for o, _ in orders)))
    return requests


def _stream_trigger(orders: list[tuple[str, datetime]], ended_at: datetime | None, now: datetime) -> datetime | None:
    first = min(at for _, at in orders)
    last = max(at for _, at in orders)
    if ended_at is not None:
        return max(ended_at, last)
    if stream_fallback_at(first) <= now:
        return stream_fallback_at(first)
    return None
