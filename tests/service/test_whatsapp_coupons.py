"""WhatsApp coupons as Meta takes them (SPEC rule 16), in-process on SQLite and PostgreSQL
against the Cloud API stand-in: the approved template per language, +1 numbers passed
over whatever the URL, and what each documented answer does to the delivery."""

from __future__ import annotations


import pytest
from sqlalchemy import select

from store.models import Attempt, Delivery
from tests.standins.whatsapp_cloud import Template, WhatsAppCloudStandIn
from tests.support import order_paid

TEMPLATES_FILE = """\
default = "en"
[templates.en]
name = "repurchase_coupon"
language = "en_US"
[templates.id]
name = "kupon_belanja_lagi"
language = "id"
"""
INDONESIAN = "+6281234567890"
US_NUMBER = "+14155550123"


@pytest.fixture()
def cloud_api():
    with WhatsAppCloudStandIn([Template("kupon_belanja_lagi", "id"), Template("repurchase_coupon", "en_US")]) as s:
        yield s


@pytest.fixture()
def templates_file(tmp_path):
    path = tmp_path / "whatsapp-templates.toml"
    path.write_text(TEMPLATES_FILE)
    return str(path)


@pytest.fixture()
def services(make_services, cloud_api, templates_file):
    """WhatsApp through the Cloud API (the stand-in), with the templates file."""
    return make_services(ENCORE_CHANNEL_WHATSAPP=cloud_api.channel_url, ENCORE_WHATSAPP_API_URL=cloud_api.api_url,
                         ENCORE_WHATSAPP_TEMPLATES=templates_file)


def whatsapp_order(event_id: str, customer_id: str, number: str, services, *, country: str = "ID",
                   currency: str = "IDR", consent: tuple[str, ...] = ("whatsapp", "sms"), **contact) -> dict:
    """A customer reached on WhatsApp first, in daytime (UTC noon is 19:00 in Jakarta)."""
    return order_paid(event_id, customer_id=customer_id, country=country, currency=currency, consent=list(consent),
                      whatsapp=number, phone=contact.pop("phone", number), timezone="UTC",
                      occurred_at=services.clock(), name="Sari",
                      items=[{"sku": "SERUM", "name": "Serum Wajah", "unit_price": "189000", "quantity": 1}], **contact)


def attempts_of(services, customer_id: str) -> list[tuple]:
    with services.session() as session:
        return [tuple(row) for row in session.execute(
            select(Attempt.channel, Attempt.outcome, Attempt.reason).join(Delivery, Delivery.id == Attempt.delivery_id)
            .where(Delivery.customer_id == customer_id).order_by(Attempt.id)).all()]


def sms_requests(services) -> int:
    return sum(1 for request in services.http.requests if request.path.startswith("/sms/"))


# -- the template -------------------------------------------------------------------------------------------------

def test_an_indonesian_customer_gets_the_id_template_with_the_code_in_its_button(services, cloud_api):
    services.emit(whatsapp_order("e1", "sari", INDONESIAN, services))
    services.relay_and_send()
    [message] = cloud_api.accepted
    [row] = services.deliveries()
    assert (message.template, message.language, message.to) == ("kupon_belanja_lagi", "id", INDONESIAN)
    assert message.coupon_code == row["code"].replace("-", "") and len(message.coupon_code) == 15
    assert message.body[0] == "Sari" and message.body[1] == "Serum Wajah"
    assert (row["state"], row["channel"], row["skipped"]) == ("sent", "whatsapp", [])


def test_a_language_without_a_template_gets_the_files_default(services, cloud_api):
    # Thai has no template in the file: the default (en) template goes, in English
    services.emit(whatsapp_order("e1", "som", "+66812345678", services, country="TH", currency="THB"))
    services.relay_and_send()
    [message] = cloud_api.accepted
    assert (message.template, message.language) == ("repurchase_coupon", "en_US")


def test_without_a_templates_file_whatsapp_is_passed_over_for_the_next_channel(make_services, cloud_api):
    services = make_services(ENCORE_CHANNEL_WHATSAPP=cloud_api.channel_url, ENCORE_WHATSAPP_API_URL=cloud_api.api_url)
    services.emit(whatsapp_order("e1", "sari", INDONESIAN, services))
    services.relay_and_send()
    services.relay_and_send()
    [row] = services.deliveries()
    assert (row["state"], row["channel"], row["attempts"]) == ("sent", "sms", 1)
    assert row["skipped"] == [{"channel": "whatsapp", "reason": "whatsapp_no_template"}]
    assert cloud_api.requests == 0


# -- +1 numbers -----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("url", ["cloud_api", "gateway"])
def test_a_plus_one_number_gets_no_whatsapp_coupon_and_falls_back_to_sms(make_services, cloud_api, templates_file,
                                                                         url):
    # Given WhatsApp through the Cloud API, or through a gateway of the seller's own
    env = {"ENCORE_WHATSAPP_TEMPLATES": templates_file, "ENCORE_WHATSAPP_API_URL": cloud_api.api_url}
    if url == "cloud_api":
        env["ENCORE_CHANNEL_WHATSAPP"] = cloud_api.channel_url
    services = make_services(**env)
    # When a Mexican customer with a US number orders (WhatsApp first, then SMS)
    services.emit(whatsapp_order("e1", "ana", US_NUMBER, services, country="MX", currency="MXN"))
    services.relay_and_send()
    # Then SMS carries the coupon, in the same pass, and WhatsApp was never asked
    [row] = services.deliveries()
    assert (row["state"], row["channel"], row["attempts"]) == ("sent", "sms", 1)
    assert row["skipped"] == [{"channel": "whatsapp", "reason": "whatsapp_us_blocked"}]
    assert attempts_of(services, "ana") == [("whatsapp", "skipped", "whatsapp_us_blocked"), ("sms", "sent", "sent")]
    assert cloud_api.requests == 0
    assert not any(request.path.startswith("/whatsapp/") for request in services.http.requests)


