"""Rule 6 / SPEC section 6: unsubscribe tokens and what messages carry when ENCORE_PUBLIC_URL is set."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from coupons.messages import LANGUAGES, render_message, translations
from coupons.model import CHANNELS, MessageContext, Offer
from coupons.unsubscribe import BadToken, mint_token, read_token, unsubscribe_url

SECRET = "s3cret"


@given(customer_id=st.text(min_size=1, max_size=256), channel=st.sampled_from(CHANNELS))
def test_a_token_names_its_customer_and_channel(customer_id, channel):
    target = read_token(SECRET, mint_token(SECRET, customer_id, channel))
    assert (target.customer_id, target.channel) == (customer_id, channel)


@given(position=st.integers(min_value=0, max_value=200), replacement=st.sampled_from("AbZ09-_."))
def test_an_altered_token_never_names_someone_else(position, replacement):
    token = mint_token(SECRET, "customer-42", "email")
    position %= len(token)
    altered = token[:position] + replacement + token[position + 1:]
    try:
        target = read_token(SECRET, altered)
    except BadToken:
        return
    # Only unused base64 padding bits can change without breaking the MAC.
    assert (target.customer_id, target.channel) == ("customer-42", "email")


def test_a_token_from_another_secret_or_channel_swap_is_refused():
    with pytest.raises(BadToken):
        read_token(SECRET, mint_token("other", "c1", "email"))
    payload, mac = mint_token(SECRET, "c1", "sms").split(".")
    email_payload = mint_token(SECRET, "c1", "email").split(".")[0]
    with pytest.raises(BadToken):
        read_token(SECRET, f"{email_payload}.{mac}")


def test_no_link_without_a_public_url():
    assert unsubscribe_url(None, SECRET, "c1", "email") is None
    assert unsubscribe_url("https://e.example.com/", SECRET, "c1", "email").startswith(
        "https://e.example.com/unsubscribe/")


def _context(url: str | None, language: str = "en") -> MessageContext:
    offer = Offer(type="refill", sku="R", product_name="Shampoo", currency="USD", price=Decimal("14.00"))
    return MessageContext(language=language, locale=language, customer_name="Ann", offer=offer, code="ABCDE-FGHJK",
                          expires_at=datetime(2026, 12, 1, tzinfo=UTC), timezone="UTC", framing="urgency",
                          unsubscribe_url=url)


def test_email_carries_rfc_8058_headers_only_with_a_link():
    url = "https://e.example.com/unsubscribe/tok"
    assert render_message(_context(url), "email").headers == (
        ("List-Unsubscribe", f"<{url}>"), ("List-Unsubscribe-Post", "List-Unsubscribe=One-Click"))
    assert render_message(_context(None), "email").headers == ()


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("channel", ["sms", "whatsapp", "line", "telegram"])
def test_short_messages_end_with_the_localized_opt_out_line(language, channel):
    url = "https://e.example.com/unsubscribe/tok"
    text = render_message(_context(url, language), channel).text
    assert text.endswith(translations(language)["opt_out_line"].format(url=url))
    assert url not in render_message(_context(None, language), channel).text


def test_the_email_body_shows_the_unsubscribe_link_too():
    """Mailbox providers want a visible link besides the header."""
    url = "https://e.example.com/unsubscribe/tok?x=<1>"
    message = render_message(_context(url), "email")
    assert message.text.rstrip().endswith(f"Unsubscribe: {url}")
    assert '<a href="https://e.example.com/unsubscribe/tok?x=&lt;1&gt;"' in message.html
    plain = render_message(_context(None), "email")
    assert "Unsubscribe" not in plain.text and "unsubscribe" not in plain.html
