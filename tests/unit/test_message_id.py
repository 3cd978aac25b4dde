"""SPEC rule 19: every attempt of an email delivery is the same email, one Message-ID,
so a copy resent after a crash is recognisably the message the mailbox already holds."""

from __future__ import annotations

from email import policy
from email.parser import BytesParser

import pytest

from channels.adapter import email_sender_domain
from channels.smtp import SmtpSettings, build_email, delivery_message_id
from coupons.model import Message

SHOP = SmtpSettings(host="smtp.example.com", port=25, secure_mode="insecure", user=None, password=None,
                    from_name="Shop", from_addr="shop@shop.example")


def headers_of(raw: bytes) -> list[tuple[str, str]]:
    return list(BytesParser(policy=policy.default).parsebytes(raw).items())


def test_a_delivery_has_one_message_id_for_all_its_attempts():
    first = delivery_message_id(42, "K7QXM-3PAHZ-2WRTY", "shop.example")
    assert first == delivery_message_id(42, "K7QXM-3PAHZ-2WRTY", "shop.example")
    assert first.startswith("<encore.42.") and first.endswith("@shop.example>")


def test_other_deliveries_and_other_installs_never_share_one():
    # Two installs (or a database started afresh) both have a delivery 42, with other codes
    assert delivery_message_id(42, "K7QXM-3PAHZ-2WRTY", "shop.example") != \
        delivery_message_id(42, "ABCDE-FGHJK-MNPQR", "shop.example")
    assert delivery_message_id(42, "K7QXM-3PAHZ-2WRTY", "shop.example") != \
        delivery_message_id(43, "K7QXM-3PAHZ-2WRTY", "shop.example")


def test_the_id_does_not_show_the_code():
    assert "K7QXM" not in delivery_message_id(42, "K7QXM-3PAHZ-2WRTY", "shop.example")


@pytest.mark.parametrize("html", [None, "<p>Hi</p>"])
def test_the_email_carries_the_deliverys_message_id_once(html):
    message_id = delivery_message_id(7, "K7QXM-3PAHZ-2WRTY", "shop.example")
    message = Message(text="Hi", subject="Your code", html=html,
                      headers=(("Message-ID", message_id), ("List-Unsubscribe", "<https://e.example/u/t>")))
    sends = [headers_of(build_email(message, SHOP, "ann@example.com")) for _ in range(2)]
    for headers in sends:
        assert [value for name, value in headers if name == "Message-ID"] == [message_id]
        assert ("List-Unsubscribe", "<https://e.example/u/t>") in headers


def test_an_email_without_a_delivery_gets_a_fresh_id_at_the_senders_domain():
    headers = headers_of(build_email(Message(text="Hi", subject="Test"), SHOP, "ann@example.com"))
    [message_id] = [value for name, value in headers if name == "Message-ID"]
    assert message_id.endswith("@shop.example>")


@pytest.mark.parametrize(("template", "domain"), [
    ("mailto://127.0.0.1:2525?from=shop@Shop.Example&to={email}", "shop.example"),
    ("mailtos://user:secret@smtp.example.com?from=Glow%20<hello@glow.example>&to={email}", "glow.example"),
    ("sendgrid://abcd:noreply@glow.example/{email}", "glow.example"),
])
def test_the_domain_is_the_from_addresses(template, domain):
    assert email_sender_domain(template) == domain
