"""ENCORE_SEND_CONCURRENCY[_<CHANNEL>]: a documented default, a per-channel override,
and a clear error naming the variable for anything else."""

from __future__ import annotations

import pytest

from config.settings import DEFAULT_SEND_CONCURRENCY, SettingsError, load_settings


def test_every_channel_sends_the_default_number_at_once_when_nothing_is_set():
    settings = load_settings({})
    assert {settings.concurrency_for(c) for c in ("email", "sms", "whatsapp", "line", "telegram")} == \
        {DEFAULT_SEND_CONCURRENCY}


def test_one_setting_for_all_channels_and_one_per_channel_override_it():
    settings = load_settings({"ENCORE_SEND_CONCURRENCY": "8", "ENCORE_SEND_CONCURRENCY_WHATSAPP": "32"})
    assert (settings.concurrency_for("email"), settings.concurrency_for("whatsapp")) == (8, 32)


@pytest.mark.parametrize(("name", "value"), [
    ("ENCORE_SEND_CONCURRENCY", "many"),
    ("ENCORE_SEND_CONCURRENCY", "0"),
    ("ENCORE_SEND_CONCURRENCY_SMS", "2.5"),
    ("ENCORE_SEND_CONCURRENCY_EMAIL", "100000"),
])
def test_a_bad_concurrency_is_refused_naming_the_variable(name, value):
    with pytest.raises(SettingsError, match=name):
        load_settings({name: value})