def test_a_plus_one_number_on_whatsapp_only_ends_failed_with_the_reason(services, cloud_api):
    services.emit(whatsapp_order("e1", "ana", US_NUMBER, services, country="MX", currency="MXN",
                                 consent=("whatsapp",)))
    services.relay_and_send()
    [row] = services.deliveries()
    assert (row["state"], row["reason"], row["channel"], row["attempts"]) == ("failed", "whatsapp_us_blocked", None, 0)
    assert row["skipped"] == [{"channel": "whatsapp", "reason": "whatsapp_us_blocked"}]
    assert cloud_api.requests == 0


def test_a_skip_is_recorded_once_even_when_the_next_channel_waits(services, cloud_api):
    # Given a +1 number whose next channel is refused for now (SMS answers 503)
    services.http.respond("/sms/", [503])
    services.emit(whatsapp_order("e1", "ana", US_NUMBER, services, country="MX", currency="MXN"))
    services.relay_and_send()
    # When the retry comes
    services.clock.advance(minutes=5)
    services.relay_and_send()
    # Then WhatsApp was passed over once, and SMS retried
    assert attempts_of(services, "ana") == [("whatsapp", "skipped", "whatsapp_us_blocked"),
                                            ("sms", "transient", "http_503"), ("sms", "sent", "sent")]
    [row] = services.deliveries()
    assert (row["state"], row["attempts"], row["skipped"]) == (
        "sent", 2, [{"channel": "whatsapp", "reason": "whatsapp_us_blocked"}])


# -- Meta's answers -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("fault", "reason"), [
    ("paused", "whatsapp_template_paused"),
    ("not_approved", "whatsapp_template_missing"),
    ("not_on_whatsapp", "whatsapp_not_on_whatsapp"),
])
def test_a_permanent_refusal_moves_to_the_next_channel_at_once(services, cloud_api, fault, reason):
    if fault == "paused":
        cloud_api.set_status("kupon_belanja_lagi", "id", "PAUSED")
    elif fault == "not_approved":
        cloud_api.set_status("kupon_belanja_lagi", "id", "PENDING")
    else:
        cloud_api.fail_recipient(INDONESIAN, 131026)
    services.emit(whatsapp_order("e1", "sari", INDONESIAN, services))
    services.relay_and_send()
    services.relay_and_send()  # the next channel is due at once: no clock moved
    [row] = services.deliveries()
    assert (row["state"], row["channel"]) == ("sent", "sms")
    assert row["skipped"] == [{"channel": "whatsapp", "reason": reason}]
    assert attempts_of(services, "sari") == [("whatsapp", "permanent", reason), ("sms", "sent", "sent")]


@pytest.mark.parametrize(("code", "reason"), [
    (131056, "rate_limited"),
    (130429, "rate_limited"),
    (131047, "whatsapp_reengagement_required"),
])
def test_a_transient_refusal_retries_whatsapp_after_the_backoff(services, cloud_api, code, reason):
    cloud_api.fail_next(code, times=3)  # the in-call retry is for connection blips only: one answer per attempt
    services.emit(whatsapp_order("e1", "sari", INDONESIAN, services))
    services.relay_and_send()
    [row] = services.deliveries()
    assert (row["state"], row["reason"], row["channel"]) == ("scheduled", reason, "whatsapp")
    assert services.relay_and_send() == 0  # nothing moved to SMS meanwhile
    assert sms_requests(services) == 0
    cloud_api.clear_faults()
    services.clock.advance(seconds=services.runtime.settings.retry_base_seconds * 3)
    services.relay_and_send()
    [row] = services.deliveries()
    assert (row["state"], row["channel"], row["skipped"]) == ("sent", "whatsapp", [])
    assert attempts_of(services, "sari") == [("whatsapp", "transient", reason), ("whatsapp", "sent", "sent")]
    assert len(cloud_api.accepted) == 1


def test_a_delivery_after_several_channels_lists_each_it_gave_up(services, cloud_api):
    cloud_api.fail_recipient(INDONESIAN, 131026)
    services.http.respond("/sms/", [400])
    services.emit(whatsapp_order("e1", "sari", INDONESIAN, services, consent=("whatsapp", "sms", "email"),
                                 email="sari@example.com"))
    for _ in range(3):
        services.relay_and_send()
    [row] = services.deliveries()
    assert (row["state"], row["channel"]) == ("sent", "email")
    assert row["skipped"] == [{"channel": "whatsapp", "reason": "whatsapp_not_on_whatsapp"},
                              {"channel": "sms", "reason": "http_400"}]
    assert services.smtp.count == 1


