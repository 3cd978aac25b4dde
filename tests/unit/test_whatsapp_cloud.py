"""The Cloud API sender against the stand-in over real HTTP: what the customer gets and
what each of Meta's documented answers does to the delivery (retry or next channel)."""

from __future__ import annotations

import json
import socket
from datetime import datetime, UTC
from decimal import Decimal

import pytest
import requests

from channels.adapter import ChannelConfigError
from channels.whatsapp_cloud import (
    CLOUD_API_ERRORS,
    WhatsAppCloudSender,
    classify_cloud_api_answer,
    is_cloud_api_template,
    parse_cloud_api_template,
)
from coupons.messages import render_message, resolve_language
from coupons.model import Message, MessageContext, Offer
from coupons.whatsapp import parse_templates, template_message
from tests.standins.whatsapp_cloud import TOKEN, Template, WhatsAppCloudStandIn

TEMPLATES = parse_templates({"default": "en", "templates": {
    "en": {"name": "repurchase_coupon", "language": "en_US"},
    "id": {"name": "kupon_belanja_lagi", "language": "id"},
}})
INDONESIAN = "+6281234567890"


def coupon(locale: str = "id-ID", market: str = "id") -> Message:
    language, babel_locale = resolve_language(locale, market)
    ctx = MessageContext(
        language=language, locale=babel_locale, customer_name="Sari",
        offer=Offer(type="percent_off", sku="SERUM", product_name="Serum Wajah", currency="IDR",
                    percent=Decimal(30)),
        code="K7QXM-3PAHZ-2WRTY", expires_at=datetime(2026, 12, 2, tzinfo=UTC), timezone="Asia/Jakarta",
        framing="loyalty",
    )
    text = render_message(ctx, "whatsapp").text
    return Message(text=text, whatsapp_template=template_message(TEMPLATES.for_language(language), ctx))


@pytest.fixture()
def stand_in():
    with WhatsAppCloudStandIn([Template("kupon_belanja_lagi", "id"), Template("repurchase_coupon", "en_US")]) as s:
        yield s


@pytest.fixture()
def sender(stand_in):
    with WhatsAppCloudSender(stand_in.channel_url, api_url=stand_in.api_url, in_call_retries=0) as s:
        yield s


# ---------------------------------------------------------------------------- sending


def test_an_indonesian_customer_gets_the_id_template_with_the_code_in_its_button(stand_in, sender):
    sent = coupon()
    result = sender.send(INDONESIAN, sent)
    assert result.ok and result.reason == "sent"
    (message,) = stand_in.accepted
    assert result.detail == message.message_id  # Meta's wamid, for the delivery's record
    assert (message.to, message.template, message.language) == (INDONESIAN, "kupon_belanja_lagi", "id")
    assert message.coupon_code == "K7QXM3PAHZ2WRTY"
    assert message.body[:2] == ("Sari", "Serum Wajah")
    assert message.body[2].startswith("Dapatkan diskon 30%") and message.body[2] in sent.text


def test_one_connection_serves_the_slots_messages(stand_in, sender):
    for _ in range(3):
        assert sender.send(INDONESIAN, coupon()).ok
    assert stand_in.connections == 1


def test_the_path_holds_the_version_and_the_phone_number_id(stand_in):
    with WhatsAppCloudSender(stand_in.channel_url, api_url=stand_in.api_url + "/", version="v21.0") as sender:
        assert sender.send(INDONESIAN, coupon()).ok
    assert stand_in.accepted[0].payload["to"] == INDONESIAN


def test_a_plus_one_number_is_never_sent_and_moves_on(stand_in, sender):
    result = sender.send("+1 555 123 4567", coupon("en-US", "en"))
    assert (result.permanent, result.reason) == (True, "whatsapp_us_blocked")
    assert stand_in.requests == 0


def test_free_text_is_never_posted_outside_a_conversation(stand_in, sender):
    result = sender.send(INDONESIAN, Message(text="Your code: K7QXM-3PAHZ-2WRTY"))
    assert (result.permanent, result.reason) == (True, "whatsapp_no_template")
    assert stand_in.requests == 0


@pytest.mark.parametrize("address", ["6281234567890", "+62 abc", "", "   "])
def test_a_number_that_is_not_e164_is_an_invalid_address(stand_in, sender, address):
    result = sender.send(address, coupon())
    assert (result.permanent, result.reason) == (True, "invalid_address")
    assert stand_in.requests == 0


# ---------------------------------------------------------- Meta's answers, each its way


def test_a_paused_template_moves_to_the_next_channel(stand_in, sender):
    stand_in.set_status("kupon_belanja_lagi", "id", "PAUSED")
    result = sender.send(INDONESIAN, coupon())
    assert (result.permanent, result.reason) == (True, "whatsapp_template_paused")
    assert "132015" in result.detail and "paused" in result.detail


