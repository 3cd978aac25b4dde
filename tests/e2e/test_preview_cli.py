"""`encore preview` as a seller runs it before a stream: the copy of each market as its
customers would read it, the HTML parts to open in a browser, and test messages sent to
the seller's own address that leave nothing behind."""

from __future__ import annotations

import json

from channels.sinks import SmtpSink
from tests.e2e.test_cli import encore


def test_preview_prints_each_language_and_offer_in_the_markets_own_formats(tmp_path):
    # When the seller previews south-east Asia's SMS copy
    result = encore("preview", "--market", "southeast_asia", "--channel", "sms", cwd=tmp_path)
    # Then each language the market writes in is there, three offers each, in local money formats
    assert result.returncode == 0, result.stderr
    headers = [line for line in result.stdout.splitlines() if line.startswith("=== ")]
    assert len(headers) == 4 * 3  # id, th, vi, en (the Philippines) x three offer types
    assert "Rp" in result.stdout and "฿" in result.stdout and "₫" in result.stdout
    assert "Halo Putri" in result.stdout


def test_an_unknown_market_is_named(tmp_path):
    result = encore("preview", "--market", "atlantis", cwd=tmp_path)
    assert result.returncode == 2 and "--market: unknown market 'atlantis'" in result.stderr


def test_send_to_mails_test_messages_and_leaves_nothing_behind(tmp_path):
    smtp = SmtpSink()
    smtp.start()
    try:
        env = {"ENCORE_CHANNEL_EMAIL": f"mailto://127.0.0.1:{smtp.port}?from=shop@example.com&to={{email}}"}
        # When the seller sends North America's previews to themself, and writes the HTML parts
        result = encore("preview", "--market", "north_america", "--send-to", "me@example.com", "--html",
                        str(tmp_path / "html"), cwd=tmp_path, env=env)
        assert result.returncode == 0, result.stdout + result.stderr
        # Then three test emails (one per offer type) arrived, each subject starting with [TEST]
        subjects = [message["Subject"] for message in smtp.messages]
        assert len(subjects) == 3 and all(subject.startswith("[TEST] ") for subject in subjects)
        assert {message["To"] for message in smtp.messages} == {"me@example.com"}
        # And each email's HTML part is a file to open
        assert len(list((tmp_path / "html").glob("north_america-en-email-*.html"))) == 3
        # And nothing was stored: no coupon, delivery or count
        status = json.loads(encore("status", "--json", cwd=tmp_path, env=env).stdout)
        assert sum(status["deliveries"].values()) == 0 and status["events"] == {"accepted": 0, "rejected": 0}
        assert json.loads(encore("deliveries", "--json", cwd=tmp_path, env=env).stdout) == []
    finally:
        smtp.stop()
