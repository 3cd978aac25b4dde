"""Rule 15: every code exists in its shop before the message carrying it goes out.

A coupon of a shop whose platform is not `none` is planned with `sync_due_at` set
(only when its delivery will be sent) and its delivery with `next_attempt_at` NULL: the
relay does not see it. This step

1. claims due coupons with a lease (`sync_claim_token`, `sync_due_at` moved to the
   lease's end, `sync_attempts` counted at the claim: a claim that never recorded may
   have reached the shop). Two workers never hold one coupon; a worker paused past its
   lease is harmless, because creation is idempotent by the code itself (a code the
   shop already holds in our discount counts as synced) and a result is written only
   under the claim's token (except "synced", which is true whoever says it);
2. groups the coupons by (shop, `DiscountShape`) and hands each group to the shop's
   platform adapter (platforms/), which batches the calls and paces them;
3. records each group as soon as the shop answered it, in its own transaction, and
   then rings the relay: synced codes release their deliveries
   (`next_attempt_at = coalesce(next_attempt_at, due_at)`), a transient failure waits
   with backoff (its retry never first due after the deadline; a delivery whose deadline
   comes while its code is missing ends `expired`, reason `shop_unavailable`, by the
   expiry sweeps), a permanent one ends the delivery `failed` with reason
   `shop_rejected` and an attempt row holding the shop's own (masked) message, which
   `encore dead-letters` shows.

A coupon whose delivery will not be sent any more (cancelled, expired, suppressed)
is dropped from the sync; if an earlier claim may have reached the shop, or the code
was synced, its code is marked for removal (`code_removal_due_at`): no code keeps
working in a shop whose message was never sent. `remove_due_codes` disables those, and the codes of void
coupons (rule 11), within a minute (beat every 15 s).
"""

from __future__ import annotations

import logging
import uuid
from collections import defaultdict
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from functools import lru_cache

from sqlalchemy import ColumnElement, Row, and_, any_, bindparam, func, insert, select, update
from sqlalchemy.orm import Session

from config.settings import Settings
from coupons.offers import SECOND_ITEM_PERCENT
from coupons.privacy import mask_personal_data
from coupons.shops import Shop
from coupons.states import DeliveryState
from coupons.timing import retry_due_at
from platforms.base import DiscountShape, PlatformError, ShopPlatform, SyncOutcome
from platforms.shopify import ShopifyPlatform
from platforms.woocommerce import WooCommercePlatform
from store.db import rows_changed, session_scope, table_of
from store.models import Attempt, Coupon, Delivery

from .bootstrap import Runtime
from .expiry import SHOP_UNAVAILABLE, expire_overdue  # noqa: F401 - the reason, named here too
from .ports import RELAY, SYNC_CODES

log = logging.getLogger(__name__)

SHOP_REJECTED = "shop_rejected"
"""A delivery's reason when its shop refused its code for good (unknown SKU, token refused)."""
SHOP_CHANNEL = "shop"
"""The `channel` of the attempt row a shop's refusal writes."""

SYNC_BATCH = 1000
"""Coupons claimed per pass when the caller loops (`max_passes` None)."""
SYNC_THREADS = 4
"""Parts of one group handed to the shop at once (each one bulk add and its job's
polls). The adapter paces them together by the shop's cost bucket."""
TASK_BATCH = 1000
"""Coupons one sync task claims before it hands the worker back (`sync_codes_task`):
four Shopify bulk adds, about a second against a shop 100 ms away. A worker's children
are its senders too; a task that synced a 10,000-buyer stream in one go held a child
(most of the time waiting for the shop) while messages whose codes were ready waited."""
SYNC_CALL = 250
"""Codes handed to the adapter at once, and recorded (and released to the senders) as soon
as the shop answered: one Shopify bulk add (its limit), so a stream's first messages
wait for their own 250 codes, not for the whole claim's."""
LAST_TRY_BEFORE_DEADLINE = timedelta(minutes=1)
REMOVAL_BATCH = 500
REMOVAL_LEASE = timedelta(minutes=2)
RECENTLY_ENDED = timedelta(days=3)
"""How far back `remove_due_codes` looks for synced codes whose delivery ended unsent."""


# --------------------------------------------------------------------------- shops and adapters


def platform_shops(settings: Settings) -> tuple[str, ...]:
    """The names of the shops whose codes must exist at their checkout (platform not `none`)."""
    return tuple(sorted(name for name, shop in settings.shops.by_name.items() if shop.platform != "none"))


def shop_uses_platform(settings: Settings, shop_name: str) -> bool:
    shop = settings.shops.by_name.get(shop_name)
    return shop is not None and shop.platform != "none"


