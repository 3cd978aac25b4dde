"""The tables that hold the truth: what came in, what was promised, what was sent.

Amounts are stored as decimal strings (SQLite has no exact decimal type);
times are timezone-aware UTC.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    JSON,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from coupons.states import DeliveryState


class UTCDateTime(TypeDecorator):
    """Aware datetimes in, aware UTC datetimes out, on SQLite as on PostgreSQL."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime stored")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    pass


SHOP_LENGTH = 64
"""A shop's name (coupons/shops.py: a slug of at most 64 characters)."""
EVENT_KEY_LENGTH = 200
"""An event's stored key: its id (at most 128 characters) scoped to its shop
(`coupons.shops.shop_key`: the shop, a separator, the id; the default shop's keys are
the ids themselves)."""
REGION_LENGTH = 8
"""An ISO 3166-2 code: two letters, a hyphen, up to three letters or digits."""
KEY_LENGTH = 330
"""A stored customer, order or stream key: the id (at most 256 characters) scoped to
its shop, as for events."""


def _shop_column() -> Mapped[str]:
    """The shop a row belongs to (SPEC section 7); rows from before shops are `default`'s."""
    return mapped_column(String(SHOP_LENGTH), default="default", server_default="default")


# Delivery states (SPEC section 4), defined in coupons/states.py. The short names are
# kept for the sender and the web edge, which the later pass moves to the enum.
SCHEDULED, SENDING, SENT, FAILED, EXPIRED, SUPPRESSED, CANCELLED = DeliveryState


class InboxEvent(Base):
    """Every accepted event, keyed by its id: the idempotency record."""

    __tablename__ = "events"
    id: Mapped[str] = mapped_column(String(EVENT_KEY_LENGTH), primary_key=True)
    shop: Mapped[str] = _shop_column()
    type: Mapped[str] = mapped_column(String(32))
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime())
    received_at: Mapped[datetime] = mapped_column(UTCDateTime())
    payload: Mapped[str] = mapped_column(Text)
    processed_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    enqueued_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    __table_args__ = (
        Index("ix_events_unprocessed", "processed_at", "received_at"),
        # The relay's backlog scan: only unapplied rows, already in claim order, so it
        # stays flat however many applied events the table holds.
        Index("ix_events_unapplied", "received_at", postgresql_where=text("processed_at IS NULL"),
              sqlite_where=text("processed_at IS NULL")),
    )


class DeadLetter(Base):
    """A rejected event: its raw text and why, so nothing is lost."""

    __tablename__ = "dead_letters"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    source: Mapped[str] = mapped_column(String(64))
    # The shop of the event or delivery when known; `default` when it could not be told
    # (a line that is not JSON names no shop).
    shop: Mapped[str] = _shop_column()
    raw: Mapped[str] = mapped_column(Text)
    reason: Mapped[str] = mapped_column(Text)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime())
    replayed_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class Customer(Base):
    __tablename__ = "customers"
    id: Mapped[str] = mapped_column(String(KEY_LENGTH), primary_key=True)
    shop: Mapped[str] = _shop_column()
    name: Mapped[str | None] = mapped_column(Text, nullable=True)
    country: Mapped[str] = mapped_column(String(2))
    locale: Mapped[str | None] = mapped_column(String(64), nullable=True)
    timezone: Mapped[str | None] = mapped_column(String(64), nullable=True)
    email: Mapped[str | None] = mapped_column(String(320), nullable=True)
    phone: Mapped[str | None] = mapped_column(String(32), nullable=True)
    whatsapp: Mapped[str | None] = mapped_column(String(32), nullable=True)
    line_id: Mapped[str | None] = mapped_column(String(256), nullable=True)
    telegram_id: Mapped[str | None] = mapped_column(String(256), nullable=True)
    # ISO 3166-2 (US-FL): the state whose SMS hours apply, and a US customer's zone (rule 17).
    region: Mapped[str | None] = mapped_column(String(REGION_LENGTH), nullable=True)
    # Effective lists derived from consent_changes (what the planner and sender read).
    consent: Mapped[list] = mapped_column(JSON, default=list)
    opted_out: Mapped[list] = mapped_column(JSON, default=list)
    # Per channel: {"granted": bool, "at": RFC 3339, "by": "order" | "opt_out"}; the newest
    # change by occurred_at wins (coupons/consent.py). Null for rows from before 0003.
    consent_changes: Mapped[dict | None] = mapped_column(JSON, nullable=True)
    # occurred_at of the order whose profile (name, addresses, ...) the row holds.
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    # An SMS reply (STOP, START) acts on every customer holding the number it came from.
    __table_args__ = (Index("ix_customers_phone", "phone"),)


