"""An experiment and its review on real parts (SPEC section 9): a Celery worker, PostgreSQL,
Redis and a real SMTP server. 300 buyers of a stream with half held out split within
binomial bounds, the held-out half gets nothing, later orders that use the codes show in
`encore review` with their revenue, and the review page renders in headless Chromium."""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys

from sqlalchemy import select

from tests.integration.test_dashboard_browser import browse, chromium, console_lines
from tests.service.test_experiments import markets_with_experiment
from tests.support import (
    WEBHOOK_SECRET,
    ServeProcess,
    order_paid,
    running_stack,
    stream_ended,
    wait_until,
    zone_where_local_hour_is,
)

BUYERS = 300
MUG = [{"sku": "mug", "name": "Mug", "unit_price": "30.00", "quantity": 1}]


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "workers.cli", *args], env=dict(os.environ), capture_output=True,
                          text=True, timeout=120)


def test_a_half_holdout_splits_a_stream_and_its_review_shows_the_redemptions(monkeypatch, tmp_path, postgres_url,
                                                                            redis_url):
    from store.models import Coupon, Delivery

    markets = markets_with_experiment(tmp_path, "holdout = 0.5")
    with running_stack(monkeypatch, data_dir=tmp_path, database_url=postgres_url, broker_url=redis_url,
                       env={"ENCORE_MARKETS_FILE": markets}) as stack:
        # Given a stream of 300 US buyers at their local midday, in a market holding out half its customers
        zone = zone_where_local_hour_is(13)
        buyers = [f"buyer-{n:03d}" for n in range(BUYERS)]
        report = stack.emit(*(order_paid(f"o-{c}", customer_id=c, stream_id="live-300", timezone=zone, items=MUG)
                              for c in buyers), stream_ended("end-live-300", "live-300"))
        assert (report.accepted, report.rejected) == (BUYERS + 1, 0)

        # When the worker plans and sends the stream
        rows = stack.wait_for_states(BUYERS, ("sent", "suppressed"), timeout=180)

        # Then the groups split within binomial bounds (4 standard deviations of Binomial(300, 0.5))
        control = [row for row in rows if row["variant"] == "control"]
        treated = [row for row in rows if row["variant"] == "treatment"]
        assert len(control) + len(treated) == BUYERS
        assert abs(len(control) - BUYERS / 2) <= 4 * math.sqrt(BUYERS * 0.25), len(control)
        # And the control group got nothing: no message, no code, nothing to sync to a shop
        assert all((row["state"], row["reason"], row["code"]) == ("suppressed", "holdout", None) for row in control)
        assert all(row["state"] == "sent" for row in treated)
        assert stack.smtp.wait_for(len(treated), timeout=60)
        mailed = {message["To"] for message in stack.smtp.messages}
        assert len(stack.smtp.messages) == len(treated)
        assert mailed.isdisjoint({f"{row['customer_id']}@example.com" for row in control})
        synced = stack.query(select(Coupon.sync_due_at, Coupon.code_synced_at).join(Delivery).where(
            Delivery.variant == "control"))
        assert synced and all(pair == (None, None) for pair in synced)

        # When three treated customers order again with their codes, and one held-out customer without
        again = []
        for row in treated[:3]:
            event = order_paid(f"again-{row['customer_id']}", customer_id=row["customer_id"], timezone=zone,
                               items=[{"sku": "mug", "name": "Mug", "unit_price": "27.00", "quantity": 2}])
            event["data"]["discount_codes"] = [row["code"]]
            again.append(event)
        again.append(order_paid(f"again-{control[0]['customer_id']}", customer_id=control[0]["customer_id"],
                                timezone=zone, items=MUG))
        assert stack.emit(*again).accepted == 4
        wait_until(lambda: sum(1 for row in stack.deliveries() if row["redeemed_at"]) == 3, timeout=60)

        # Then `encore review --json` shows the redemptions with their revenue and the two groups
        result = _cli("review", "live-300", "--json")
        assert result.returncode == 0, result.stderr
        review = json.loads(result.stdout)
        assert (review["buyers"], review["coupons"], review["sent"]) == (BUYERS, len(treated), len(treated))
        assert review["redeemed"] == 3 and review["revenue"] == {"USD": "162.00"}
        groups = {group["variant"]: group for group in review["groups"]}
        assert groups["control"]["customers"] == len(control) and groups["control"]["repurchased"] == 1
        assert groups["control"]["ci95"] is None and len(groups["treatment"]["ci95"]) == 2
        assert review["previous"] is None
        assert "redeemed" in _cli("review", "live-300").stdout

        # And the review page renders in a real browser, linked from the dashboard
        browser = chromium()
        serve = ServeProcess({**os.environ, "ENCORE_WEBHOOK_SECRET": WEBHOOK_SECRET}, tmp_path / "serve.log")
        serve.start()
        try:
            dashboard = browse(browser, serve.url + "/", "--dump-dom", "--window-size=1400,1800")
            page = serve.url + "/streams/default/live-300"
            dom = browse(browser, page, "--dump-dom", "--window-size=1400,1400")
            screenshot = tmp_path / "artifacts" / "review.png"
            screenshot.parent.mkdir()
            shot = browse(browser, page, f"--screenshot={screenshot}", "--window-size=1400,1400")
        finally:
            serve.stop()
        assert 'href="/streams/default/live-300"' in dashboard.stdout
        assert dom.returncode == 0, dom.stderr[-2000:]
        assert re.search(r'id="revenue">USD 162\.00<', dom.stdout)
        assert ">control<" in dom.stdout and ">treatment<" in dom.stdout
        assert console_lines(dom.stderr) == [] and console_lines(shot.stderr) == []
        assert shot.returncode == 0 and screenshot.stat().st_size > 10_000