def platform_for(settings: Settings, shop_name: str) -> ShopPlatform:
    """This process's adapter for the shop (kept: it caches the shop's variants and
    discounts, and paces its calls by the shop's cost bucket). Raises PlatformError
    (transient: fixing the environment and restarting the worker mends it) when a
    variable holding its secrets is unset."""
    shop = settings.shops.get(shop_name)
    missing = [name for name in shop.secret_variables if not settings.shop_secrets.get(name)]
    if missing:
        raise PlatformError(f"shop {shop_name}: the variable {', '.join(missing)} is not set", transient=True)
    return _adapter(shop, tuple(settings.shop_secrets[name] for name in shop.secret_variables))


@lru_cache(maxsize=64)
def _adapter(shop: Shop, secrets: tuple[str, ...]) -> ShopPlatform:
    if shop.platform == "shopify":
        return ShopifyPlatform(shop.domain or "", secrets[0], api_url=shop.api_url)
    if shop.platform == "woocommerce":
        return WooCommercePlatform(shop.domain or "", secrets[0], secrets[1], api_url=shop.api_url)
    raise ValueError(f"shop {shop.name}: platform {shop.platform!r} has no codes to sync")


def shop_code(code: str) -> str:
    """A code as a platform shop holds it (and Encore stores and sends it): without the
    dashes that group it for reading, so what the customer types at checkout is what the
    shop knows. Redemption finds either form (services.redemption)."""
    return code.replace("-", "")


def shape_of(coupon: Row) -> DiscountShape:
    """The offer a coupon's code carries, as the shop's discount. Codes start working at
    the minute their coupon was made (floored: a stream planned in chunks within one
    minute shares one discount per offer and expiry)."""
    percent = None
    if coupon.offer_type == "second_half_price":
        percent = Decimal(coupon.percent) if coupon.percent else SECOND_ITEM_PERCENT
    elif coupon.percent is not None:
        percent = Decimal(coupon.percent)
    return DiscountShape(
        offer_type=coupon.offer_type, sku=coupon.sku, currency=coupon.currency,
        price=None if coupon.price is None else Decimal(coupon.price), percent=percent,
        starts_at=coupon.created_at.replace(second=0, microsecond=0), expires_at=coupon.expires_at,
    )


# --------------------------------------------------------------------------- the sync pass


@dataclass
class SyncReport:
    claimed: int = 0
    synced: int = 0
    transient: int = 0
    rejected: int = 0
    dropped: int = 0  # their delivery will not be sent any more
    more: bool = False  # the last pass took a full batch: more may be due
    reasons: list[str] = field(default_factory=list)


_CLAIMED = (Coupon.id, Coupon.shop, Coupon.code, Coupon.offer_type, Coupon.sku, Coupon.currency, Coupon.price,
            Coupon.percent, Coupon.created_at, Coupon.expires_at, Coupon.sync_attempts, Coupon.code_synced_at)


def _picked(session: Session, pick) -> ColumnElement[bool]:
    if session.get_bind().dialect.name == "postgresql":
        return Coupon.id == any_(func.array(pick.scalar_subquery()))  # see services.relay._stamp
    return Coupon.id.in_(pick.scalar_subquery())


def claim_due(session: Session, shops: Sequence[str], now: datetime, token: str,
              limit: int = SYNC_BATCH, lease: timedelta = timedelta(minutes=5)) -> list[Row]:
    """Take up to `limit` coupons due for sync under `token` (SKIP LOCKED: another worker's
    pick is skipped, not waited for); each claim counts as an attempt. The lease is the
    senders' (ENCORE_LEASE_SECONDS, 5 minutes by default): far above one pass's worst time
    (Shopify's bulk jobs are awaited up to 60 s); a dead worker's coupons come back after
    it, and a worker that outlives it only repeats idempotent work."""
    pick = (select(Coupon.id).where(Coupon.sync_due_at <= now, Coupon.shop.in_(shops))
            .order_by(Coupon.sync_due_at).limit(limit).with_for_update(skip_locked=True))
    return list(session.execute(
        update(Coupon).where(_picked(session, pick))
        .values(sync_claim_token=token, sync_due_at=now + lease, sync_attempts=Coupon.sync_attempts + 1)
        .returning(*_CLAIMED)
    ).all())


