"""Scheduled campaigns: running each occurrence once, and what it did.

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

Audiences (`services.campaign_audiences`) are evaluated as of the scheduled time, so
a run caught up late reaches whom it would have reached on time.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from importlib import resources
from pathlib import Path

from sqlalchemy import func, or_, select, update
from sqlalchemy.orm import Session

from config.settings import Settings
from coupons.campaigns import (
    Campaign,
    CampaignFileError,
    campaign_trigger_key,
    iso_utc,
    latest_run_at,
    load_campaigns,
    within_run_window,
)
from coupons.codes import new_code
from coupons.delivery_rules import usable_channels
from coupons.messages import render_message, resolve_language
from coupons.model import Message, MessageContext, Offer
from coupons.shops import raw_id
from coupons.states import DeliveryState, RunState
from coupons.timing import coupon_expires_at, customer_zone
from store.bulk import dialect_insert
from store.db import rows_changed, session_scope
from store.models import CampaignRun, Coupon, Customer, Delivery
from store.rows import customer_value

from .bootstrap import Runtime
from .campaign_audiences import audience_in_block, audience_members, customer_block, offers_for
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
    taken = rows_changed(session.execute(
        update(CampaignRun).where(CampaignRun.campaign == campaign.name, CampaignRun.scheduled_at == scheduled_at,
                                  CampaignRun.state == RunState.RUNNING,
                                  or_(CampaignRun.lease_until.is_(None), CampaignRun.lease_until < now))
        .values(lease_until=now + RUN_LEASE)
    ))
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
        PlanRequest(trigger_key, member.customer_id, scheduled_at, (), offer=offer, campaign=campaign.name,
                    experiment=campaign.experiment)
        for member, _, offer in offers_for(runtime, campaign, session, audience_members(session, campaign, customer_ids,
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


def run_counts(session: Session, campaign_name: str, scheduled_at: datetime, planned: int,
               shop: str | None = None) -> dict:
    """A run's counts, from its coupons and deliveries by trigger key (set-based, live).
    With `shop`, of that shop's customers only (`planned` is the run's, every shop's)."""
    key = campaign_trigger_key(campaign_name, scheduled_at)
    of_shop = () if shop is None else (Coupon.shop == shop,)
    audience = dict(session.execute(
        select(Coupon.market, func.count()).where(Coupon.trigger_key == key, *of_shop).group_by(Coupon.market)).all())
    counts: dict = {"audience": audience, "planned": planned, "suppressed": {}, "scheduled": 0, "sending": 0,
                    "sent": 0, "failed": 0, "expired": 0, "cancelled": 0}
    for state, reason, count in session.execute(
        select(Delivery.state, Delivery.reason, func.count()).join(Coupon, Coupon.id == Delivery.coupon_id)
        .where(Coupon.trigger_key == key, *of_shop).group_by(Delivery.state, Delivery.reason)
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
        for member, row, offer in offers_for(runtime, campaign, session,
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
        shop_name=runtime.settings.shops.signature(row.shop),
    ), channel)
    return raw_id(row.shop, customer.id), language, channel, message


# ------------------------------------------------------------------ command line views


def _offer_json(campaign: Campaign) -> str | dict:
    if campaign.offer is None:
        return "auto"
    offer = {"type": campaign.offer.type}
    if campaign.offer.type == "percent_off":
        offer["percent"] = str(campaign.offer.percent)
    return offer


def overview(session: Session, campaigns: list[Campaign], errors: list[CampaignFileError], now: datetime,
             shop: str | None = None) -> dict:
    """`encore campaigns --json`: each campaign, its next run (own zone and UTC) and its
    last run with counts (of `shop`'s customers only, with `shop`); each broken file with
    its error. Campaigns are the install's: a run reaches the audience of every shop."""
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
                "counts": run_counts(session, campaign.name, run.scheduled_at, run.planned, shop),
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
