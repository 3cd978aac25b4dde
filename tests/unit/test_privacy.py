"""Customer data out of failure texts: what is masked, and what an operator keeps."""

from __future__ import annotations

import pytest

from coupons.privacy import mask_personal_data


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        # a relay quoting the mailbox: the domain and the status codes stay
        ("recipient refused: 550 5.1.1 <jane.private.doe@example.com>: Recipient address rejected",
         "recipient refused: 550 5.1.1 <***@example.com>: Recipient address rejected"),
        ("O'Brien@example.ie bounced", "***@example.ie bounced"),
        ("to=jane%40example.com&subject=x", "to=***@example.com&subject=x"),  # percent-encoded, in a URL
        ("<用户@例子.广告>", "<***@例子.广告>"),
        # international numbers keep their country calling code
        ("Failed to send Twilio notification to +14155550100: Bad Request - error=400.",
         "Failed to send Twilio notification to +1***: Bad Request - error=400."),
        ("http://127.0.0.1:9100/sms/%2B6281234567890 error=503", "http://127.0.0.1:9100/sms/+62*** error=503"),
        ("call +1 (415) 555-0100 now", "call +1*** now"),
        ("+44 20 7183 8750.", "+44***."),
        ("+8801712345678", "+880***"),
        ("+14155550100 550 5.1.1", "+1*** 550 5.1.1"),
        # national forms and bare ids
        ("(415) 555-0100", "<phone>"),
        ("415-555-0100", "<phone>"),
        ("415.555.0100", "<phone>"),
        ("0812-3456-7890", "<phone>"),
        ("020 7183 8750", "<phone>"),
        ("11 91234-5678", "<phone>"),
        ("wa_id 6281234567890 is not on WhatsApp", "wa_id <phone> is not on WhatsApp"),
        ("chat 123456789 not found", "chat <phone> not found"),
    ],
)
def test_addresses_and_numbers_are_masked(text, masked):
    assert mask_personal_data(text) == masked


@pytest.mark.parametrize(
    "text",
    [
        "SMTPRecipientsRefused: 451 4.3.0 Try again later",
        "550-5.7.1 [203.0.113.9] Our system has detected an unusual rate 21211",
        "(#131047) Re-engagement message - error=400.",
        "(#132000) Number of parameters does not match",
        "Messages from 192.168.100.200 temporarily deferred; [172.217.164.110]",
        "at 2026-03-10T12:00:00.000Z, 2026-03-10 12:00:00",
        "Apprise 2.19.0 on port 2525, error=503, 12345678",
        "queued as 4B7C2E1A23456789, token a1b2c3d4e5f6789012345",
        "offset +02:00 or +0200",
        "",
    ],
)
def test_status_codes_error_codes_addresses_of_servers_and_times_are_kept(text):
    assert mask_personal_data(text) == text


def test_a_known_recipient_is_masked_in_every_form():
    line_id = "U0123456789abcdef0123456789abcdef"

    masked = mask_personal_data(f"user {line_id} blocked the bot (/push/{line_id})", known=[line_id])

    assert masked == "user <recipient> blocked the bot (/push/<recipient>)"


def test_a_known_email_or_number_keeps_its_domain_or_country_code():
    text = "jane@example.com and +14155550100"

    assert mask_personal_data(text, known=["jane@example.com", "+14155550100"]) == "***@example.com and +1***"
