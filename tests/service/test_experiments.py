"""Experiments as a seller sees them (SPEC section 9): a held-out customer passes every rule
and then gets nothing (no message, no code); the others get their variant's offer and
framing; `encore deliveries --json` shows each customer's group, and the group holds across
streams while the definition is unchanged."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from tests.support import order_paid, stream_ended

SHIPPED = Path(__file__).resolve().parents[2] / "coupons" / "markets.toml"
MUG = [{"sku": "mug", "name": "Mug", "unit_price": "30.00", "quantity": 1}]


def markets_with_experiment(tmp_path, experiment: str) -> str:
    """The shipped markets file with `experiment` (TOML lines) added to north_america."""
    text = SHIPPED.read_text().replace("[north_america]\n", f"[north_america]\n{experiment}\n", 1)
    path = tmp_path / "markets.toml"
    path.write_text(text)
    return str(path)


def _stream(services, stream_id: str, buyers: list[str], **order) -> None:
    now = services.clock()
    assert services.emit(*(order_paid(f"{stream_id}-{c}", customer_id=c, stream_id=stream_id, occurred_at=now,
                                      timezone="UTC", items=MUG, **order) for c in buyers)) == []
    services.clock.advance(minutes=10)
    assert services.emit(stream_ended(f"end-{stream_id}", stream_id, occurred_at=services.clock())) == []


def test_the_control_group_passes_every_rule_and_then_gets_nothing(make_services, tmp_path):
    # Given north_america holding out half its customers, the rest on a 20% "loyalty" variant
    services = make_services(ENCORE_MARKETS_FILE=markets_with_experiment(tmp_path, (
        'holdout = 0.5\nvariants = [{ name = "deep", weight = 1, depth_percent = "20", framing = "loyalty" }]')))
    buyers = [f"c{n:02d}" for n in range(40)]
    # And one more buyer with no usable channel (no consent): no rule lets them in a group
    _stream(services, "S1", buyers)
    _stream(services, "S1b", ["nobody"], consent=[])

    # When the stream's coupons are sent
    while services.relay_and_send():
        pass

    # Then each customer who passed the rules is in a group, the held-out half ended suppressed/holdout
    rows = {row["customer_id"]: row for row in services.deliveries()}
    control = [c for c in buyers if rows[c]["variant"] == "control"]
    treated = [c for c in buyers if rows[c]["variant"] == "deep"]
    assert sorted(control + treated) == buyers and control and treated
    for customer in control:
        assert (rows[customer]["state"], rows[customer]["reason"], rows[customer]["code"]) == \
            ("suppressed", "holdout", None)
    # And the held-out got no message; the others got 20% off with the loyalty framing
    assert len(services.smtp.messages) == len(treated)
    assert all(message["Subject"].startswith("For our loyal customers") for message in services.smtp.messages)
    for customer in treated:
        assert rows[customer]["state"] == "sent"
        assert rows[customer]["offer"]["percent"] == "20"
    assert rows["nobody"]["variant"] is None and rows["nobody"]["reason"] == "no_channel"


def test_a_customer_keeps_their_group_across_streams(make_services, tmp_path):
    # Given a 30% holdout and two streams two days apart with the same buyers
    services = make_services(ENCORE_MARKETS_FILE=markets_with_experiment(tmp_path, "holdout = 0.3"))
    buyers = [f"k{n:02d}" for n in range(30)]
    _stream(services, "A", buyers)
    first = {row["customer_id"]: row["variant"] for row in services.deliveries()}
    services.clock.advance(days=2)
    _stream(services, "B", list(reversed(buyers)))  # another arrival order

    # Then every customer is in the same group in both streams
    later = max(row["trigger_at"] for row in services.deliveries())
    second = {row["customer_id"]: row["variant"] for row in services.deliveries() if row["trigger_at"] == later}
    assert set(first.values()) == {"control", "treatment"}
    assert second == first


def test_a_campaigns_own_experiment_holds_out_and_deepens_its_offer(campaign_services, campaigns_dir):
    from sqlalchemy import select

    from store.models import Delivery
    from tests.service.conftest import write_campaign

    s = campaign_services
    # Given a lapsed-buyers campaign at 20% that holds out 40% and tries 30% on the rest
    write_campaign(campaigns_dir, "win-back.toml", raw=(
        'name = "win-back"\nschedule = "0 12 * * *"\ntimezone = "UTC"\naudience = "lapsed"\ndays = 30\n'
        'offer = { type = "percent_off", percent = "20" }\nholdout = 0.4\n'
        'variants = [{ name = "deeper", weight = 1, depth_percent = "30" }]\n'))
    for n in range(30):
        assert s.emit(order_paid(f"old-{n}", customer_id=f"w{n:02d}", occurred_at=s.clock() - timedelta(days=40),
                                 timezone="UTC", items=MUG)) == []
    # When it runs
    assert s.run_campaign("win-back") == "done"
    rows = s.campaign_deliveries()
    # Then its own experiment applies: the held out end suppressed/holdout, the rest get 30%
    assert {row["variant"] for row in rows} == {"control", "deeper"}
    for row in rows:
        if row["variant"] == "control":
            assert (row["state"], row["reason"], row["code"]) == ("suppressed", "holdout", None)
        else:
            assert row["state"] == "scheduled" and row["offer"]["percent"] == "30"
    with s.session() as session:
        assert {e.split("@")[0] for e in session.scalars(select(Delivery.experiment).where(
            Delivery.experiment.is_not(None)))} == {"campaign:win-back"}