def sync_due_codes(runtime: Runtime, limit: int = SYNC_BATCH, max_passes: int | None = None) -> SyncReport:
    """Sync what is due, pass after pass until nothing is (or `max_passes`); safe to run
    on several workers at once. Returns what happened, for logs and tests."""
    report = SyncReport()
    shops = platform_shops(runtime.settings)
    if not shops:
        return report
    passes = 0
    while max_passes is None or passes < max_passes:
        passes += 1
        token = uuid.uuid4().hex
        with session_scope(runtime.database_url) as session:
            claimed = claim_due(session, shops, runtime.clock(), token, limit,
                                timedelta(seconds=runtime.settings.lease_seconds))
        if not claimed:
            break
        report.claimed += len(claimed)
        live, deadlines = _drop_unsendable(runtime, claimed, token, report)
        groups: dict[tuple[str, DiscountShape], list[Row]] = defaultdict(list)
        for coupon in live:
            groups[(coupon.shop, shape_of(coupon))].append(coupon)
        for (shop, shape), coupons in groups.items():
            _sync_group(runtime, shop, shape, coupons, _Claim(token, deadlines), report)
        report.more = len(claimed) == limit
        if not report.more:
            break
    return report


def sync_codes_task(runtime: Runtime) -> SyncReport:
    """What one `sync_codes` task does: one pass of `TASK_BATCH` coupons, then, if more are
    due, a ring for the next task (behind the sends already queued) instead of a loop."""
    report = sync_due_codes(runtime, TASK_BATCH, max_passes=1)
    if report.more:
        runtime.doorbell.ring(SYNC_CODES)
    return report


@dataclass(frozen=True)
class _Claim:
    token: str
    deadlines: dict[int, datetime]  # coupon id -> its delivery's deadline


def _sync_group(runtime: Runtime, shop: str, shape: DiscountShape, coupons: list[Row], claim: _Claim,
                report: SyncReport) -> None:
    """Hand one group to the shop `SYNC_CALL` codes at a time, each part recorded as soon
    as the shop answered it. The first part goes alone (it finds or makes the shape's
    discount, which the adapter then keeps); the others go `SYNC_THREADS` at once: the
    time is the shop's latency, not CPU, and a worker child waits for it only once."""
    parts = [coupons[start:start + SYNC_CALL] for start in range(0, len(coupons), SYNC_CALL)]

    def create(part: list[Row]) -> SyncOutcome:
        return _create(runtime.settings, shop, shape, [c.code for c in part])

    first, rest = parts[0], parts[1:]
    _record(runtime, first, create(first), claim, report)
    if not rest:
        return
    with ThreadPoolExecutor(max_workers=min(SYNC_THREADS, len(rest)), thread_name_prefix="code-sync") as pool:
        futures = {pool.submit(create, part): part for part in rest}
        for future in as_completed(futures):
            _record(runtime, futures[future], future.result(), claim, report)


def _create(settings: Settings, shop: str, shape: DiscountShape, codes: list[str]) -> SyncOutcome:
    try:
        return platform_for(settings, shop).create_codes(shape, codes)
    except PlatformError as error:
        failures = {code: error.message for code in codes}
        return SyncOutcome(frozenset(), failures if error.transient else {}, {} if error.transient else failures)
    except Exception as error:  # noqa: BLE001 - an adapter bug must not strand the batch: retried
        log.exception("shop %s: syncing %d codes raised", shop, len(codes))
        return SyncOutcome(frozenset(), {code: f"{type(error).__name__}: {error}" for code in codes}, {})


def _drop_unsendable(runtime: Runtime, claimed: list[Row], token: str,
                     report: SyncReport) -> tuple[list[Row], dict[int, datetime]]:
    """The claimed coupons whose delivery is still to be sent, and their deadlines; the
    others leave the sync (their code marked for removal if it may be in the shop)."""
    now = runtime.clock()
    ids = [c.id for c in claimed]
    with session_scope(runtime.database_url) as session:
        waiting = dict(session.execute(select(Delivery.coupon_id, Delivery.deadline_at).where(
            Delivery.coupon_id.in_(ids), Delivery.state == DeliveryState.SCHEDULED, Delivery.deadline_at > now)).all())
        dropped = [c for c in claimed if c.id not in waiting]
        if dropped:
            mine = and_(Coupon.id.in_([c.id for c in dropped]), Coupon.sync_claim_token == token)
            session.execute(update(Coupon).where(mine).values(sync_due_at=None, sync_claim_token=None))
            maybe_in_shop = [c.id for c in dropped if c.sync_attempts > 1 or c.code_synced_at is not None]
            if maybe_in_shop:
                _mark_for_removal(session, maybe_in_shop, now)
    report.dropped += len(dropped)
    return [c for c in claimed if c.id in waiting], waiting


