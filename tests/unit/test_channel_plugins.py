"""The per-message Apprise plugin of an HTTP channel equals what Apprise.instantiate builds.

channels.apprise_urls parses a template once and puts each recipient into the parsed
arguments; these tests hold that to instantiate() on the filled URL, for the
templates the tests and docs use and for real provider schemes, over many
addresses (no network: plugins are built, never notified).
"""

from __future__ import annotations

import random

import apprise
import pytest

from channels.apprise_urls import SAMPLE_ADDRESS, ParsedTemplate, fill_template, new_asset

TEMPLATES = [
    ("whatsapp", "json://127.0.0.1:9100/wa/{whatsapp}"),
    ("sms", "json://encoreuser:S3cretPassw0rd@127.0.0.1:9100/sms/{phone}?rto=0.3&retry=3"),
    ("sms", "jsons://127.0.0.1/sms?to={phone}"),
    ("sms", "form://127.0.0.1:9100/sms/{phone}?x=1"),
    ("sms", "xml://127.0.0.1:9100/sms/{phone}"),
    ("sms", "twilio://ACaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb@+15551234567/{phone}"),
    ("sms", "sns://AKIAIOSFODNN7EXAMPLE/wJalrXUtnFEMIK7MDENGbPxRfiCYEXAMPLEKEY/us-east-1/{phone}"),
    ("whatsapp", "whatsapp://AAAAAAAAAAAAAAAAAAAA@1234567890/{whatsapp}"),
    ("telegram", "tgram://123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw/{telegram_id}"),
    ("telegram", "ntfy://127.0.0.1:9100/{telegram_id}"),
    ("line", "line://aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa/{line_id}"),
    ("email", "sendgrid://abcd:noreply@example.com/{email}"),
    ("email", "mailgun://noreply@example.com/KEY1234567890/{email}"),
]

FAST = "".join(sorted(ParsedTemplate.FAST_CHARACTERS))
_random = random.Random(20261125)
ADDRESSES = sorted(
    set(SAMPLE_ADDRESS.values())
    | {
        "+15551234567", "+5511987654321", "15551234567", "555", "0", "-1001234567890",
        "@encore_shop", "U0123456789abcdef0123456789abcdef", "ana+coupons@example.com",
        "a.b-c_d@sub.example.co.uk", "A", "ZZ", "+", "@", "...", "--", "Zq7EncoreRcptXw4",
        # Characters the fast path leaves to instantiate(): must be equal all the same.
        "+1 555 123", "a/b", "a%2Fb", "ana#1", "a?b=c", "ana:1", "josé@example.com", "tab\there",
    }
    | {"".join(_random.choice(FAST) for _ in range(_random.randint(1, 24))) for _ in range(60)}
)


PLAIN = (str, int, float, bool, type(None), list, tuple, set, dict)


def described(plugin) -> tuple | None:
    """The plugin's URL and every plain attribute (fullpath, targets, headers, ...):
    url() alone re-encodes and would hide a raw recipient in the request path."""
    if plugin is None:
        return None
    state = {k: repr(v) for k, v in vars(plugin).items() if type(v) in PLAIN}
    return (type(plugin), plugin.url(privacy=False), state)


@pytest.mark.parametrize(("channel", "template"), TEMPLATES)
def test_the_parsed_template_builds_the_plugin_instantiate_builds(channel: str, template: str) -> None:
    # Given a template parsed once for its channel
    parsed = ParsedTemplate(channel, template)
    asset = new_asset()
    assert parsed.proven, "these templates must take the parse-once path"
    for address in ADDRESSES:
        # When the plugin for one recipient is built from it
        fast = parsed.plugin(address, asset)
        # Then it is the plugin Apprise makes from the filled URL
        slow = apprise.Apprise.instantiate(fill_template(template, address), asset=asset)
        assert described(fast) == described(slow), address


@pytest.mark.parametrize(
    ("channel", "template"),
    [
        ("telegram", "json://h{telegram_id}.example.com/x"),  # hosts are lower-cased
        ("sms", "json://{phone}@127.0.0.1/x"),
        ("sms", "clicksend://user:pass@{phone}"),
    ],
)
def test_a_plugin_that_transforms_the_recipient_is_parsed_per_message(channel: str, template: str) -> None:
    parsed = ParsedTemplate(channel, template)
    assert not parsed.proven
    asset = new_asset()
    for address in ("+15551234567", "AbC", "a.b@x"):
        slow = apprise.Apprise.instantiate(fill_template(template, address), asset=asset)
        assert described(parsed.plugin(address, asset)) == described(slow)


@pytest.mark.parametrize(("channel", "template"), TEMPLATES)
def test_each_message_gets_its_own_arguments(channel: str, template: str) -> None:
    # Given a plugin built from a parsed template, whose containers then change
    # (the sender adds a message's own headers to email plugins, for one)
    parsed = ParsedTemplate(channel, template)
    first = parsed.plugin(SAMPLE_ADDRESS[channel], new_asset())
    for value in vars(first).values():
        if type(value) is dict:
            value["X-Changed"] = "yes"
        elif type(value) in (list, set):
            value.append("changed") if type(value) is list else value.add("changed")
    # When the next recipient's plugin is built
    second = parsed.plugin("+15550000000", new_asset())
    # Then it is untouched by the first one's changes
    slow = apprise.Apprise.instantiate(fill_template(template, "+15550000000"), asset=new_asset())
    assert described(second) == described(slow)
