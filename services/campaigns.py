"""Scheduled campaigns: who a run reaches, running it once, and what it did.

A run is one (campaign, scheduled time) row in `campaign_runs`; its unique key and
a lease make it happen once however many schedulers, retried tasks or
`encore campaigns run` race for it. A run selects its audience with set-based SQL
over indexed columns, a chunk of customers at a time in customer-id order (keyset),
and plans each chunk through the same bulk path as streams (`plan_coupons`), so
deadline, quiet hours, frequency cap and consent apply unchanged and memory stays
flat however large the audience. The run's coupons share the trigger key
`campaign:<name>@<scheduled UTC>`: (trigger, customer) is unique, so even two
runners on one chunk never reach a customer twice. Progress (the last customer
planned) is committed with each chunk, so a runner that dies is resumed, not redone.

Audiences are evaluated as of the scheduled time, so a run caught up late reaches
whom it would have reached on time. A campaign reaches a customer at most once per
purchase: someone it already reached since their last relevant order is left out,
so a daily refill reminder does not repeat every day.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from importlib import resources
from pathlib import Path

from sqlalchemy import and_, case, func, or_, select, update
from sqlalchemy.orm import Session

from coupons.campaigns import (
    Campaign,
    CampaignFileError,
    campaign_offer,
    campaign_trigger_key,
    iso_utc,
    latest_run_at,
    load_campaigns,
    within_run_window,
)
from coupons.codes import new_code
from coupons.delivery_rules import usable_channels
from coupons.messages import render_message, resolve_language
from coupons.model import Item, Message, MessageContext, Offer
from config.settings import Settings
from coupons.states import DeliveryState, RunState
from coupons.timing import coupon_expires_at, customer_zone
from store.bulk import dialect_insert
from store.db import session_scope
from store.models import CampaignRun, Coupon, Customer, Delivery, Order, OrderItem
from store.rows import customer_value

from .bootstrap import Runtime
from .failures import failure_reason
from .planner import PLAN_CHUNK, PlanRequest, plan_isolated
from .ports import RELAY, RUN_CAMPAIGN

log = logging.getLogger(__name__)

RUN_LEASE = timedelta(minutes=5)
"""Far above one chunk's time (a 1,000-customer chunk plans in about a second);
renewed per chunk; after it a dead runner's run is resumed by the next tick."""
SAMPLE_MESSAGES = 3
CAMPAIGN_CHUNK = PLAN_CHUNK
"""Customers per transaction of a run, as for streams (1,000)."""


# ------------------------------------------------------------------ files


def campaigns_folder(runtime: Runtime) -> Path:
    return campaigns_folder_of(runtime.settings)


def campaigns_folder_of(settings: Settings) -> Path:
    """ENCORE_CAMPAIGNS_DIR, or the shipped examples."""
    if settings.campaigns_dir:
        return Path(settings.campaigns_dir)
    return Path(str(resources.files("schedules").joinpath("campaigns")))


def load_all(runtime: Runtime) -> tuple[list[Campaign], list[CampaignFileError]]:
    return load_campaigns(campaigns_folder(runtime), runtime.markets.by_name)


# ------------------------------------------------------------------ audiences


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