class EmailSuppression(Base):
    """An address that gets no more email (rule 18): a complaint or a permanent bounce
    said so. Kept per address, not per customer, so a customer created later with the
    same address is suppressed too; the first notice's time and kind are kept."""

    __tablename__ = "email_suppressions"
    email: Mapped[str] = mapped_column(String(320), primary_key=True)  # lowercased
    reason: Mapped[str] = mapped_column(String(16))  # complaint | bounce
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime())
    received_at: Mapped[datetime] = mapped_column(UTCDateTime())


class Stream(Base):
    __tablename__ = "streams"
    id: Mapped[str] = mapped_column(String(KEY_LENGTH), primary_key=True)
    shop: Mapped[str] = _shop_column()
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    # While set and in the future, one plan_stream owns this stream (a lease, like deliveries').
    planning_until: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class Order(Base):
    __tablename__ = "orders"
    id: Mapped[str] = mapped_column(String(KEY_LENGTH), primary_key=True)
    shop: Mapped[str] = _shop_column()
    event_id: Mapped[str] = mapped_column(String(EVENT_KEY_LENGTH))
    customer_id: Mapped[str] = mapped_column(String(KEY_LENGTH), index=True)
    stream_id: Mapped[str | None] = mapped_column(String(KEY_LENGTH), nullable=True)
    currency: Mapped[str] = mapped_column(String(3))
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime())
    items: Mapped[list] = mapped_column(JSON)
    refunded_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    coupon_id: Mapped[int | None] = mapped_column(ForeignKey("coupons.id"), nullable=True, index=True)
    # Set when planning this order's trigger raised (a "plan" dead letter holds why);
    # the sweep skips it until a replay clears it.
    plan_failed_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    # The order's total as the shop reported it (Shopify's `total_price`, a decimal string in
    # `currency`); null for plain `order.paid` events, whose revenue is their items' sum.
    total: Mapped[str | None] = mapped_column(String(40), nullable=True)
    __table_args__ = (
        Index("ix_orders_stream_customer", "stream_id", "customer_id"),
        Index("ix_orders_customer_occurred", "customer_id", "occurred_at"),
        Index("ix_orders_occurred", "occurred_at"),
    )


class PendingRefund(Base):
    """A refund that arrived before its order.paid; applied when the order arrives."""

    __tablename__ = "pending_refunds"
    order_id: Mapped[str] = mapped_column(String(KEY_LENGTH), primary_key=True)
    shop: Mapped[str] = _shop_column()
    event_id: Mapped[str] = mapped_column(String(EVENT_KEY_LENGTH))
    received_at: Mapped[datetime] = mapped_column(UTCDateTime())


