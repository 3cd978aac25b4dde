"""Rule 18: an SMS reply is obeyed only when Twilio signed it, and only for the words
Twilio itself acts on."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from coupons.messages import LANGUAGES
from coupons.replies import (
    InboundSms,
    classify_reply,
    help_text,
    parse_twilio_form,
    read_inbound_sms,
    twilio_signature,
    twiml,
    verify_twilio_signature,
)

# Twilio's worked example (its validator's tests): token 12345, this URL and these params.
URL = "https://mycompany.com/myapp.php?foo=1&bar=2"
PARAMS = {"CallSid": "CA1234567890ABCDE", "Digits": "1234", "From": "+14158675309", "To": "+18005551212",
          "Caller": "+14158675309"}
SIGNATURE = "RSOYDt4T1cUTdK1PDd93/VVr8B8="
TOKEN = "12345"


@pytest.mark.parametrize("body", ["STOP", "stop", "  Stop \n", "STOPALL", "unsubscribe", "Cancel", "END", "quit",
                                  "REVOKE", "optout", "Stop.", "STOP!", "¡stop!"])
def test_the_stop_words_opt_out(body):
    assert classify_reply(body) == "opt_out"


@pytest.mark.parametrize("body", ["START", "yes", " Unstop "])
def test_the_start_words_opt_back_in(body):
    assert classify_reply(body) == "opt_in"


@pytest.mark.parametrize("body", ["HELP", "help", "Info"])
def test_help_and_info_ask_for_help(body):
    assert classify_reply(body) == "help"


@pytest.mark.parametrize("body", ["stop please", "please cancel", "S T O P", "", None, "thanks",
                                  "yes please", "START NOW", "Yes!", "...", "END OF STORY"])
def test_anything_but_a_single_keyword_changes_nothing(body):
    # As Twilio: "STOP PLEASE" does not block, so Encore does not opt out either; and
    # consent comes back only on an exact start word.
    assert classify_reply(body) is None


# ------------------------------------------------------------------------- signature


def test_the_signature_of_twilios_worked_example():
    assert twilio_signature(URL, PARAMS, TOKEN) == SIGNATURE


def test_the_signature_of_twilios_documentation_example():
    params = {**PARAMS, "From": "+12349013030", "Caller": "+12349013030"}
    assert twilio_signature(URL, params, TOKEN) == "0/KCTR6DLpKmkAf8muzZqo1nDgQ="


def test_a_repeated_parameter_is_signed_with_all_its_values_sorted():
    pairs = [("Sid", "CA123"), ("SidAccount", "AC123"), ("Digits", "5678"), ("Digits", "1234")]
    assert twilio_signature(URL, pairs, TOKEN) == "IK+Dwps556ElfBT0I3Rgjkr1wJU="
    assert twilio_signature(URL, {"Sid": "CA123", "SidAccount": "AC123", "Digits": ["1234", "5678"]},
                            TOKEN) == "IK+Dwps556ElfBT0I3Rgjkr1wJU="


def test_a_genuine_request_verifies():
    assert verify_twilio_signature(URL, PARAMS, TOKEN, SIGNATURE)
    assert verify_twilio_signature(URL, list(PARAMS.items()), TOKEN, f" {SIGNATURE} ")


@pytest.mark.parametrize(
    ("url", "signature"),
    [
        # Twilio signs the URL with or without the port; its validator accepts both.
        ("https://mycompany.com:1234/myapp.php?foo=1&bar=2", SIGNATURE),
        ("http://mycompany.com:1234/myapp.php?foo=1&bar=2", "Zmvh+3yNM1Phv2jhDCwEM3q5ebU="),
        (URL, "kvajT1Ptam85bY51eRf/AJRuM3w="),  # signed with :443
        ("http://mycompany.com/myapp.php?foo=1&bar=2", "0ZXoZLH/DfblKGATFgpif+LLRf4="),  # signed with :80
    ],
)
def test_the_port_may_or_may_not_be_in_the_signed_url(url, signature):
    assert verify_twilio_signature(url, PARAMS, TOKEN, signature)


@pytest.mark.parametrize(
    ("url", "params", "token", "signature"),
    [
        (URL, {**PARAMS, "Body": "STOP"}, TOKEN, SIGNATURE),  # a parameter added on the way
        (URL, {**PARAMS, "From": "+14158675300"}, TOKEN, SIGNATURE),  # someone else's number
        ("https://mycompany.com/myapp.php?foo=1&bar=3", PARAMS, TOKEN, SIGNATURE),
        (URL, PARAMS, "54321", SIGNATURE),
        (URL, PARAMS, TOKEN, SIGNATURE.lower()),
        (URL, PARAMS, TOKEN, ""),
        (URL, PARAMS, TOKEN, None),
        (URL, PARAMS, "", twilio_signature(URL, PARAMS, "")),  # no token configured: 401, never a pass
        (URL, PARAMS, TOKEN, "ü" * 28),
    ],
)
def test_a_forged_or_altered_request_does_not_verify(url, params, token, signature):
    assert not verify_twilio_signature(url, params, token, signature)


def test_the_form_keeps_blank_values_because_twilio_signs_them():
    pairs = parse_twilio_form(b"Body=STOP&From=%2B6281234567890&MediaUrl0=&To=%2B15550001111&MessageSid=SM1")
    assert ("MediaUrl0", "") in pairs and ("From", "+6281234567890") in pairs
    signed = twilio_signature("https://shop.example/webhooks/sms/inbound", pairs, "secret")
    without_blank = [pair for pair in pairs if pair[1]]
    assert twilio_signature("https://shop.example/webhooks/sms/inbound", without_blank, "secret") != signed
    with pytest.raises(ValueError):
        parse_twilio_form(b"Body=%FF\xff")


# ----------------------------------------------------------------------------- reading


def test_an_inbound_message_is_read_with_its_keyword():
    sms = read_inbound_sms([("From", "+6281234567890"), ("To", "+15550001111"), ("Body", " stop "),
                            ("MessageSid", "SM123")])
    assert sms == InboundSms("+6281234567890", "+15550001111", " stop ", "SM123", "opt_out")


def test_an_inbound_message_without_its_sender_is_refused_naming_the_field():
    params = {"From": " ", "To": "+15550001111", "Body": "STOP", "MessageSid": "SM1"}
    with pytest.raises(ValueError, match="^From: required"):
        read_inbound_sms(params)


def test_an_inbound_message_with_only_its_sender_and_body_is_read():
    sms = read_inbound_sms({"From": "+6281234567890", "Body": "STOP"})
    assert (sms.sender, sms.kind, sms.recipient, sms.message_sid) == ("+6281234567890", "opt_out", "", "")


# ------------------------------------------------------------------------------ answer


@pytest.mark.parametrize("language", LANGUAGES)
def test_help_is_answered_in_the_customers_language_naming_the_shop_and_stop(language):
    text = help_text(language, "Glow")
    assert text.startswith("Glow") and "STOP" in text and "START" in text
    if language != "en":
        assert text != help_text("en", "Glow")


def test_help_in_a_language_encore_does_not_write_is_english():
    assert help_text("ja", "Glow") == help_text("en", "Glow")
    assert help_text("en", "  ").startswith("Encore")


def test_the_twiml_answer_is_well_formed_and_escapes_the_shops_name():
    answer = twiml(help_text("en", 'Glow & <Co> "Jakarta"\x00'))
    assert answer.startswith('<?xml version="1.0" encoding="UTF-8"?>')
    root = ET.fromstring(answer)
    assert root.tag == "Response"
    (message,) = list(root)
    assert message.tag == "Message" and message.text.startswith('Glow & <Co> "Jakarta":')


def test_an_empty_twiml_answer_sends_nothing():
    root = ET.fromstring(twiml())
    assert root.tag == "Response" and list(root) == []
