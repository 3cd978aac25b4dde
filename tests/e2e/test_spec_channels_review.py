"""SPEC sections 8 and 9 as an acceptance check drives them: the installed `encore`
console script in separate processes (emit, worker, beat, serve, deliveries, review,
preview), on PostgreSQL and Redis, with settings named exactly as the SPEC names them and
stand-ins for the providers (the WhatsApp Cloud API, an SMTP server, an HTTP SMS gateway).

One stack (worker, beat, serve) serves the module; each test uses its own customers,
streams and numbers, so the tests stay independent of each other's order."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import subprocess
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

import httpx
import pytest

from channels.sinks import HttpSink, SmtpSink
from tests.conftest import PG_ADMIN_URL, REDIS_URL, need_service
from tests.standins.whatsapp_cloud import Template, WhatsAppCloudStandIn
from tests.support import (
    ENCORE_SCRIPT,
    WEBHOOK_SECRET,
    EncoreDaemon,
    free_port,
    iso,
    order_paid,
    signed_headers,
    stream_ended,
    wait_until,
    zone_where_local_hour_is,
)

"""The console script the package installs, as a user runs it."""

TEMPLATES_FILE = """\
default = "en"                  # the language used where a customer's has no template
[templates.en]
name = "repurchase_coupon"      # the approved template's name
language = "en_US"              # its language code at Meta
body = ["customer_name", "product", "offer", "expires"]  # what fills {{1}}, {{2}}, ... (optional; this order by default)
[templates.id]
name = "kupon_belanja_lagi"
language = "id"
"""

EXPERIMENT = """\
holdout = 0.10                      # share of the market's customers held out
variants = [                        # weights: shares of the customers not held out
  { name = "depth10", weight = 0.5, depth_percent = "10" },
  { name = "depth20", weight = 0.5, depth_percent = "20", framing = "loyalty" },
]
"""

TEMPLATE_EXPERIMENT = """\
variants = [
  { name = "standard", weight = 0.5 },
  { name = "template_b", weight = 0.5, template = "cupom_b" },
]
"""

TWILIO_TOKEN = "f0e1d2c3b4a5968778695a4b3c2d1e0f"
SHIPPED_MARKETS = Path(__file__).resolve().parents[2] / "coupons" / "markets.toml"


def markets_with_the_spec_experiment(folder: Path) -> Path:
    """The shipped markets file with SPEC section 9's experiment added to north_america, and
    one whose variant is another approved WhatsApp template to latin_america."""
    text = SHIPPED_MARKETS.read_text()
    for anchor, experiment in (('countries.CA = { timezone = "America/Toronto" }\n', EXPERIMENT),
                               ('countries.PE = { timezone = "America/Lima" }\n', TEMPLATE_EXPERIMENT)):
        assert anchor in text
        text = text.replace(anchor, anchor + experiment, 1)
    path = folder / "markets.toml"
    path.write_text(text)
    return path


def encore(*args: str, env: dict[str, str], cwd: Path, stdin: str | None = None,
           timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([ENCORE_SCRIPT, *args], env=env, cwd=cwd, input=stdin, text=True, capture_output=True,
                          timeout=timeout)



class Encore:
    """What the tests drive: the settings, the stand-ins and the running processes."""

    def __init__(self, env: dict[str, str], folder: Path, smtp: SmtpSink, sms: HttpSink,
                 cloud: WhatsAppCloudStandIn, serve_url: str):
        self.env = env
        self.folder = folder
        self.smtp = smtp
        self.sms = sms
        self.cloud = cloud
        self.serve_url = serve_url

    def run(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
        return encore(*args, env=self.env, cwd=self.folder, stdin=stdin)

    def emit(self, *events: dict) -> None:
        result = self.run("emit", "-", stdin="".join(json.dumps(e) + "\n" for e in events))
        assert result.returncode == 0, result.stdout + result.stderr
        assert result.stdout.strip() == f"accepted {len(events)}, rejected 0"

    def deliveries(self, customer: str | None = None) -> list[dict]:
        result = self.run("deliveries", "--json", *(["--customer", customer] if customer else []))
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)

    def settled(self, customers: list[str], states: tuple[str, ...] = ("sent", "suppressed", "failed"),
                timeout: float = 60) -> dict[str, dict]:
        """Each customer's one delivery, once every one of them is in `states`."""
        wanted = set(customers)

        def rows() -> dict[str, dict] | None:
            found = {r["customer_id"]: r for r in self.deliveries() if r["customer_id"] in wanted}
            return found if len(found) == len(wanted) and all(r["state"] in states for r in found.values()) \
                else None

        return wait_until(rows, timeout=timeout, interval=0.3)