class Coupon(Base):
    """One per (trigger, customer): the unique key that makes planning idempotent."""

    __tablename__ = "coupons"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    code: Mapped[str] = mapped_column(String(32), unique=True)
    trigger_key: Mapped[str] = mapped_column(String(400))
    customer_id: Mapped[str] = mapped_column(String(KEY_LENGTH))
    shop: Mapped[str] = _shop_column()
    market: Mapped[str] = mapped_column(String(64))
    offer_type: Mapped[str] = mapped_column(String(32))
    sku: Mapped[str] = mapped_column(Text)
    product_name: Mapped[str] = mapped_column(Text)
    currency: Mapped[str] = mapped_column(String(3))
    price: Mapped[str | None] = mapped_column(String(40), nullable=True)
    percent: Mapped[str | None] = mapped_column(String(16), nullable=True)
    regular_price: Mapped[str | None] = mapped_column(String(40), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    void_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    redeemed_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    redeemed_order_id: Mapped[str | None] = mapped_column(String(KEY_LENGTH), nullable=True)
    # The campaign whose run created it (None for order and stream coupons).
    campaign: Mapped[str | None] = mapped_column(String(100), nullable=True)
    # An experiment's variant may change the framing and the WhatsApp template (SPEC
    # section 9): what this coupon was planned with; null means the market's own.
    framing: Mapped[str | None] = mapped_column(String(16), nullable=True)
    template: Mapped[str | None] = mapped_column(String(512), nullable=True)
    # Code sync (SPEC rule 15), for a shop whose platform is not `none`: the code exists
    # in the shop from `code_synced_at` on, and no message carrying it goes out before.
    # `sync_due_at` is when the sync step may take the coupon next (set at planning, moved
    # by a claim's lease and by the backoff after a transient failure; null when there is
    # nothing to do), `sync_claim_token` the owner of a claim, `sync_attempts` and
    # `sync_reason` the tries so far and the last transient failure.
    code_synced_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    sync_due_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    sync_claim_token: Mapped[str | None] = mapped_column(String(32), nullable=True)
    sync_attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    sync_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    # A code that must stop working in the shop (a void coupon, rule 11; or a synced code
    # whose message will never go out): due since `code_removal_due_at`, done at
    # `code_removed_at`.
    code_removal_due_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    code_removed_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    __table_args__ = (
        UniqueConstraint("trigger_key", "customer_id", name="uq_coupon_trigger_customer"),
        Index("ix_coupons_campaign_customer", "campaign", "customer_id", "created_at"),
        # The sync step's pick: only coupons with something to do, in due order.
        Index("ix_coupons_sync_due", "sync_due_at", postgresql_where=text("sync_due_at IS NOT NULL"),
              sqlite_where=text("sync_due_at IS NOT NULL")),
        Index("ix_coupons_removal_due", "code_removal_due_at",
              postgresql_where=text("code_removal_due_at IS NOT NULL"),
              sqlite_where=text("code_removal_due_at IS NOT NULL")),
    )


def _planned_due_at(context) -> datetime | None:
    """A new delivery's first attempt is at its planned due time."""
    return context.get_current_parameters().get("due_at")


class Delivery(Base):
    """The promise to reach one customer with one coupon, and where it stands."""

    __tablename__ = "deliveries"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    coupon_id: Mapped[int] = mapped_column(ForeignKey("coupons.id"), unique=True)
    customer_id: Mapped[str] = mapped_column(String(KEY_LENGTH), index=True)
    shop: Mapped[str] = _shop_column()
    state: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(String(64), nullable=True)
    channel: Mapped[str | None] = mapped_column(String(16), nullable=True)
    failed_channels: Mapped[list] = mapped_column(JSON, default=list)
    trigger_at: Mapped[datetime] = mapped_column(UTCDateTime())
    due_at: Mapped[datetime] = mapped_column(UTCDateTime())
    deadline_at: Mapped[datetime] = mapped_column(UTCDateTime())
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    channel_attempts: Mapped[int] = mapped_column(Integer, default=0)
    enqueued_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    # `due_at` is the planned due time and never changes after planning (latency runs from
    # it); when the relay may pick the row next (a retry, quiet hours at send time, a rate
    # limit) lives here. A new row starts at its due_at.
    next_attempt_at: Mapped[datetime | None] = mapped_column(
        UTCDateTime(), nullable=True, default=_planned_due_at)
    # The owner of a `sending` row: set by each claim, checked by every write of its result.
    claim_token: Mapped[str | None] = mapped_column(String(32), nullable=True)
    # The experiment (coupons.experiments.Experiment.id) and the customer's group in it
    # ("control" for the held-out group, which ends suppressed/holdout); null without one.
    experiment: Mapped[str | None] = mapped_column(String(160), nullable=True)
    variant: Mapped[str | None] = mapped_column(String(40), nullable=True)
    __table_args__ = (
        Index("ix_deliveries_state_due", "state", "due_at"),
        # The relay's pick: scheduled rows not waiting in the broker, by next attempt;
        # and rows stamped long ago (enqueued_at range), when the broker holds none.
        Index("ix_deliveries_relay_pick", "state", "enqueued_at", "next_attempt_at"),
    )


class Attempt(Base):
    """One row per try on a channel: when, where, and what the provider said."""

    __tablename__ = "attempts"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    delivery_id: Mapped[int] = mapped_column(ForeignKey("deliveries.id"), index=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    channel: Mapped[str] = mapped_column(String(16))
    outcome: Mapped[str] = mapped_column(String(16))  # sent | transient | permanent
    reason: Mapped[str] = mapped_column(String(64))
    detail: Mapped[str] = mapped_column(Text, default="")


class OrderItem(Base):
    """One row per item of a stored order, so campaign audiences are set-based SQL over
    indexed columns instead of JSON parsing. `line_key` groups a consumable with its
    refill (the refill's SKU, or the SKU itself): "bought it or its refill since"."""

    __tablename__ = "order_items"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    order_id: Mapped[str] = mapped_column(String(KEY_LENGTH))
    customer_id: Mapped[str] = mapped_column(String(KEY_LENGTH))
    shop: Mapped[str] = _shop_column()
    line_key: Mapped[str] = mapped_column(Text)
    sku: Mapped[str] = mapped_column(Text)
    refill_sku: Mapped[str | None] = mapped_column(Text, nullable=True)
    name: Mapped[str] = mapped_column(Text)
    unit_price: Mapped[str] = mapped_column(String(40))
    quantity: Mapped[int] = mapped_column(Integer)
    currency: Mapped[str] = mapped_column(String(3))
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime())
    __table_args__ = (Index("ix_order_items_customer_line", "customer_id", "line_key", "occurred_at"),)


class CampaignRun(Base):
    """One scheduled occurrence of a campaign. The unique key is what makes a run happen
    once however many schedulers, retries or `encore campaigns run` race for it; the
    lease lets another runner finish a run whose runner died."""

    __tablename__ = "campaign_runs"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    campaign: Mapped[str] = mapped_column(String(100))
    scheduled_at: Mapped[datetime] = mapped_column(UTCDateTime())
    state: Mapped[str] = mapped_column(String(16))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    after_customer: Mapped[str] = mapped_column(String(KEY_LENGTH), default="", server_default="")
    planned: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    __table_args__ = (UniqueConstraint("campaign", "scheduled_at", name="uq_campaign_run"),)
