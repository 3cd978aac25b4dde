"""A campaign due while `encore beat` runs, on PostgreSQL + Redis with a real worker:
beat's campaign runner starts the run, the worker plans it, the relay sends it.
Two beat processes run side by side (as a mistaken deployment would), and the
audience still gets exactly one message each."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from datetime import UTC, datetime, timedelta

from sqlalchemy import text

from tests.support import order_paid, running_stack, wait_until, zone_where_local_hour_is

MUG = {"sku": "mug", "name": "Mug", "unit_price": "12.00", "quantity": 1}


def start_beat(data_dir, index: int) -> subprocess.Popen:
    log = open(data_dir / f"beat-{index}.log", "w")
    return subprocess.Popen(
        [sys.executable, "-m", "workers.cli", "beat"],
        stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ), start_new_session=True)


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)


def test_two_beats_run_a_due_campaign_once_reaching_exactly_its_audience(monkeypatch, tmp_path, postgres_url,
                                                                          redis_url):
    now = datetime.now(UTC)
    scheduled = (now - timedelta(minutes=3)).replace(second=0, microsecond=0)
    campaigns = tmp_path / "campaigns"
    campaigns.mkdir()
    # Given a win-back whose run was due three minutes ago (as after a restart)
    (campaigns / "win-back.toml").write_text(
        f'name = "win-back"\nschedule = "{scheduled.minute} {scheduled.hour} * * *"\ntimezone = "UTC"\n'
        'markets = ["north_america"]\naudience = "lapsed"\ndays = 60\n')
    (campaigns / "broken.toml").write_text('name = "broken"\nschedule = "every day"\naudience = "lapsed"\ndays = 1\n')
    daytime = zone_where_local_hour_is(13, now)
    lapsed = [order_paid(f"lapsed-{n}", customer_id=f"lapsed-{n}", timezone=daytime, items=[MUG],
                         occurred_at=now - timedelta(days=70)) for n in range(6)]
    outside = [
        order_paid("recent", customer_id="recent", timezone=daytime, items=[MUG], occurred_at=now - timedelta(days=70)),
        order_paid("recent-2", customer_id="recent", timezone=daytime, items=[MUG], occurred_at=now - timedelta(days=5)),
        order_paid("abroad", customer_id="abroad", country="BR", timezone=daytime, items=[MUG],
                   occurred_at=now - timedelta(days=70)),
    ]
    with running_stack(monkeypatch, database_url=postgres_url, broker_url=redis_url, data_dir=tmp_path,
                       env={"ENCORE_CAMPAIGNS_DIR": str(campaigns)}) as stack:
        assert stack.emit(*lapsed, *outside).rejected == 0
        stack.wait_for_states(9, ("expired",))  # the old orders' own coupons: long past their deadline
        # When two schedulers run
        beats = [start_beat(tmp_path, 1), start_beat(tmp_path, 2)]
        try:
            # Then every lapsed North American customer gets one email, and nobody else
            assert stack.smtp.wait_for(6, timeout=150), (tmp_path / "beat-1.log").read_text()[-3000:]
            def campaign_sent() -> list[dict]:
                rows = [r for r in stack.deliveries() if r["trigger"] == "campaign"]
                return rows if len(rows) >= 6 and all(r["state"] == "sent" for r in rows) else []

            rows = wait_until(campaign_sent, timeout=30)
            assert sorted(r["customer_id"] for r in rows) == [f"lapsed-{n}" for n in range(6)]
            assert {r["campaign"] for r in rows} == {"win-back"}
            assert all(r["trigger_at"] == scheduled.strftime("%Y-%m-%dT%H:%M:%SZ") for r in rows)
            # ... once each, though both beats' runners started the run
            wait_until(lambda: stack.worker.log().count("run_due_campaigns") >= 4, timeout=60)
            assert len(stack.deliveries()) == 9 + 6
            assert stack.smtp.count == 6
            assert len({r.rcpt_tos for r in stack.smtp.received}) == 6
        finally:
            for beat in beats:
                stop(beat)
        beat_log = (tmp_path / "beat-1.log").read_text()
        assert "campaign file skipped: broken.toml: schedule:" in beat_log
        runs = stack.query(text("SELECT campaign, state FROM campaign_runs"))
        assert [tuple(r) for r in runs] == [("win-back", "done")]
