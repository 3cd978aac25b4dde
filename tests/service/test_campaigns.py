"""Scheduled campaigns on real SQLite and PostgreSQL (SPEC section 5): who a run
reaches, that it reaches them once, and that the delivery rules apply to it."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select

from tests.service.conftest import write_campaign
from tests.support import order_paid, stream_ended

SHAMPOO = {"sku": "shampoo", "name": "Shampoo", "unit_price": "20.00", "quantity": 1, "refill_sku": "shampoo-refill"}
REFILL = {"sku": "shampoo-refill", "name": "Shampoo refill", "unit_price": "14.00", "quantity": 1}
MUG = {"sku": "mug", "name": "Mug", "unit_price": "12.00", "quantity": 1}
DAILY_AT_NOON_UTC = dict(schedule="0 12 * * *", timezone="UTC")  # the fake clock starts at noon UTC


def buy(services, event_id: str, customer_id: str, days_ago: float, items: list[dict], country: str = "ID",
        **customer) -> None:
    at = services.clock() - timedelta(days=days_ago)
    customer.setdefault("timezone", "Asia/Jakarta" if country == "ID" else "America/New_York")
    rejected = services.emit(order_paid(event_id, customer_id=customer_id, country=country, occurred_at=at,
                                        items=items, **customer))
    assert rejected == []


def reached(services) -> dict[str, dict]:
    return {row["customer_id"]: row for row in services.campaign_deliveries()}


def test_refill_reminder_reaches_exactly_the_customers_whose_consumable_runs_out(campaign_services, campaigns_dir):
    s = campaign_services
    # Given a 30-day refill reminder for Southeast Asia
    write_campaign(campaigns_dir, "sea.toml", name="sea-refill", audience="replenishment_due", days=30,
                   markets=["southeast_asia"], **DAILY_AT_NOON_UTC)
    buy(s, "e1", "due", 40, [SHAMPOO, MUG])                        # shampoo bought 40 days ago
    buy(s, "e2", "refilled", 40, [SHAMPOO])                        # ... but its refill 10 days ago
    buy(s, "e3", "refilled", 10, [REFILL])
    buy(s, "e4", "too-soon", 10, [SHAMPOO])                        # inside the window
    buy(s, "e5", "elsewhere", 40, [SHAMPOO], country="US")         # outside the markets
    buy(s, "e6", "not-consumable", 40, [MUG])                      # nothing to refill
    buy(s, "e7", "rebought", 40, [SHAMPOO])                        # bought it again 5 days ago
    buy(s, "e8", "rebought", 5, [SHAMPOO])
    # When the campaign runs
    assert s.run_campaign("sea-refill") == "done"
    # Then only the customer who is due gets a coupon: the refill at the refill price
    rows = reached(s)
    assert set(rows) == {"due"}
    row = rows["due"]
    assert row["offer"] == {"type": "refill", "sku": "shampoo-refill", "currency": "USD", "price": "14.00"}
    assert (row["trigger"], row["campaign"], row["state"]) == ("campaign", "sea-refill", "scheduled")
    assert row["trigger_at"] == "2026-03-10T12:00:00Z" and row["deadline_at"] == "2026-03-11T12:00:00Z"
    # And it is sent like any coupon
    s.relay_and_send()
    assert [r["state"] for r in s.campaign_deliveries()] == ["sent"]
    assert s.smtp.count == 1


def test_lapsed_and_recent_buyers_select_by_last_order(campaign_services, campaigns_dir):
    s = campaign_services
    write_campaign(campaigns_dir, "win-back.toml", name="win-back", audience="lapsed", days=60,
                   markets=["north_america"], **DAILY_AT_NOON_UTC)
    write_campaign(campaigns_dir, "recent.toml", name="recent", audience="recent_buyers", days=7,
                   offer='{ type = "percent_off", percent = "20" }', **DAILY_AT_NOON_UTC)
    buy(s, "e1", "gone-quiet", 70, [MUG], country="US")
    buy(s, "e2", "came-back", 70, [MUG], country="US")
    buy(s, "e3", "came-back", 8, [SHAMPOO], country="US")
    buy(s, "e4", "lapsed-abroad", 70, [MUG], country="BR", timezone="America/Sao_Paulo")
    buy(s, "e5", "last-week", 3, [MUG, SHAMPOO | {"refill_sku": None}], country="BR", timezone="America/Sao_Paulo")
    assert s.run_campaign("win-back") == "done"
    assert s.run_campaign("recent") == "done"
    rows = {(r["campaign"], r["customer_id"]): r for r in s.campaign_deliveries()}
    assert set(rows) == {("win-back", "gone-quiet"), ("recent", "last-week")}
    # the win-back offers rule 3 on the last order; the explicit table overrides it on the dearest item
    assert rows[("win-back", "gone-quiet")]["offer"] == {"type": "percent_off", "sku": "mug", "currency": "USD",
                                                         "percent": "10"}
    assert rows[("recent", "last-week")]["offer"] == {"type": "percent_off", "sku": "shampoo", "currency": "USD",
                                                      "percent": "20"}


def test_a_daily_campaign_reaches_a_customer_once_per_purchase_not_every_day(campaign_services, campaigns_dir):
    s = campaign_services
    write_campaign(campaigns_dir, "win-back.toml", name="win-back", audience="lapsed", days=60, **DAILY_AT_NOON_UTC)
    buy(s, "e1", "gone-quiet", 70, [MUG], country="US")
    # Given today's run reached the customer (beat's runner: enabled, due now)
    assert s.campaign_tick() == ["done"]
    assert len(s.campaign_deliveries()) == 1
    # When the next day's run comes
    s.clock.advance(days=1)
    assert s.campaign_tick() == ["done"]
    # Then nobody is reached twice for one lapse
    assert len(s.campaign_deliveries()) == 1
    # And a later tick the same day starts nothing
    s.clock.advance(minutes=5)
    assert s.campaign_tick() == []


def test_two_concurrent_runs_of_one_scheduled_time_send_once(campaign_services, campaigns_dir):
    s = campaign_services
    write_campaign(campaigns_dir, "win-back.toml", name="win-back", audience="lapsed", days=60, **DAILY_AT_NOON_UTC)
    for n in range(30):
        buy(s, f"e{n}", f"c{n:02d}", 70, [MUG], country="US")
    outcomes: list[str] = []
    barrier = threading.Barrier(3)

    def run() -> None:
        barrier.wait()
        outcomes.append(s.run_campaign("win-back"))

    threads = [threading.Thread(target=run) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert outcomes.count("done") == 1 and set(outcomes) <= {"done", "busy", "already_done"}
    # a retried task or a restarted scheduler later finds the run done
    assert s.run_campaign("win-back") == "already_done"
    assert s.campaign_tick() == []
    s.relay_and_send()
    s.relay_and_send()
    assert len(s.campaign_deliveries()) == 30
    assert s.smtp.count == 30
    assert len({r.rcpt_tos for r in s.smtp.received}) == 30


def test_a_dry_run_shows_audience_and_messages_in_customers_languages_and_changes_no_row(campaign_services,
                                                                                        campaigns_dir):
    from services.campaigns import preview
    from store.models import Base

    s = campaign_services
    write_campaign(campaigns_dir, "win-back.toml", name="win-back", audience="lapsed", days=60, **DAILY_AT_NOON_UTC)
    buy(s, "e1", "ana", 70, [MUG], country="BR", timezone="America/Sao_Paulo", locale="pt-BR")
    buy(s, "e2", "budi", 70, [MUG], country="ID", locale="id-ID")
    buy(s, "e3", "somchai", 70, [MUG], country="TH", timezone="Asia/Bangkok")
    buy(s, "e4", "joe", 70, [MUG], country="US")

    def table_counts() -> dict[str, int]:
        with s.session() as session:
            return {name: session.scalar(select(func.count()).select_from(table))
                    for name, table in Base.metadata.tables.items()}

    before = table_counts()
    campaign = s.campaign("win-back")
    with s.session() as session:
        result = preview(session, s.runtime, campaign, datetime(2026, 3, 10, 12, tzinfo=UTC))
    assert result.audience == {"latin_america": 1, "southeast_asia": 2, "north_america": 1}
    assert len(result.samples) == 3
    # three customers in three languages, each rendered as they would receive it
    assert [(customer, language) for customer, language, _, _ in result.samples] == [
        ("ana", "pt"), ("budi", "id"), ("joe", "en")]
    texts = {customer: message.text for customer, _, _, message in result.samples}
    assert texts["ana"].startswith("Olá, Ann!") and texts["budi"].startswith("Halo Ann")
    assert table_counts() == before
    s.relay_and_send()
    assert s.campaign_deliveries() == [] and s.smtp.count == 0


def test_a_broken_file_beside_a_good_one_leaves_the_good_one_running(campaign_services, campaigns_dir):
    s = campaign_services
    write_campaign(campaigns_dir, "good.toml", name="win-back", audience="lapsed", days=60, **DAILY_AT_NOON_UTC)
    write_campaign(campaigns_dir, "broken.toml", name="broken", audience="lapsed", days="sixty", **DAILY_AT_NOON_UTC)
    buy(s, "e1", "gone-quiet", 70, [MUG], country="US")
    from services.campaigns import load_all

    _, errors = load_all(s.runtime)
    assert [str(e) for e in errors] == ["broken.toml: days: must be a whole number of days from 1 to 3650"]
    assert s.campaign_tick() == ["done"]
    assert [r["customer_id"] for r in s.campaign_deliveries()] == ["gone-quiet"]


def test_a_recipient_in_quiet_hours_is_sent_in_their_morning(campaign_services, campaigns_dir):
    s = campaign_services
    # noon UTC is 23:00 in Sydney-like UTC+11: quiet hours (rest of world: 21:00-08:00)
    write_campaign(campaigns_dir, "win-back.toml", name="win-back", audience="lapsed", days=60, **DAILY_AT_NOON_UTC)
    buy(s, "e1", "night-owl", 70, [MUG], country="NZ", timezone="Etc/GMT-11")
    assert s.run_campaign("win-back") == "done"
    [row] = s.campaign_deliveries()
    assert (row["state"], row["due_at"]) == ("scheduled", "2026-03-10T21:00:00Z")  # 08:00 their time
    assert s.relay_and_send() == 0 and s.smtp.count == 0
    s.clock.advance(hours=9)
    s.relay_and_send()
    assert s.campaign_deliveries()[0]["state"] == "sent" and s.smtp.count == 1


def test_a_customer_capped_by_a_stream_coupon_the_same_day_is_suppressed(campaign_services, campaigns_dir):
    s = campaign_services
    write_campaign(campaigns_dir, "recent.toml", name="recent", audience="recent_buyers", days=7,
                   **DAILY_AT_NOON_UTC)
    # Given a customer who bought in a livestream this morning, and got its coupon
    at = s.clock() - timedelta(hours=3)
    assert s.emit(order_paid("e1", customer_id="fan", country="US", timezone="UTC", occurred_at=at,
                             stream_id="live-1", items=[MUG]),
                  stream_ended("e2", "live-1", at + timedelta(minutes=30))) == []
    [stream_row] = s.deliveries()
    assert (stream_row["trigger"], stream_row["campaign"]) == ("stream", None)
    s.relay_and_send()
    # When the recent-buyers campaign runs the same day
    assert s.run_campaign("recent") == "done"
    # Then the campaign's delivery is suppressed by the frequency cap
    [row] = s.campaign_deliveries()
    assert (row["state"], row["reason"]) == ("suppressed", "frequency_cap")
    assert s.smtp.count == 1


def test_a_run_missed_while_down_happens_once_within_24_hours_else_it_is_recorded_missed(campaign_services,
                                                                                         campaigns_dir):
    from services.campaigns import last_run, run_counts

    s = campaign_services
    write_campaign(campaigns_dir, "win-back.toml", name="win-back", audience="lapsed", days=60,
                   schedule="0 6 * * 2", timezone="UTC")  # Tuesdays 06:00: six hours before the clock
    buy(s, "e1", "gone-quiet", 70, [MUG], country="US")
    # Back after six hours down: today's run happens once
    assert s.campaign_tick() == ["done"]
    assert s.campaign_tick() == []
    assert len(s.campaign_deliveries()) == 1
    # Down for the whole of next Tuesday's window: recorded missed, nothing sent
    buy(s, "e2", "also-quiet", 70, [MUG], country="US")
    s.clock.advance(days=8)  # Wednesday 12:00, next Tuesday's 06:00 run was 30 hours ago
    assert s.campaign_tick() == []
    with s.session() as session:
        run = last_run(session, "win-back")
        assert (run.state, run.scheduled_at) == ("missed", datetime(2026, 3, 17, 6, tzinfo=UTC))
        assert run_counts(session, "win-back", run.scheduled_at, run.planned)["audience"] == {}
    assert s.campaign_tick() == []
    assert len(s.campaign_deliveries()) == 1


def test_run_counts_follow_the_deliveries(campaign_services, campaigns_dir):
    from services.campaigns import last_run, run_counts

    s = campaign_services
    write_campaign(campaigns_dir, "win-back.toml", name="win-back", audience="lapsed", days=60, **DAILY_AT_NOON_UTC)
    buy(s, "e1", "emailable", 70, [MUG], country="US")
    buy(s, "e2", "no-consent", 70, [MUG], country="US", consent=[])
    buy(s, "e3", "brazil", 70, [MUG], country="BR", timezone="America/Sao_Paulo")
    assert s.run_campaign("win-back") == "done"
    s.relay_and_send()
    with s.session() as session:
        run = last_run(session, "win-back")
        counts = run_counts(session, "win-back", run.scheduled_at, run.planned)
    assert counts["audience"] == {"north_america": 2, "latin_america": 1}
    assert counts["planned"] == 2
    assert counts["suppressed"] == {"no_channel": 1}
    assert counts["sent"] == 2


def test_the_expiry_job_ends_scheduled_deliveries_past_their_deadline_once(campaign_services):
    from services.expiry import expire_overdue

    s = campaign_services
    # Given a delivery nobody sent (no worker ran) for more than a day
    assert s.emit(order_paid("e1", customer_id="c1", occurred_at=s.clock(), timezone="UTC")) == []
    assert s.deliveries()[0]["state"] == "scheduled"
    s.clock.advance(hours=25)
    # When two expiry jobs run (two beats)
    with s.session() as session:
        first = expire_overdue(session, s.clock())
    with s.session() as session:
        second = expire_overdue(session, s.clock())
    # Then it ended expired, once, and nothing was sent after its deadline
    assert (first, second) == (1, 0)
    assert (s.deliveries()[0]["state"], s.deliveries()[0]["reason"]) == ("expired", "deadline")
    s.relay_and_send()
    assert s.smtp.count == 0


def test_orders_stored_before_the_upgrade_are_backfilled_into_order_items(database_url):
    from alembic import command
    from alembic.config import Config
    from sqlalchemy import text

    from store.db import MIGRATIONS_DIR, make_engine

    # Given a database at the schema before campaigns, holding an order
    engine = make_engine(database_url)
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "0002")
    with engine.begin() as connection:
        connection.execute(text(
            "INSERT INTO orders (id, event_id, customer_id, currency, occurred_at, items) "
            "VALUES ('o1', 'e1', 'c1', 'USD', :at, :items)"),
            {"at": datetime(2026, 1, 1, tzinfo=UTC).replace(tzinfo=None) if engine.dialect.name == "sqlite"
             else datetime(2026, 1, 1, tzinfo=UTC),
             "items": '[{"sku": "shampoo", "name": "Shampoo", "unit_price": "20.00", "quantity": 1, '
                      '"refill_sku": "shampoo-refill"}, {"sku": "mug", "name": "Mug", "unit_price": "12.00", '
                      '"quantity": 2, "refill_sku": null}]'})
    # When it is upgraded
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")
    # Then its items are there for the audiences
    with engine.connect() as connection:
        rows = connection.execute(text(
            "SELECT customer_id, line_key, sku, refill_sku, unit_price, quantity FROM order_items ORDER BY sku")).all()
    engine.dispose()
    assert [tuple(r) for r in rows] == [("c1", "mug", "mug", None, "12.00", 2),
                                        ("c1", "shampoo-refill", "shampoo", "shampoo-refill", "20.00", 1)]


def win_back_with_one_row_changed(s, campaigns_dir, buyers: int, **c1_row) -> list[str]:
    """A win-back run over `buyers` lapsed US customers, `c1`'s row changed by hand
    first; returns whom the run reached."""
    from sqlalchemy import update

    from store.models import Customer

    write_campaign(campaigns_dir, "win-back.toml", name="win-back", audience="lapsed", days=60, **DAILY_AT_NOON_UTC)
    for n in range(buyers):
        buy(s, f"e{n}", f"c{n}", 70, [MUG], country="US", timezone="UTC")
    with s.session() as session:
        session.execute(update(Customer).where(Customer.id == "c1").values(**c1_row))
    assert s.run_campaign("win-back") == "done"
    return sorted(r["customer_id"] for r in s.campaign_deliveries())


def test_one_customer_with_unusable_data_is_skipped_and_the_run_reaches_the_others(campaign_services,
                                                                                    campaigns_dir):
    # A consent list that is not a list (a row written by hand)
    assert win_back_with_one_row_changed(campaign_services, campaigns_dir, 3, consent=5) == ["c0", "c2"]


def test_a_customer_whose_zone_no_longer_exists_is_reached_in_the_country_s_zone(campaign_services,
                                                                                  campaigns_dir):
    # A zone that passed validation once and no longer exists: the planner and the delivery
    # rules read the same zone instead (New York's), so nobody is lost
    assert win_back_with_one_row_changed(campaign_services, campaigns_dir, 2,
                                         timezone="Mars/Olympus_Mons") == ["c0", "c1"]


def test_a_run_whose_runner_died_is_resumed_after_its_lease_not_redone(campaign_services, campaigns_dir,
                                                                       monkeypatch):
    import services.campaigns as campaigns_service
    from coupons.campaigns import latest_run_at
    from services.campaigns import claim_run, run_chunk

    s = campaign_services
    monkeypatch.setattr(campaigns_service, "CAMPAIGN_CHUNK", 2)
    write_campaign(campaigns_dir, "win-back.toml", name="win-back", audience="lapsed", days=60, **DAILY_AT_NOON_UTC)
    for n in range(5):
        buy(s, f"e{n}", f"c{n}", 70, [MUG], country="US", timezone="UTC")
    campaign = s.campaign("win-back")
    scheduled_at = latest_run_at(campaign, s.clock())
    # Given a runner that claimed the run, planned its first chunk, and died
    with s.session() as session:
        assert claim_run(session, campaign, scheduled_at, s.clock()) == "claimed"
    with s.session() as session:
        assert run_chunk(session, s.runtime, campaign, scheduled_at, s.clock()) == 2
    assert len(s.campaign_deliveries()) == 2
    # When beat's runner ticks while its lease holds, nothing starts
    s.clock.advance(minutes=1)
    assert s.campaign_tick() == []
    # And after the lease, the next tick finishes it from where it stopped
    s.clock.advance(minutes=5)
    assert s.campaign_tick() == ["done"]
    rows = s.campaign_deliveries()
    assert sorted(r["customer_id"] for r in rows) == ["c0", "c1", "c2", "c3", "c4"]
    assert {r["trigger_at"] for r in rows} == {"2026-03-10T12:00:00Z"}
