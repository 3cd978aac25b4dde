"""Schemathesis against the OpenAPI that `encore serve` serves: whatever a client sends
within (or around) the described shapes, the service never answers 5xx.

Requests are signed the way a real client signs them, so generated bodies reach the
validation and storage code instead of stopping at 401. Runs on the embedded defaults
(SQLite + the SQLite broker): no worker is needed to store and enqueue."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings

from tests.support import SHOPIFY_SECRET, WEBHOOK_SECRET, ServeProcess, signed_headers

MAX_EXAMPLES = 60
"""Per operation; 8 operations run in well under a minute."""
SIGNED_PATHS = ("/events", "/coupons/{code}/redeem", "/webhooks/email/feedback")
TWILIO_TOKEN = "schemathesis-twilio-token"
PUBLIC_URL = "https://encore.example.com"


@pytest.fixture(scope="module")
def served_url(tmp_path_factory):
    folder = tmp_path_factory.mktemp("schemathesis")
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENCORE_")}
    env.update({"ENCORE_DATA_DIR": str(folder / "var"), "ENCORE_WEBHOOK_SECRET": WEBHOOK_SECRET,
                "ENCORE_SHOPIFY_SECRET": SHOPIFY_SECRET, "ENCORE_PUBLIC_URL": PUBLIC_URL,
                "ENCORE_TWILIO_AUTH_TOKEN": TWILIO_TOKEN})
    serve = ServeProcess(env, folder / "serve.log", cwd=folder).start()
    yield serve.url
    serve.stop()


@pytest.fixture(scope="module")
def web_schema(served_url):
    return schemathesis.openapi.from_url(served_url + "/openapi.json")


OPERATIONS = [("POST", "/events"), ("POST", "/webhooks/shopify/orders-paid"), ("POST", "/coupons/{code}/redeem"),
              ("GET", "/unsubscribe/{token}"), ("POST", "/unsubscribe/{token}"), ("GET", "/healthz"),
              ("GET", "/metrics"), ("GET", "/"), ("POST", "/webhooks/sms/inbound"),
              ("POST", "/webhooks/email/feedback"), ("GET", "/streams/{shop}/{stream}")]


def test_the_schema_lists_exactly_these_operations(web_schema):
    listed = {(result.ok().method.upper(), result.ok().path) for result in web_schema.get_all_operations()}
    assert listed == set(OPERATIONS)


@pytest.mark.parametrize("method, path", OPERATIONS)
def test_no_generated_request_gets_a_server_error(web_schema, served_url, method, path):
    @given(case=web_schema[path][method].as_strategy())
    @settings(max_examples=MAX_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    def check(case) -> None:
        send(case, served_url)

    check()


def send(case, served_url: str) -> None:
    kwargs = case.as_transport_kwargs(base_url=served_url)
    if "json" in kwargs:  # sign the exact bytes we send
        kwargs["data"] = json.dumps(kwargs.pop("json")).encode()
    headers = dict(kwargs.get("headers") or {})
    if case.path == "/webhooks/sms/inbound" and isinstance(kwargs.get("data"), dict):  # a form, as Twilio posts
        from urllib.parse import urlencode

        kwargs["data"] = urlencode(kwargs["data"], doseq=True).encode()
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    body = kwargs.get("data") or b""
    body = body.encode() if isinstance(body, str) else body
    if case.path == "/webhooks/shopify/orders-paid" and isinstance(body, bytes):
        headers["X-Shopify-Hmac-Sha256"] = base64.b64encode(
            hmac.new(SHOPIFY_SECRET.encode(), body, hashlib.sha256).digest()).decode()
    elif case.path == "/webhooks/sms/inbound" and isinstance(body, bytes):
        from urllib.parse import parse_qsl

        from coupons.replies import twilio_signature

        params = parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True)
        headers["X-Twilio-Signature"] = twilio_signature(PUBLIC_URL + case.path, params, TWILIO_TOKEN)
    elif case.path in SIGNED_PATHS and isinstance(body, bytes):
        headers.update(signed_headers(body))
    kwargs["headers"] = headers
    response = requests.request(**kwargs, timeout=30)
    assert response.status_code < 500, (case.method, case.path, response.status_code, response.text[:500])
