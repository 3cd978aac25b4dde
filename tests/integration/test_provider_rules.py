"""Channels as the providers require them (SPEC rules 16 and 19), with a real worker
process on PostgreSQL and Redis: WhatsApp coupons as approved templates through the
Cloud API stand-in, +1 numbers passed over, and one Message-ID per email delivery
through a crash and a graceful stop."""

from __future__ import annotations

import os
import signal
from collections import Counter

import pytest
from sqlalchemy import select

from channels.smtp import delivery_message_id
from store.models import Attempt
from tests.integration.test_guarantees import all_events_applied, day
from tests.standins.whatsapp_cloud import Template, WhatsAppCloudStandIn
from tests.support import codes_at, order_paid, running_stack, stream_ended, wait_until

TEMPLATES_FILE = """\
default = "en"
[templates.en]
name = "repurchase_coupon"
language = "en_US"
[templates.id]
name = "kupon_belanja_lagi"
language = "id"
body = ["customer_name", "product", "offer", "expires"]
"""


@pytest.fixture()
def cloud_api():
    with WhatsAppCloudStandIn([Template("kupon_belanja_lagi", "id"), Template("repurchase_coupon", "en_US")]) as s:
        yield s


@pytest.fixture()
def whatsapp_stack(monkeypatch, tmp_path, postgres_url, redis_url, cloud_api):
    """A real worker whose WhatsApp channel is the Cloud API (the stand-in), with templates."""
    templates = tmp_path / "whatsapp-templates.toml"
    templates.write_text(TEMPLATES_FILE)
    env = {"ENCORE_CHANNEL_WHATSAPP": cloud_api.channel_url, "ENCORE_WHATSAPP_API_URL": cloud_api.api_url,
           "ENCORE_WHATSAPP_TEMPLATES": str(templates)}
    with running_stack(monkeypatch, data_dir=tmp_path, database_url=postgres_url, broker_url=redis_url,
                       env=env) as running:
        yield running


# -- rule 16 -------------------------------------------------------------------------------------------------------

def test_an_indonesian_customer_gets_the_id_template_with_their_code_in_the_button(whatsapp_stack, cloud_api):
    # Given the south-east Asian market (WhatsApp first) and an Indonesian customer
    whatsapp_stack.emit(order_paid("e-id", customer_id="sari", country="ID", currency="IDR", name="Sari",
                                   consent=["whatsapp", "sms"], whatsapp="+6281234567890", phone="+6281234567890",
                                   timezone=day(), items=[{"sku": "SERUM", "name": "Serum Wajah",
                                                           "unit_price": "189000", "quantity": 1}]))
    # Then the approved Indonesian template goes out, the code in its copy-code button
    [row] = whatsapp_stack.wait_for_states(1, ("sent",))
    [message] = cloud_api.accepted
    assert (message.template, message.language, message.to) == ("kupon_belanja_lagi", "id", "+6281234567890")
    assert message.coupon_code == row["code"].replace("-", "")
    assert message.body[:2] == ("Sari", "Serum Wajah")
    assert (row["channel"], row["skipped"]) == ("whatsapp", [])


def test_a_plus_one_number_falls_back_to_sms_with_whatsapp_skipped(whatsapp_stack, cloud_api):
    # Given a Mexican customer (WhatsApp, then SMS) whose number is a US one
    whatsapp_stack.emit(order_paid("e-us", customer_id="ana", country="MX", currency="MXN",
                                   consent=["whatsapp", "sms", "email"], whatsapp="+14155550123",
                                   phone="+14155550123", timezone=day()))
    # Then SMS carries the coupon and WhatsApp was never asked
    [row] = whatsapp_stack.wait_for_states(1, ("sent",))
    assert (row["channel"], row["attempts"]) == ("sms", 1)
    assert row["skipped"] == [{"channel": "whatsapp", "reason": "whatsapp_us_blocked"}]
    assert cloud_api.requests == 0
    assert [r.path for r in whatsapp_stack.http.requests] == ["/sms/+14155550123"]


# -- rule 19 -------------------------------------------------------------------------------------------------------

def message_ids(stack) -> Counter:
    return Counter(message["Message-ID"] for message in stack.smtp.messages)


@pytest.mark.parametrize("stack", [{"ENCORE_LEASE_SECONDS": "3"}], indirect=True)
def test_a_crash_resend_carries_the_first_message_id(stack):
    # Given an SMTP provider that keeps a message but is slow to say so
    stack.smtp.data_held = True
    stack.emit(order_paid("e-crash", customer_id="eve", timezone=day()))
    # When the worker is killed after the provider has the message, before it heard "accepted"
    wait_until(lambda: stack.smtp.count == 1 and stack.smtp.waiting_after_data == 1, timeout=60)
    stack.worker.kill()
    stack.smtp.data_held = False
    # ...and a new worker sends it again once the lease ran out
    stack.worker.start()
    [row] = stack.wait_for_states(1, ("sent",), timeout=60)
    assert stack.smtp.wait_for(2, timeout=10)
    # Then both copies are the same email: one Message-ID, the delivery's
    first, second = stack.smtp.messages
    assert first["Message-ID"] == second["Message-ID"] == delivery_message_id(row["id"], row["code"], "example.com")
    assert first.get_body(("plain",)).get_content() == second.get_body(("plain",)).get_content()


@pytest.mark.parametrize("stack", [{"ENCORE_LEASE_SECONDS": "3"}], indirect=True)
@pytest.mark.parametrize("whom", ["process group", "parent only"])
def test_a_graceful_stop_mid_stream_sends_nothing_twice(stack, whom):
    """systemd and Heroku send SIGTERM to every process of the worker; Docker and
    Kubernetes to the main one only (whose warm shutdown waits for its pool's tasks)."""
    buyers = 150
    # Given a stream's buyers being sent to a provider that takes 30 ms per recipient
    stack.smtp.rcpt_delay = 0.03
    stack.emit(*[order_paid(f"e-term-{i}", customer_id=f"term-{i:03d}", stream_id="term", timezone=day())
                 for i in range(buyers)])
    wait_until(lambda: all_events_applied(stack), timeout=60)
    stack.emit(stream_ended("e-term-end", "term"))
    # When the worker is stopped with SIGTERM in the middle of it, as a deploy does
    # (the provider holds new recipients meanwhile, so that sends are surely in flight
    # and most of the stream unsent when the signal comes, however loaded the machine)
    stack.smtp.hold_after = 20
    wait_until(lambda: stack.smtp.count >= 20 and stack.smtp.waiting_in_rcpt >= 1, timeout=60, interval=0.01)
    process = stack.worker.process
    if whom == "process group":
        os.killpg(process.pid, signal.SIGTERM)
        wait_until(lambda: "asked to stop: finishing its sends in flight" in stack.worker.log(), timeout=30)
    else:
        os.kill(process.pid, signal.SIGTERM)
    stack.smtp.release_recipients()
    process.wait(timeout=60)
    if whom == "process group":
        # the batch's pool process took no new send once asked to stop: the rest went back
        assert stack.smtp.count < buyers
    # ...and the next release's worker takes over
    stack.worker.start()
    rows = stack.wait_for_states(buyers, ("sent",), timeout=120)
    # Then every buyer got the coupon exactly once: no code and no Message-ID twice
    assert stack.smtp.wait_for(buyers, timeout=10)
    assert codes_at(stack.smtp) == Counter({row["code"]: 1 for row in rows})
    assert set(message_ids(stack).values()) == {1}
    attempts = stack.query(select(Attempt.outcome))
    assert Counter(outcome for (outcome,) in attempts) == {"sent": buyers}