def test_a_disabled_template_moves_to_the_next_channel(stand_in, sender):
    stand_in.set_status("kupon_belanja_lagi", "id", "DISABLED")
    assert sender.send(INDONESIAN, coupon()).reason == "whatsapp_template_disabled"


@pytest.mark.parametrize("state", ["PENDING", "REJECTED"])
def test_a_template_not_approved_moves_to_the_next_channel(stand_in, sender, state):
    stand_in.set_status("kupon_belanja_lagi", "id", state)
    result = sender.send(INDONESIAN, coupon())
    assert (result.permanent, result.reason) == (True, "whatsapp_template_missing")


def test_a_template_meta_does_not_know_moves_to_the_next_channel(sender, stand_in):
    # The file names a template the seller never created in this language.
    with WhatsAppCloudStandIn([Template("kupon_belanja_lagi", "id_ID")]) as other:
        with WhatsAppCloudSender(other.channel_url, api_url=other.api_url) as wrong:
            result = wrong.send(INDONESIAN, coupon())
    assert (result.permanent, result.reason) == (True, "whatsapp_template_missing")


def test_a_template_with_other_placeholders_than_the_file_says_moves_on():
    with WhatsAppCloudStandIn([Template("kupon_belanja_lagi", "id", parameters=3)]) as stand_in:
        with WhatsAppCloudSender(stand_in.channel_url, api_url=stand_in.api_url) as sender:
            result = sender.send(INDONESIAN, coupon())
    assert (result.permanent, result.reason) == (True, "whatsapp_template_mismatch")
    assert "(4)" in result.detail and "(3)" in result.detail


def test_a_number_not_on_whatsapp_moves_to_the_next_channel(stand_in, sender):
    stand_in.fail_recipient(INDONESIAN, 131026)
    result = sender.send(INDONESIAN, coupon())
    assert (result.permanent, result.reason) == (True, "whatsapp_not_on_whatsapp")


@pytest.mark.parametrize(
    ("code", "reason"),
    [
        (131056, "rate_limited"),  # too many to this one number: later works
        (130429, "rate_limited"),  # the number's throughput
        (131048, "whatsapp_spam_limited"),
        (131049, "whatsapp_marketing_limit"),
        (131047, "whatsapp_reengagement_required"),
        (131000, "whatsapp_unavailable"),
    ],
)
def test_limits_and_metas_own_trouble_are_retried_on_whatsapp(stand_in, sender, code, reason):
    stand_in.fail_next(code)
    result = sender.send(INDONESIAN, coupon())
    assert (result.transient, result.reason) == (True, reason)
    assert f"({code})" in result.detail or f"#{code}" in result.detail
    assert sender.send(INDONESIAN, coupon()).ok  # the fault was one answer; the next send goes


def test_a_rate_limit_with_retry_after_says_when_to_come_back(stand_in, sender):
    stand_in.fail_next(130429, headers={"Retry-After": "42"})
    result = sender.send(INDONESIAN, coupon())
    assert (result.transient, result.retry_after) == (True, 42.0)


def test_a_refused_token_moves_on_and_never_shows_the_token(stand_in):
    url = stand_in.channel_url.replace(TOKEN, "EAAJBrevoked0token")
    with WhatsAppCloudSender(url, api_url=stand_in.api_url) as sender:
        result = sender.send(INDONESIAN, coupon())
    assert (result.permanent, result.reason) == (True, "whatsapp_auth")
    assert "EAAJBrevoked0token" not in result.detail and "EAAJBrevoked0token" not in repr(sender.account)


def test_a_proxy_error_page_is_transient(stand_in, sender):
    stand_in.raw_next(502, b"<html>Bad Gateway</html>", {"Content-Type": "text/html"})
    result = sender.send(INDONESIAN, coupon())
    assert (result.transient, result.reason) == (True, "http_502")


def test_a_provider_that_does_not_answer_in_time_is_a_transient_timeout(stand_in):
    with WhatsAppCloudSender(stand_in.channel_url, api_url=stand_in.api_url, timeout=(2.0, 0.2),
                             in_call_retries=0) as sender:
        with stand_in.hold():
            result = sender.send(INDONESIAN, coupon())
    assert (result.transient, result.reason) == (True, "timeout")


def test_a_provider_that_is_down_is_a_transient_connection_error():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # nothing listens here once the probe closes
    url = f"whatsapp://{TOKEN}@106540352242922/{{whatsapp}}"
    with WhatsAppCloudSender(url, api_url=f"http://127.0.0.1:{port}", in_call_retries=0) as sender:
        result = sender.send(INDONESIAN, coupon())
    assert (result.transient, result.reason) == (True, "connection")


