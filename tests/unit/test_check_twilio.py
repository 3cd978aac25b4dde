"""`encore check`'s line for Twilio's inbound webhook (SPEC rule 18): whether the auth token
that verifies replies is set, never its value; unset is a warning (the endpoint answers 401)."""

from __future__ import annotations

from config.settings import load_settings

TOKEN = "0123456789abcdef0123456789abcdef"


def twilio_line(tmp_path, **env: str):
    from services.check import _twilio_inbound

    return _twilio_inbound(load_settings({"ENCORE_DATA_DIR": str(tmp_path), **env}))


def test_a_set_token_is_reported_ok_without_its_value(tmp_path):
    line = twilio_line(tmp_path, ENCORE_TWILIO_AUTH_TOKEN=TOKEN, ENCORE_WEBHOOK_SECRET="w" * 32,
                       ENCORE_PUBLIC_URL="https://encore.example.com/")
    assert (line.part, line.ok, line.warning) == ("twilio inbound", True, False)
    assert "ENCORE_TWILIO_AUTH_TOKEN set" in line.detail
    assert "https://encore.example.com/webhooks/sms/inbound" in line.detail
    assert TOKEN not in str(line) and TOKEN[:8] not in str(line)


def test_an_unset_token_is_a_warning_saying_replies_get_401(tmp_path):
    line = twilio_line(tmp_path, ENCORE_TWILIO_AUTH_TOKEN="  ")
    assert (line.ok, line.warning) == (True, True)
    assert "ENCORE_TWILIO_AUTH_TOKEN is not set" in line.detail and "401" in line.detail
    assert str(line).startswith("twilio inbound   warn ")