def _mark_for_removal(session: Session, coupon_ids: Iterable[int], now: datetime, again: bool = False) -> None:
    """Due for removal now. `again`: also when removed already (a sync that was in flight
    when the removal ran made the code afterwards)."""
    where = [Coupon.id.in_(list(coupon_ids))]
    if not again:
        where += [Coupon.code_removed_at.is_(None), Coupon.code_removal_due_at.is_(None)]
    session.execute(update(Coupon).where(*where).values(code_removal_due_at=now, code_removed_at=None))


def _record(runtime: Runtime, coupons: list[Row], outcome: SyncOutcome, claim: _Claim, report: SyncReport) -> None:
    """Write one group's answer in one transaction, then ring the relay for what it released.
    A transient failure is tried again after the backoff, but never first after the
    delivery's deadline (a minute before it at the latest): the shop gets its last chance."""
    now, token = runtime.clock(), claim.token
    by_code = {c.code: c for c in coupons}
    synced = [by_code[code].id for code in outcome.synced if code in by_code]
    with session_scope(runtime.database_url) as session:
        if synced:
            _record_synced(session, synced, now)
            runtime.doorbell.ring_after_commit(session, RELAY)
        transient = [by_code[code] for code in outcome.transient if code in by_code]
        if transient:
            reason = next(iter(outcome.transient.values()))
            attempts = max(c.sync_attempts for c in transient)
            retry_at = retry_due_at(now, attempts, runtime.settings.retry_base_seconds,
                                    cap=timedelta(minutes=30))
            coupons_table = table_of(Coupon)
            session.execute(
                coupons_table.update().where(coupons_table.c.id == bindparam("coupon"),
                                             coupons_table.c.sync_claim_token == token)
                .values(sync_due_at=bindparam("due"), sync_claim_token=None,
                        sync_reason=mask_personal_data(reason)[:1000]),
                [{"coupon": c.id, "due": _last_chance(retry_at, claim.deadlines.get(c.id), now)} for c in transient])
            log.warning("shop %s: %d codes not synced yet, retried from %s: %s", transient[0].shop, len(transient),
                        retry_at.isoformat(), mask_personal_data(reason))
        for code, message in outcome.permanent.items():
            if code in by_code:
                _record_rejected(session, by_code[code].id, message, token, now)
    report.synced += len(synced)
    report.transient += len(outcome.transient)
    report.rejected += len(outcome.permanent)
    report.reasons += list(dict.fromkeys([*outcome.permanent.values(), *outcome.transient.values()]))


def _last_chance(retry_at: datetime, deadline: datetime | None, now: datetime) -> datetime:
    if deadline is None or retry_at < deadline - LAST_TRY_BEFORE_DEADLINE:
        return retry_at
    return max(deadline - LAST_TRY_BEFORE_DEADLINE, now + timedelta(seconds=1))


def _record_synced(session: Session, coupon_ids: list[int], now: datetime) -> None:
    """The codes exist in the shop: true whoever claimed them last, so written without the
    token. Their deliveries become due; a code whose delivery ended meanwhile (or whose
    coupon is void) goes straight to removal."""
    session.execute(update(Coupon).where(Coupon.id.in_(coupon_ids), Coupon.code_synced_at.is_(None))
                    .values(code_synced_at=now, sync_due_at=None, sync_claim_token=None, sync_reason=None))
    session.execute(update(Delivery).where(Delivery.coupon_id.in_(coupon_ids), Delivery.state == DeliveryState.SCHEDULED)
                    .values(next_attempt_at=func.coalesce(Delivery.next_attempt_at, Delivery.due_at), updated_at=now))
    unsendable = session.scalars(select(Coupon.id).join(Delivery, Delivery.coupon_id == Coupon.id).where(
        Coupon.id.in_(coupon_ids),
        (Coupon.void_at.is_not(None)) | Delivery.state.in_(
            (DeliveryState.CANCELLED, DeliveryState.EXPIRED, DeliveryState.FAILED, DeliveryState.SUPPRESSED)))).all()
    if unsendable:
        _mark_for_removal(session, unsendable, now, again=True)


def _record_rejected(session: Session, coupon_id: int, message: str, token: str, now: datetime) -> None:
    """The shop refused the code for good: the delivery ends `failed` (shop_rejected) with
    the shop's own words, masked, in an attempt row (`encore dead-letters` shows it)."""
    detail = mask_personal_data(message)[:2000]
    owned = rows_changed(session.execute(update(Coupon).where(Coupon.id == coupon_id, Coupon.sync_claim_token == token)
                                         .values(sync_due_at=None, sync_claim_token=None, sync_reason=detail[:1000])))
    if not owned:
        return
    delivery_ids = session.scalars(
        update(Delivery).where(Delivery.coupon_id == coupon_id, Delivery.state == DeliveryState.SCHEDULED)
        .values(state=DeliveryState.FAILED, reason=SHOP_REJECTED, next_attempt_at=None, enqueued_at=None,
                updated_at=now)
        .returning(Delivery.id)).all()
    for delivery_id in delivery_ids:
        session.execute(insert(Attempt).values(delivery_id=delivery_id, at=now, channel=SHOP_CHANNEL,
                                               outcome="permanent", reason=SHOP_REJECTED, detail=detail))
    log.error("shop refused code of coupon %d: %s", coupon_id, detail)