def test_the_sender_never_raises(stand_in, sender, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("a bug in a library")

    monkeypatch.setattr(sender._session, "post", broken)
    result = sender.send(INDONESIAN, coupon())
    assert (result.ok, result.transient, result.reason) == (False, True, "unknown")


# ------------------------------------------------------------------------ the channel URL


def test_the_channel_url_is_read_as_apprise_reads_it():
    assert is_cloud_api_template("whatsapp://T0ken@123/{whatsapp}")
    assert not is_cloud_api_template("json://gateway.example/wa/{whatsapp}")
    for url in ("whatsapp://T0ken@123456/{whatsapp}",
                "whatsapp://repurchase:T0ken@123456/{whatsapp}?lang=en_US",
                "whatsapp://_?token=T0ken&from=123456&to={whatsapp}"):
        account = parse_cloud_api_template(url)
        assert (account.token, account.phone_number_id) == ("T0ken", "123456"), url


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("whatsapp://T0ken@123456/+6281234567890", "placeholder"),
        ("whatsapp://T0ken@123456/{whatsapp}/+6281234567890", "only recipient"),
        ("whatsapp://T0ken@not-a-number/{whatsapp}", "Apprise cannot use"),
        ("json://gateway.example/{whatsapp}", "not a whatsapp://"),
    ],
)
def test_a_channel_url_that_cannot_work_is_refused_naming_the_setting(url, problem):
    with pytest.raises(ChannelConfigError, match="ENCORE_CHANNEL_WHATSAPP") as caught:
        parse_cloud_api_template(url)
    assert problem in str(caught.value)


# ------------------------------------------------------------------ the table, answer by answer


def _meta_error(code: int, status: int = 400) -> tuple[int, bytes]:
    body = {"error": {"message": f"(#{code}) Title", "type": "OAuthException", "code": code,
                      "error_data": {"messaging_product": "whatsapp", "details": "Details"},
                      "fbtrace_id": "Az8or2yhqkZfEZ-_4Qn_Bam"}}
    return status, json.dumps(body).encode()


@pytest.mark.parametrize("code", sorted(CLOUD_API_ERRORS))
def test_every_code_in_the_table_is_classified_by_its_code_not_its_status(code):
    transient, reason = CLOUD_API_ERRORS[code]
    for status in (400, 500):
        result = classify_cloud_api_answer(*_meta_error(code, status))
        assert (result.transient, result.reason) == (transient, reason)
        assert result.detail == f"(#{code}) Title: Details"


def test_codes_outside_the_table_fall_back_on_the_status():
    assert classify_cloud_api_answer(*_meta_error(299, 403)).reason == "whatsapp_auth"  # Graph permissions
    unknown = classify_cloud_api_answer(*_meta_error(139999, 400))
    assert (unknown.permanent, unknown.reason) == (True, "whatsapp_error_139999")
    assert classify_cloud_api_answer(*_meta_error(139999, 503)).transient


@pytest.mark.parametrize(
    ("status", "payload", "transient", "reason"),
    [
        (503, b"", True, "http_503"),
        (429, b"slow down", True, "http_429"),
        (408, b"", True, "http_408"),
        (401, b"", False, "whatsapp_auth"),
        (404, b"<html/>", False, "http_404"),
        (400, b'{"error": "not meta"}', False, "http_400"),
    ],
)
def test_answers_without_metas_error_object_go_by_the_http_status(status, payload, transient, reason):
    result = classify_cloud_api_answer(status, payload, "3")
    assert (result.ok, result.transient, result.reason) == (False, transient, reason)
    assert result.retry_after == (3.0 if transient else None)


def test_an_accepted_answer_is_sent_even_when_held_for_pacing():
    payload = {"messaging_product": "whatsapp", "contacts": [{"input": INDONESIAN, "wa_id": "6281234567890"}],
               "messages": [{"id": "wamid.HBgL", "message_status": "held_for_quality_assessment"}]}
    result = classify_cloud_api_answer(200, json.dumps(payload).encode())
    assert (result.ok, result.reason, result.detail) == (True, "sent", "wamid.HBgL")
    assert classify_cloud_api_answer(200, b"not json").ok


def test_requests_is_what_the_sender_keeps_alive():
    # The slot's session is the project's keep-alive session (no cookies, env read once).
    from channels import http_headers

    url = f"whatsapp://{TOKEN}@106540352242922/{{whatsapp}}"
    with WhatsAppCloudSender(url) as sender:
        assert isinstance(sender._session, requests.Session)
        assert type(sender._session) is type(http_headers.new_keep_alive_session())