def _database() -> tuple[str, str]:
    need_service("PostgreSQL", "127.0.0.1", 5432)
    import psycopg

    name = f"encore_acc_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return name, PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"


def _purge_redis() -> None:
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    for key in client.scan_iter():
        if not key.startswith(b"_kombu.binding"):
            client.delete(key)


@pytest.fixture(scope="module")
def running(tmp_path_factory):
    need_service("Redis", "127.0.0.1", 6379)
    folder = tmp_path_factory.mktemp("acceptance")
    name, database_url = _database()
    _purge_redis()
    smtp, sms = SmtpSink(), HttpSink()
    cloud = WhatsAppCloudStandIn([Template("kupon_belanja_lagi", "id"), Template("repurchase_coupon", "en_US"),
                                  Template("cupom_b", "en_US")])
    templates = folder / "whatsapp-templates.toml"
    templates.write_text(TEMPLATES_FILE)
    daemons: list[EncoreDaemon] = []
    try:
        smtp.start()
        sms.start()
        cloud.start()
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("ENCORE_")}
        env.update({
            "ENCORE_DATABASE_URL": database_url,
            "ENCORE_BROKER_URL": REDIS_URL,
            "ENCORE_DATA_DIR": str(folder / "var"),
            "ENCORE_MARKETS_FILE": str(markets_with_the_spec_experiment(folder)),
            "ENCORE_CHANNEL_EMAIL": f"mailto://127.0.0.1:{smtp.port}?from=shop@example.com&to={{email}}",
            "ENCORE_CHANNEL_SMS": f"json://127.0.0.1:{sms.port}/sms/{{phone}}",
            "ENCORE_CHANNEL_WHATSAPP": f"whatsapp://{cloud.token}@{cloud.phone_number_id}/{{whatsapp}}",
            "ENCORE_WHATSAPP_TEMPLATES": str(templates),
            "ENCORE_WHATSAPP_API_URL": cloud.api_url,
            "ENCORE_WEBHOOK_SECRET": WEBHOOK_SECRET,
            "ENCORE_TWILIO_AUTH_TOKEN": TWILIO_TOKEN,
            "ENCORE_RETRY_BASE_SECONDS": "0.5",
        })
        daemons.append(worker := EncoreDaemon(["worker", "--concurrency", "2", "--loglevel", "INFO"],
                                              env, folder / "worker.log", folder))
        daemons.append(beat := EncoreDaemon(["beat"], env, folder / "beat.log", folder))
        daemons.append(serve := EncoreDaemon(["serve", "--port", str(port)], env, folder / "serve.log", folder))
        serve_url = f"http://127.0.0.1:{port}"

        def serving() -> bool:
            serve.alive()
            try:
                return httpx.get(serve_url + "/openapi.json", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(lambda: worker.alive() and " ready." in worker.log_path.read_text(), timeout=90, interval=0.2)
        wait_until(serving, timeout=60, interval=0.2)
        beat.alive()
        yield Encore(env, folder, smtp, sms, cloud, serve_url)
    finally:
        for daemon in reversed(daemons):
            daemon.stop()
        cloud.stop()
        sms.stop()
        smtp.stop()
        _purge_redis()
        import psycopg

        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def midday() -> str:
    return zone_where_local_hour_is(13)


# ---------------------------------------------------------------------------------------------- rule 16

def test_whatsapp_goes_as_the_approved_template_and_plus_one_numbers_are_skipped(running):
    zone = midday()
    # Given an Indonesian customer reachable on WhatsApp, and a Mexican one whose WhatsApp is a +1 number
    running.emit(
        order_paid("acc-id", customer_id="acc-sari", country="ID", currency="IDR", name="Sari", locale="id-ID",
                   consent=["whatsapp"], whatsapp="+6281234567890", timezone=zone,
                   items=[{"sku": "SERUM", "name": "Serum Wajah", "unit_price": "189000", "quantity": 1}]),
        order_paid("acc-mx", customer_id="acc-ana", country="MX", currency="MXN", name="Ana",
                   consent=["whatsapp", "sms"], whatsapp="+14155550123", phone="+14155550123", timezone=zone),
    )
    rows = running.settled(["acc-sari", "acc-ana"], states=("sent",))
    # Then the Indonesian coupon is the `id` template, filled from the offer, its code dashless in the button
    sari = rows["acc-sari"]
    [message] = [m for m in running.cloud.accepted if m.to.endswith("6281234567890")]
    assert (message.template, message.language) == ("kupon_belanja_lagi", "id")
    name, product, offer, expires = message.body
    assert (name, product) == ("Sari", "Serum Wajah")
    assert "30" in offer and expires.strip()
    assert message.coupon_code == sari["code"].replace("-", "")
    assert len(message.coupon_code) <= 15 and "-" not in message.coupon_code
    assert (sari["channel"], sari["skipped"], sari["variant"]) == ("whatsapp", [], None)  # no experiment there
    # And the +1 number got no WhatsApp at all: the coupon went by SMS, WhatsApp listed as skipped
    ana = rows["acc-ana"]
    assert ana["channel"] == "sms"
    assert ana["skipped"] == [{"channel": "whatsapp", "reason": "whatsapp_us_blocked"}]
    assert not [m for m in running.cloud.accepted if m.to.endswith("4155550123")]
    assert "/sms/+14155550123" in [r.path for r in running.sms.requests]


def test_a_variant_naming_another_template_sends_that_template(running):
    zone = midday()
    # Given Brazilian customers on WhatsApp, in a market whose variant template_b is another approved template
    people = [f"acc-br-{n}" for n in range(12)]
    running.emit(*(order_paid(f"acc-br-o-{c}", customer_id=c, country="BR", currency="BRL", consent=["whatsapp"],
                              whatsapp=f"+55119876500{n:02d}", timezone=zone) for n, c in enumerate(people)))
    rows = running.settled(people, states=("sent",))
    # Then each customer got their group's template (Portuguese has none in the file: the default's language)
    sent = {m.to: m for m in running.cloud.accepted}
    by_variant = {"standard": "repurchase_coupon", "template_b": "cupom_b"}
    assert {row["variant"] for row in rows.values()} == set(by_variant)
    for n, customer in enumerate(people):
        message = sent[f"+55119876500{n:02d}"]
        assert (message.template, message.language) == (by_variant[rows[customer]["variant"]], "en_US")
        assert message.coupon_code == rows[customer]["code"].replace("-", "")


# ---------------------------------------------------------------------------------------------- section 9

def _stream(running, stream: str, customers: list[str], ended: datetime, zone: str) -> None:
    ordered = ended - timedelta(minutes=30)
    running.emit(*(order_paid(f"acc-{stream}-{c}", customer_id=c, stream_id=stream, timezone=zone,
                              occurred_at=ordered, items=[{"sku": "mug", "name": "Mug", "unit_price": "30.00",
                                                           "quantity": 1}])
                   for c in customers), stream_ended(f"acc-end-{stream}", stream, ended))


def test_an_experiment_in_the_markets_file_splits_buyers_and_the_review_reports_it(running):
    zone = midday()
    now = datetime.now(UTC)
    # Given a shop's earlier stream and then a stream of 40 US buyers, in a market with SPEC's experiment
    earlier = [f"acc-early-{n}" for n in range(5)]
    buyers = [f"acc-live-{n:02d}" for n in range(40)]
    _stream(running, "acc-early", earlier, now - timedelta(hours=2), zone)
    running.settled(earlier)
    _stream(running, "acc-live", buyers, now - timedelta(minutes=1), zone)
    rows = running.settled(buyers)
    # Then each buyer is in a group: control (held out: no message, no code) or a variant with its depth
    variants = {row["variant"] for row in rows.values()}
    assert variants <= {"control", "depth10", "depth20"} and {"depth10", "depth20"} <= variants
    for row in rows.values():
        if row["variant"] == "control":
            assert (row["state"], row["reason"], row["code"]) == ("suppressed", "holdout", None)
        else:
            assert row["state"] == "sent"
            assert row["offer"]["percent"] == row["variant"].removeprefix("depth")
    treated = sorted((row for row in rows.values() if row["variant"] != "control"), key=lambda r: r["customer_id"])
    # ... each email with its delivery's own Message-ID (rule 19)
    by_address = {m["To"]: m["Message-ID"] for m in running.smtp.messages}
    ids = [by_address[f"{row['customer_id']}@example.com"] for row in treated]
    assert len(set(ids)) == len(treated)
    assert all(mid.startswith(f"<encore.{row['id']}.") and mid.endswith("@example.com>")
               for mid, row in zip(ids, treated, strict=True))

    # When two treated customers order again with their codes (813.00 and 203.25 USD)
    again = []
    for row, (price, quantity) in zip(treated[:2], [("406.50", 2), ("203.25", 1)], strict=True):
        event = order_paid(f"acc-again-{row['customer_id']}", customer_id=row["customer_id"], timezone=zone,
                           items=[{"sku": "mug", "name": "Mug", "unit_price": price, "quantity": quantity}])
        event["data"]["discount_codes"] = [row["code"].lower()]
        again.append(event)
    running.emit(*again)
    wait_until(lambda: sum(1 for r in running.deliveries() if r["customer_id"] in buyers and r["redeemed_at"]) == 2,
               timeout=60, interval=0.3)

    # Then `encore review --json` reports the stream with SPEC's keys and types
    result = running.run("review", "acc-live", "--json")
    assert result.returncode == 0, result.stderr
    review = json.loads(result.stdout)
    assert {"buyers", "coupons", "sent", "redeemed", "revenue", "groups", "previous"} <= set(review)
    assert review["buyers"] == 40
    assert review["coupons"] == review["sent"] == len(treated)
    assert review["redeemed"] == 2
    assert review["revenue"] == {"USD": "1016.25"}
    groups = {group["variant"]: group for group in review["groups"]}
    assert set(groups) == variants
    for variant, group in groups.items():
        assert {"variant", "customers", "repurchased", "repurchase_rate", "ci95"} <= set(group)
        assert group["customers"] == sum(1 for row in rows.values() if row["variant"] == variant)
        assert isinstance(group["repurchase_rate"], float | int)
        if variant == "control":
            assert group["ci95"] is None
        else:
            low, high = group["ci95"]
            assert isinstance(low, float | int) and isinstance(high, float | int) and low <= high
    assert sum(group["repurchased"] for group in groups.values()) == 2
    previous = review["previous"]
    assert previous is not None and previous["buyers"] == 5 and previous["redeemed"] == 0
    assert previous["revenue"] == {} or all(Decimal(v) == 0 for v in previous["revenue"].values())
    # ... also with --shop, and as text
    assert json.loads(running.run("review", "acc-live", "--shop", "default", "--json").stdout)["buyers"] == 40
    text = running.run("review", "acc-live")
    assert text.returncode == 0 and "1016.25" in text.stdout.replace(",", "")
    page = httpx.get(running.serve_url + "/streams/default/acc-live", timeout=10)
    assert page.status_code == 200 and "acc-early" in page.text  # the previous stream beside it
    assert "1016.25" in page.text.replace(",", "")


# ---------------------------------------------------------------------------------------------- rule 18

def _twilio(running, body: str, sender: str, minimal: bool = False) -> httpx.Response:
    """Twilio's inbound message webhook: a form, signed (HMAC-SHA1 with the auth token, base64)
    over the URL it called and each parameter's name and value sorted by name."""
    url = running.serve_url + "/webhooks/sms/inbound"
    params = {"From": sender, "Body": body} if minimal else {
        "MessageSid": "SM" + uuid.uuid4().hex, "AccountSid": "AC" + "1" * 32, "From": sender,
        "To": "+15005550006", "Body": body, "NumMedia": "0"}
    data = url + "".join(name + params[name] for name in sorted(params))
    signature = base64.b64encode(hmac.new(TWILIO_TOKEN.encode(), data.encode(), hashlib.sha1).digest()).decode()
    return httpx.post(url, content=urlencode(params), timeout=10,
                      headers={"Content-Type": "application/x-www-form-urlencoded", "X-Twilio-Signature": signature})


def test_a_twilio_stop_then_start_through_serve(running):
    zone = midday()
    phone = "+12125550187"
    # Given a customer who consented to texts only, in two streams not yet ended
    started = datetime.now(UTC) - timedelta(minutes=5)
    running.emit(*(order_paid(f"acc-sms-{s}", customer_id="acc-pat", consent=["sms"], phone=phone, timezone=zone,
                              stream_id=s, occurred_at=started) for s in ("acc-sms-a", "acc-sms-b")))
    # A request Twilio did not sign changes nothing
    forged = httpx.post(running.serve_url + "/webhooks/sms/inbound", timeout=10,
                        content=urlencode({"From": phone, "Body": "STOP"}),
                        headers={"Content-Type": "application/x-www-form-urlencoded", "X-Twilio-Signature": "bad"})
    assert forged.status_code == 401
    # When they reply STOP, then the first stream ends
    stop = _twilio(running, "STOP", phone)
    assert stop.status_code == 200, stop.text
    assert "xml" in stop.headers["content-type"]
    running.emit(stream_ended("acc-end-sms-a", "acc-sms-a"))
    # Then no text goes out: the coupon has no channel left
    wait_until(lambda: [(r["state"], r["reason"]) for r in running.deliveries("acc-pat")] == [("suppressed",
                                                                                               "no_channel")],
               timeout=60, interval=0.3)
    assert f"/sms/{phone}" not in [r.path for r in running.sms.requests]
    # When they reply START (a client sending only the sender and the text), then the second stream ends
    start = _twilio(running, "start", phone, minimal=True)
    assert start.status_code == 200, start.text
    running.emit(stream_ended("acc-end-sms-b", "acc-sms-b"))
    # Then the second coupon is texted to them
    wait_until(lambda: sorted(r["state"] for r in running.deliveries("acc-pat")) == ["sent", "suppressed"],
               timeout=60, interval=0.3)
    assert [r.path for r in running.sms.requests].count(f"/sms/{phone}") == 1


def test_a_complaint_suppresses_the_next_email(running):
    zone = midday()
    # Given a customer reachable by email only, with a coupon waiting for a stream's end
    running.emit(order_paid("acc-mail", customer_id="acc-mia", consent=["email"], email="Mia@Example.com",
                            timezone=zone, stream_id="acc-mail-s"))
    # When their mailbox provider reports a complaint, signed as every request to `encore serve`
    body = json.dumps({"type": "complaint", "email": "mia@example.com", "permanent": True,
                       "occurred_at": iso(datetime.now(UTC))}).encode()
    unsigned = httpx.post(running.serve_url + "/webhooks/email/feedback", content=body, timeout=10,
                          headers={"Content-Type": "application/json"})
    assert unsigned.status_code == 401
    answer = httpx.post(running.serve_url + "/webhooks/email/feedback", content=body, timeout=10,
                        headers=signed_headers(body))
    assert answer.status_code in (200, 202), answer.text
    running.emit(stream_ended("acc-end-mail-s", "acc-mail-s"))
    # Then the next coupon is not emailed: suppressed with reason email_suppressed
    def stream_row():
        rows = [r for r in running.deliveries("acc-mia") if r["trigger"] == "stream"]
        return rows if rows and rows[0]["state"] != "scheduled" else None

    [row] = wait_until(stream_row, timeout=60, interval=0.3)
    assert (row["state"], row["reason"]) == ("suppressed", "email_suppressed")
    # And another customer with that address, who also agreed to texts, gets the coupon by SMS: email skipped
    running.emit(order_paid("acc-mail-sms", customer_id="acc-mia-2", consent=["email", "sms"],
                            email="mia@example.com", phone="+12125550142", timezone=zone))
    texted = running.settled(["acc-mia-2"])["acc-mia-2"]
    assert (texted["state"], texted["channel"]) == ("sent", "sms")
    assert texted["skipped"] == [{"channel": "email", "reason": "email_suppressed"}]
    assert not [m for m in running.smtp.messages if "mia@example.com" in m["To"].lower()]


# ---------------------------------------------------------------------------------------------- preview

def test_preview_with_every_option(running, tmp_path):
    # The Indonesian WhatsApp template with its parameters and the copy-code button's code
    whatsapp = running.run("preview", "--shop", "default", "--market", "southeast_asia", "--locale", "id-ID",
                           "--offer", "refill", "--channel", "whatsapp")
    assert whatsapp.returncode == 0, whatsapp.stderr
    assert "kupon_belanja_lagi" in whatsapp.stdout and "{{1}}" in whatsapp.stdout
    assert "Rp" in whatsapp.stdout
    # The email of North America with its HTML part written to a file
    html = tmp_path / "html"
    email = running.run("preview", "--market", "north_america", "--locale", "en-US", "--offer", "percent_off",
                        "--channel", "email", "--html", str(html))
    assert email.returncode == 0, email.stderr
    [page] = list(html.glob("*.html"))
    assert "<html" in page.read_text().lower()
    # A test through the Cloud API is the template, marked [TEST], with a code no delivery holds
    sent = running.run("preview", "--market", "southeast_asia", "--locale", "id-ID", "--offer", "refill",
                       "--channel", "whatsapp", "--send-to", "+6281299990000")
    assert sent.returncode == 0, sent.stdout + sent.stderr
    [test] = [m for m in running.cloud.accepted if m.to.endswith("6281299990000")]
    assert test.template == "kupon_belanja_lagi" and test.body[0].startswith("[TEST] ")
    assert test.coupon_code not in {r["code"].replace("-", "") for r in running.deliveries() if r["code"]}
    # Bad options are named
    bad = running.run("preview", "--offer", "free_lunch")
    assert bad.returncode != 0 and "--offer" in bad.stderr





# ---------------------------------------------------------------------------------------------- rule 17

def test_a_florida_text_in_the_evening_waits_for_eight_in_the_morning(running):
    # Given 20:xx in the customer's zone: after Florida's 20:00, before the federal 21:00
    wait_until(lambda: datetime.now(UTC).minute < 58, timeout=150)
    evening = zone_where_local_hour_is(20)
    running.emit(order_paid("acc-fl", customer_id="acc-fl", consent=["sms"], phone="+13055550177",
                            timezone=evening, region="US-FL"),
                 order_paid("acc-ny", customer_id="acc-ny", consent=["sms"], phone="+12125550178",
                            timezone=evening, region="US-NY"))
    # Then the New York text goes now (federal hours), and the Florida one is due at 08:00 tomorrow, local
    rows = running.settled(["acc-ny"], states=("sent",))
    [florida] = running.deliveries("acc-fl")
    assert florida["state"] == "scheduled" and rows["acc-ny"]["channel"] == "sms"
    due = datetime.fromisoformat(florida["due_at"].replace("Z", "+00:00")).astimezone(ZoneInfo(evening))
    today = datetime.now(UTC).astimezone(ZoneInfo(evening)).date()
    assert (due.date(), due.hour, due.minute) == (today + timedelta(days=1), 8, 0)
    assert "/sms/+13055550177" not in [r.path for r in running.sms.requests]
