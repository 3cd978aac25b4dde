"""The dashboard in a real browser (headless Chromium, Debian's `chromium` package)
after a demo run: every chart is drawn with data, and the page logs nothing to the
console. The screenshot is kept as a test artifact (`<tmp>/artifacts/dashboard.png`)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys

import httpx
import pytest

from tests.conftest import REQUIRE_SERVICES
from tests.support import WEBHOOK_SECRET, ServeProcess, signed_headers

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
                  "--hide-scrollbars", "--enable-logging=stderr", "--v=0"]
"""No sandbox (containers run as root); no network besides the page (CI has none)."""


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return found
    if REQUIRE_SERVICES:
        pytest.fail("chromium is not installed (apt-get install -y chromium) and ENCORE_REQUIRE_SERVICES=1")
    pytest.skip("chromium is not installed (apt-get install -y chromium)")


def browse(browser: str, url: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([browser, *CHROMIUM_FLAGS, *args, url], capture_output=True, text=True, timeout=120)


def console_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if ":CONSOLE" in line]


def test_the_dashboard_renders_its_charts_in_chromium_after_a_demo(tmp_path):
    browser = chromium()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENCORE_")}
    # Given a demo run in an empty folder (embedded defaults, as a first-time user runs it)
    demo = subprocess.run([sys.executable, "-m", "workers.cli", "demo", "--buyers", "16"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert demo.returncode == 0, demo.stdout[-2000:] + demo.stderr[-2000:]
    serve = ServeProcess({**env, "ENCORE_WEBHOOK_SECRET": WEBHOOK_SECRET}, tmp_path / "serve.log", cwd=tmp_path)
    serve.start()
    try:
        # And one coupon redeemed at the shop
        rows = json.loads(subprocess.run([sys.executable, "-m", "workers.cli", "deliveries", "--json"], cwd=tmp_path,
                                         env=env, capture_output=True, text=True, timeout=60).stdout)
        code = next(r["code"] for r in rows if r["state"] == "sent")
        body = json.dumps({"code": code, "order_id": "shop-order-1"}).encode()
        assert httpx.post(f"{serve.url}/coupons/{code}/redeem", content=body,
                          headers=signed_headers(body)).status_code == 200

        # When a browser opens the dashboard
        dom = browse(browser, serve.url + "/", "--dump-dom", "--window-size=1400,1800")
        artifacts = tmp_path / "artifacts"
        artifacts.mkdir()
        screenshot = artifacts / "dashboard.png"
        shot = browse(browser, serve.url + "/", f"--screenshot={screenshot}", "--window-size=1400,1800")
    finally:
        serve.stop()

    # Then every chart that has data draws it
    assert dom.returncode == 0, dom.stderr[-2000:]
    points = dict(re.findall(r'data-chart="([\w-]+)" data-points="(\d+)"', dom.stdout))
    assert set(points) == {"funnel-market", "funnel-stream", "rate-offer", "rate-market", "over-time", "problems"}
    for chart in ("funnel-market", "funnel-stream", "rate-offer", "rate-market", "over-time"):
        assert int(points[chart]) > 0, chart
    assert len(re.findall(r'<rect class="bar"', dom.stdout)) >= 20
    assert re.search(r"<b>16</b><span>buyers</span>", dom.stdout)
    # And the page logged nothing to the console (no script errors, no failed loads)
    assert console_lines(dom.stderr) == [] and console_lines(shot.stderr) == []
    assert shot.returncode == 0 and screenshot.stat().st_size > 20_000
    print(f"dashboard screenshot: {screenshot}")