def _offers(runtime: Runtime, campaign: Campaign, session: Session,
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


# ------------------------------------------------------------------ runs


def find_run(session: Session, name: str, scheduled_at: datetime) -> CampaignRun | None:
    return session.scalar(select(CampaignRun).where(CampaignRun.campaign == name,
                                                    CampaignRun.scheduled_at == scheduled_at))


def claim_run(session: Session, campaign: Campaign, scheduled_at: datetime, now: datetime) -> str:
    """Own the run for one lease. Returns `claimed`, or why not: `done`, `missed` (its
    24 h window passed before it started: recorded, nothing sent), or `busy` (another
    runner holds it)."""
    missed = not within_run_window(scheduled_at, now)
    inserted = session.execute(
        dialect_insert(session)(CampaignRun).values(
            campaign=campaign.name, scheduled_at=scheduled_at, state=RunState.MISSED if missed else RunState.RUNNING,
            started_at=now, finished_at=now if missed else None, lease_until=None if missed else now + RUN_LEASE,
            after_customer="", planned=0,
        ).on_conflict_do_nothing(index_elements=["campaign", "scheduled_at"]).returning(CampaignRun.id)
    ).scalar()
    if inserted is not None:
        return RunState.MISSED if missed else "claimed"
    taken = session.execute(
        update(CampaignRun).where(CampaignRun.campaign == campaign.name, CampaignRun.scheduled_at == scheduled_at,
                                  CampaignRun.state == RunState.RUNNING,
                                  or_(CampaignRun.lease_until.is_(None), CampaignRun.lease_until < now))
        .values(lease_until=now + RUN_LEASE)
    ).rowcount
    if taken:
        return "claimed"
    run = find_run(session, campaign.name, scheduled_at)
    return "busy" if run is None or run.state == RunState.RUNNING else run.state


def run_chunk(session: Session, runtime: Runtime, campaign: Campaign, scheduled_at: datetime,
              now: datetime) -> int | None:
    """Plan the next chunk of the run's audience; None when the run is finished.

    The run row is locked for the chunk, so two runners take turns and never plan
    the same customers (the coupons' unique key would stop them anyway)."""
    run = session.scalar(select(CampaignRun).where(
        CampaignRun.campaign == campaign.name, CampaignRun.scheduled_at == scheduled_at).with_for_update())
    if run is None or run.state != RunState.RUNNING:
        return None
    block = customer_block(session, runtime, campaign, run.after_customer, CAMPAIGN_CHUNK)
    if not block:
        run.state, run.finished_at, run.lease_until = RunState.DONE, now, None
        return None
    customer_ids = audience_in_block(session, campaign, scheduled_at, block)
    trigger_key = campaign.trigger_key(scheduled_at)
    requests = [
        PlanRequest(trigger_key, member.customer_id, scheduled_at, (), offer=offer, campaign=campaign.name)
        for member, _, offer in _offers(runtime, campaign, session, audience_members(session, campaign, customer_ids,
                                                                                       scheduled_at))
    ]
    scheduled = _plan_isolated(session, runtime, campaign, requests, now) if requests else 0
    run.after_customer = block[-1]
    run.planned += scheduled
    run.lease_until = now + RUN_LEASE
    return scheduled


def _plan_isolated(session: Session, runtime: Runtime, campaign: Campaign, requests: list[PlanRequest],
                   now: datetime) -> int:
    """The chunk in bulk; if that fails, customer by customer (`planner.plan_isolated`), so
    one customer's bad data is logged and skipped instead of stopping the run at this chunk."""
    def skip(request: PlanRequest, exc: Exception) -> None:
        log.error("campaign %s: planning customer %s failed (%s); skipped", campaign.name, request.customer_id,
                  failure_reason(exc))

    return plan_isolated(session, runtime, requests, now, on_failure=skip)


def run_campaign(runtime: Runtime, campaign: Campaign, scheduled_at: datetime) -> str:
    """Claim the run and plan its whole audience, one committed chunk at a time. Returns
    `done` (this call ran it), `already_done`, `busy` (another runner has it) or `missed`.

    Each chunk that scheduled deliveries rings the relay after its commit, so sending
    starts while later chunks are still being planned."""
    with session_scope(runtime.database_url) as session:
        claim = claim_run(session, campaign, scheduled_at, runtime.clock())
    if claim != "claimed":
        return "already_done" if claim == RunState.DONE else claim
    while True:
        with session_scope(runtime.database_url) as session:
            scheduled = run_chunk(session, runtime, campaign, scheduled_at, runtime.clock())
            if scheduled:
                runtime.doorbell.ring_after_commit(session, RELAY)
        if scheduled is None:
            return RunState.DONE


def run_named(runtime: Runtime, name: str, scheduled_at: str) -> str:
    """The run the campaign runner rang for: the campaign called `name`, at `scheduled_at`
    (ISO 8601). `unknown` when its file is gone or broken since."""
    campaigns, _ = load_all(runtime)
    campaign = next((c for c in campaigns if c.name == name), None)
    if campaign is None:
        log.error("campaign %s: no longer in the campaigns folder (or its file is broken); run skipped", name)
        return "unknown"
    outcome = run_campaign(runtime, campaign, datetime.fromisoformat(scheduled_at))
    log.info("campaign %s run of %s: %s", name, scheduled_at, outcome)
    return outcome


@dataclass(frozen=True)
class DueRun:
    campaign: Campaign
    scheduled_at: datetime


def due_runs(session: Session, campaigns: list[Campaign], now: datetime) -> list[DueRun]:
    """Each enabled campaign's latest occurrence that has no run yet, or whose runner
    died (lease expired): what the beat's campaign runner starts. Runs missed by more
    than 24 h are recorded `missed` here, with no sends."""
    due = []
    for campaign in campaigns:
        if not campaign.enabled:
            continue
        scheduled_at = latest_run_at(campaign, now)
        run = find_run(session, campaign.name, scheduled_at)
        if run is not None and (run.state != RunState.RUNNING or (run.lease_until and run.lease_until >= now)):
            continue
        if run is None and not within_run_window(scheduled_at, now):
            claim_run(session, campaign, scheduled_at, now)  # records it missed
            log.warning("campaign %s: run of %s missed (more than 24 h ago); nothing sent",
                        campaign.name, iso_utc(scheduled_at))
            continue
        due.append(DueRun(campaign, scheduled_at))
    return due


def start_due_runs(runtime: Runtime) -> int:
    """The campaign runner's tick (beat, every minute): ring a run for each occurrence
    that is due; the run claims itself, so a tick twice starts nothing twice."""
    campaigns, errors = load_all(runtime)
    for error in errors:
        log.error("campaign file skipped: %s", error)
    with session_scope(runtime.database_url) as session:
        due = due_runs(session, campaigns, runtime.clock())
    for run in due:
        runtime.doorbell.ring(RUN_CAMPAIGN, run.campaign.name, iso_utc(run.scheduled_at))
    return len(due)


# ------------------------------------------------------------------ reports


def run_counts(session: Session, campaign_name: str, scheduled_at: datetime, planned: int) -> dict:
    """A run's counts, from its coupons and deliveries by trigger key (set-based, live)."""
    key = campaign_trigger_key(campaign_name, scheduled_at)
    audience = dict(session.execute(
        select(Coupon.market, func.count()).where(Coupon.trigger_key == key).group_by(Coupon.market)).all())
    counts: dict = {"audience": audience, "planned": planned, "suppressed": {}, "scheduled": 0, "sending": 0,
                    "sent": 0, "failed": 0, "expired": 0, "cancelled": 0}
    for state, reason, count in session.execute(
        select(Delivery.state, Delivery.reason, func.count()).join(Coupon, Coupon.id == Delivery.coupon_id)
        .where(Coupon.trigger_key == key).group_by(Delivery.state, Delivery.reason)
    ):
        if state == DeliveryState.SUPPRESSED:
            counts["suppressed"][reason or "unknown"] = counts["suppressed"].get(reason or "unknown", 0) + count
        else:
            counts[state] = counts.get(state, 0) + count
    return counts


def last_run(session: Session, name: str) -> CampaignRun | None:
    return session.scalar(select(CampaignRun).where(CampaignRun.campaign == name)
                          .order_by(CampaignRun.scheduled_at.desc()).limit(1))


# ------------------------------------------------------------------ dry run


@dataclass
class Preview:
    scheduled_at: datetime
    audience: dict[str, int] = field(default_factory=dict)
    samples: list[tuple[str, str, str, Message]] = field(default_factory=list)  # customer, language, channel, message


def preview(session: Session, runtime: Runtime, campaign: Campaign, scheduled_at: datetime) -> Preview:
    """What a run would do, reading only: the audience per market and up to three messages
    as their customers would see them (in different languages when the audience has them).
    Keyset chunks, like the run, so memory stays flat."""
    result = Preview(scheduled_at)
    after = ""
    languages: set[str] = set()
    spare: list[tuple[str, str, str, Message]] = []
    while True:
        block = customer_block(session, runtime, campaign, after)
        if not block:
            break
        after = block[-1]
        customer_ids = audience_in_block(session, campaign, scheduled_at, block)
        if not customer_ids:
            continue
        rows = session.execute(select(Customer.country).where(Customer.id.in_(customer_ids))).scalars()
        for country in rows:
            market = runtime.markets.for_country(country).name
            result.audience[market] = result.audience.get(market, 0) + 1
        if len(result.samples) >= SAMPLE_MESSAGES:
            continue
        for member, row, offer in _offers(runtime, campaign, session,
                                          audience_members(session, campaign, customer_ids[:50], scheduled_at)):
            try:
                sample = _sample(runtime, row, offer, scheduled_at)
            except Exception:  # a preview skips what the run would skip
                log.exception("campaign %s: cannot render a sample for %s", campaign.name, member.customer_id)
                continue
            if sample[1] not in languages and len(result.samples) < SAMPLE_MESSAGES:
                languages.add(sample[1])
                result.samples.append(sample)
            elif len(spare) < SAMPLE_MESSAGES:
                spare.append(sample)
    result.samples += spare[: SAMPLE_MESSAGES - len(result.samples)]
    return result


def _sample(runtime: Runtime, row: Customer, offer: Offer, scheduled_at: datetime) -> tuple[str, str, str, Message]:
    customer = customer_value(row)
    market = runtime.markets.for_country(customer.country)
    channels = usable_channels(customer, market, runtime.configured_channels, row.opted_out or ())
    channel = channels[0] if channels else market.channels[0]
    language, locale = resolve_language(customer.locale, f"{market.language_for(customer.country)}-{customer.country}")
    message = render_message(MessageContext(
        language=language, locale=locale, customer_name=customer.name, offer=offer, code=new_code(),
        expires_at=coupon_expires_at(scheduled_at, market.valid_days, customer_zone(customer, market)),
        timezone=customer_zone(customer, market), framing=market.framing,
    ), channel)
    return customer.id, language, channel, message


# ------------------------------------------------------------------ command line views


def _offer_json(campaign: Campaign) -> str | dict:
    if campaign.offer is None:
        return "auto"
    offer = {"type": campaign.offer.type}
    if campaign.offer.type == "percent_off":
        offer["percent"] = str(campaign.offer.percent)
    return offer


def overview(session: Session, campaigns: list[Campaign], errors: list[CampaignFileError], now: datetime) -> dict:
    """`encore campaigns --json`: each campaign, its next run (own zone and UTC) and its
    last run with counts; each broken file with its error."""
    from zoneinfo import ZoneInfo

    from coupons.campaigns import next_run_after

    listed = []
    for campaign in campaigns:
        next_at = next_run_after(campaign, now)
        run = last_run(session, campaign.name)
        listed.append({
            "name": campaign.name, "file": campaign.file, "enabled": campaign.enabled,
            "schedule": campaign.schedule, "timezone": campaign.timezone, "markets": list(campaign.markets),
            "audience": campaign.audience, "days": campaign.days, "offer": _offer_json(campaign),
            "next_run": {"local": next_at.astimezone(ZoneInfo(campaign.timezone)).isoformat(),
                         "utc": iso_utc(next_at)},
            "last_run": None if run is None else {
                "scheduled_at": iso_utc(run.scheduled_at), "state": run.state,
                "started_at": iso_utc(run.started_at),
                "finished_at": None if run.finished_at is None else iso_utc(run.finished_at),
                "counts": run_counts(session, campaign.name, run.scheduled_at, run.planned),
            },
        })
    return {"campaigns": listed,
            "errors": [{"file": e.file, "field": e.field, "error": str(e)} for e in errors]}


def find_campaign(runtime: Runtime, name: str) -> tuple[Campaign | None, str | None]:
    """The campaign called `name`, or why it cannot run (its file is broken, or none has that name)."""
    campaigns, errors = load_all(runtime)
    for campaign in campaigns:
        if campaign.name == name:
            return campaign, None
    for error in errors:
        if f"'{name}'" in error.reason or Path(error.file).stem == name:
            return None, str(error)
    return None, f"no campaign named {name!r} in {campaigns_folder(runtime)}"