# --------------------------------------------------------------------------- removal


@dataclass
class RemovalReport:
    removed: int = 0
    failed: int = 0


def remove_due_codes(runtime: Runtime, limit: int = REMOVAL_BATCH) -> RemovalReport:
    """Disable in their shops the codes that must stop working: void coupons' (rule 11)
    and synced codes whose delivery ended unsent (beat, every 15 s). Idempotent (a code not in the shop
    counts as removed); a lease on `code_removal_due_at` keeps two sweeps apart."""
    report = RemovalReport()
    shops = platform_shops(runtime.settings)
    if not shops:
        return report
    now = runtime.clock()
    with session_scope(runtime.database_url) as session:
        # Deliveries that waited for their code past the deadline end expired, with the
        # shop's reason (beat's own expiry sweep does it too, each minute)...
        expire_overdue(session, now)
    with session_scope(runtime.database_url) as session:
        # ...and a code synced for a delivery that ended unsent is removed.
        _mark_unsent_synced_codes(session, shops, now)
        pick = (select(Coupon.id).where(Coupon.code_removal_due_at <= now, Coupon.shop.in_(shops))
                .order_by(Coupon.code_removal_due_at).limit(limit).with_for_update(skip_locked=True))
        claimed = session.execute(update(Coupon).where(_picked(session, pick))
                                  .values(code_removal_due_at=now + REMOVAL_LEASE)
                                  .returning(Coupon.id, Coupon.shop, Coupon.code, Coupon.sync_attempts)).all()
    per_shop: dict[str, list[Row]] = defaultdict(list)
    for coupon in claimed:
        per_shop[coupon.shop].append(coupon)
    for shop, coupons in per_shop.items():
        try:
            outcome = platform_for(runtime.settings, shop).disable_codes([c.code for c in coupons])
        except PlatformError as error:
            outcome = SyncOutcome(frozenset(), {c.code: error.message for c in coupons} if error.transient else {},
                                  {} if error.transient else {c.code: error.message for c in coupons})
        by_code = {c.code: c for c in coupons}
        with session_scope(runtime.database_url) as session:
            done = [by_code[code].id for code in outcome.synced if code in by_code]
            if done:
                session.execute(update(Coupon).where(Coupon.id.in_(done))
                                .values(code_removed_at=runtime.clock(), code_removal_due_at=None))
            later = [by_code[code] for code in outcome.transient if code in by_code]
            if later:
                retry_at = retry_due_at(runtime.clock(), max(c.sync_attempts for c in later), 5.0,
                                        cap=timedelta(minutes=10))
                session.execute(update(Coupon).where(Coupon.id.in_([c.id for c in later]))
                                .values(code_removal_due_at=retry_at))
            for code, message in outcome.permanent.items():
                if code in by_code:
                    log.error("shop %s refused to remove code of coupon %d: %s", shop, by_code[code].id, message)
                    session.execute(update(Coupon).where(Coupon.id == by_code[code].id).values(
                        code_removal_due_at=None, sync_reason=mask_personal_data(message)[:1000]))
        report.removed += len(done)
        report.failed += len(outcome.permanent)
    return report


def _mark_unsent_synced_codes(session: Session, shops: Sequence[str], now: datetime) -> None:
    """A synced code whose delivery ended without being sent (expired, failed on every
    channel, cancelled) must not keep working: mark it for removal. Reads the recent
    ends only (an index range of `ix_deliveries_state_due`)."""
    ended = select(Delivery.coupon_id).where(
        Delivery.state.in_((DeliveryState.EXPIRED, DeliveryState.FAILED, DeliveryState.CANCELLED,
                            DeliveryState.SUPPRESSED)),
        Delivery.due_at > now - RECENTLY_ENDED, Delivery.sent_at.is_(None))
    session.execute(update(Coupon).where(
        Coupon.id.in_(ended), Coupon.shop.in_(shops), Coupon.code_synced_at.is_not(None),
        Coupon.code_removed_at.is_(None), Coupon.code_removal_due_at.is_(None))
        .values(code_removal_due_at=now))

